"""A trained model folder: what it holds and the checks that it is whole, wherever it is copied.

``pretrain`` writes (:mod:`videobert.pretrain.package`), beside the weights and config
(:meth:`videobert.model.VideoBERT.save_pretrained`) and the joint vocabulary with its tokenizer::

    visual_vocab/codebook.npz   the codebook and feature normalisation the visual words come from
    visual_vocab/vocab.json     its summary; exemplars.json and exemplars/<word>.jpg when it has them
    features.json               the features those words assume: backbone, S3D weights sha256,
                                fps, clip frames, size, precision, pixel normalisation
    dual/                       the dual encoder of search (videobert distil, :mod:`videobert.dual`)
    test_index/                 the corpus's test segments as a search index (videobert index's format;
                                written by videobert distil)
    README.md                   the model card (videobert.model_card)

``vocabulary.json`` names the visual vocabulary by the relative path ``visual_vocab`` and records
its codebook's hash: :func:`check_visual_vocab` refuses a folder whose codebook is missing or
altered, naming the file, and :func:`check_s3d_weights` a weights file other than the one the
features were extracted with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videobert.errors import InputError
from videobert.features.s3d import MODEL_NAME, RANDOM_INIT
from videobert.features.settings import check_feature_settings
from videobert.store import file_sha256, read_json
from videobert.vocab.codebook import Codebook

VISUAL_VOCAB = "visual_vocab"
FEATURES_FILE = "features.json"
TEST_INDEX = "test_index"


def check_visual_vocab(model_dir: Path, recorded_hash: str | None, device: str = "cpu") -> Codebook | None:
    """The codebook of ``MODEL/visual_vocab``, checked against the hash ``vocabulary.json``
    recorded; None for a model folder that has none. Missing or altered: :class:`InputError`."""
    path = model_dir / VISUAL_VOCAB / "codebook.npz"
    if recorded_hash is None:
        return Codebook.load(path, device) if path.is_file() else None
    if not path.is_file():
        raise InputError(f"{path}: missing; the model folder is incomplete (copy the whole folder)", "missing")
    codebook = Codebook.load(path, device)
    if codebook.hash != recorded_hash:
        raise InputError(f"{path}: codebook hash {codebook.hash} differs from the {recorded_hash} the model was trained "
                         "with (the file was altered or replaced)")
    return codebook


def read_feature_settings(model_dir: Path) -> dict[str, Any] | None:
    """``MODEL/features.json``, its fields checked (:func:`check_feature_settings`); None without one."""
    path = model_dir / FEATURES_FILE
    if not path.exists() and not path.is_symlink():
        return None
    return check_feature_settings(read_json(path, "feature settings"), path)


def check_s3d_weights(model_dir: Path, settings: dict[str, Any], weights: Path | None) -> None:
    """The S3D weights given must be those the model's features were extracted with (their sha256
    in ``features.json``), or none for a model whose features came from a seeded random init."""
    where = model_dir / FEATURES_FILE
    if settings.get("model") not in (None, MODEL_NAME):
        raise InputError(f"{where}: features of backbone {settings.get('model')!r}, which this version does not build")
    expected = settings.get("weights")
    if weights is None:
        if expected not in (None, RANDOM_INIT):
            raise InputError(f"{where}: the visual words come from S3D weights with sha256 {expected}; "
                             "pass s3d_weights= (--s3d-weights) the same file")
        return
    digest = file_sha256(weights)
    if expected == RANDOM_INIT:
        raise InputError(f"{weights}: the model's visual words come from a randomly initialised S3D "
                         f"(seed {settings.get('init_seed', 0)}), not from these weights; give no S3D weights")
    if digest != expected:
        raise InputError(f"{weights}: S3D weights with sha256 {digest}, but {where} says the visual words come "
                         f"from {expected}")
