"""The model folder made whole after pretraining (:mod:`videobert.model_folder` says what it
holds): the visual vocabulary copied in and the feature settings its visual words assume, so that
the folder can be used wherever it is copied. (Its search index of the corpus's test segments is
written by the distil stage, which makes the dual encoder that index needs.)
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from videobert.errors import InputError
from videobert.features.settings import check_feature_settings
from videobert.model_folder import FEATURES_FILE, VISUAL_VOCAB
from videobert.readers import MAX_IMAGE_BYTES, read_bytes, read_image
from videobert.store import atomic_write_json, read_json, temp_path_for, write_synced
from videobert.vocab.codebook import Codebook

log = logging.getLogger(__name__)

# what of FEATURES/extract.json the model folder's features.json keeps
FEATURE_KEYS = ("model", "weights", "init_seed", "fps", "clip_frames", "clip_seconds", "size", "precision",
                "normalisation", "decoder")


def copy_visual_vocab(vocab_dir: Path, model_dir: Path) -> str:
    """Copy VOCAB's codebook, summary and exemplars into ``MODEL/visual_vocab`` (a folder written
    whole, then renamed into place); returns the codebook's hash. The model folder is shared, so
    only what was read and checked goes into it: the codebook's checked arrays, the JSON files as
    parsed, thumbnails that are images; a link or anything else that is not what the vocab stage
    writes is left out (and named in the log)."""
    codebook = Codebook.load(vocab_dir / "codebook.npz", device="cpu")
    target = model_dir / VISUAL_VOCAB
    tmp = temp_path_for(target)
    tmp.mkdir()
    try:
        codebook.save(tmp / "codebook.npz")
        for name in ("vocab.json", "exemplars.json"):
            if _own_file(vocab_dir / name):
                try:
                    write_synced(tmp / name, json.dumps(read_json(vocab_dir / name, name), indent=2) + "\n")
                except InputError as exc:
                    log.warning("%s: not copied into the model folder (%s)", vocab_dir / name, exc)
        pictures = [(vocab_dir / "exemplars.jpg", tmp / "exemplars.jpg")]
        thumbnails = vocab_dir / "exemplars"
        if thumbnails.is_dir() and not thumbnails.is_symlink():
            (tmp / "exemplars").mkdir()
            pictures += [(path, tmp / "exemplars" / path.name) for path in sorted(thumbnails.glob("*.jpg"))
                         if path.stem.isdigit()]
        for source, copy in pictures:
            if _own_file(source):
                try:
                    data = read_bytes(source, "thumbnail", MAX_IMAGE_BYTES)
                    read_image(source, "thumbnail")
                except InputError as exc:
                    log.warning("%s: not copied into the model folder (%s)", source, exc)
                    continue
                write_synced(copy, data)
        _replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return codebook.hash


def _own_file(path: Path) -> bool:
    """Whether ``path`` is a regular file and not a link (a link is named in the log and left out:
    it may point anywhere, and the model folder is copied to others)."""
    if path.is_symlink():
        log.warning("%s: a link, not copied into the model folder", path)
        return False
    return path.is_file()


def _replace_folder(tmp: Path, target: Path) -> None:
    """Put a folder written whole under a temporary name in the place of ``target``."""
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def feature_settings(vocab_dir: Path | None) -> dict[str, Any] | None:
    """What the visual words assume of a video's features: FEATURES/extract.json of the folder the
    vocabulary was built from (named in its vocab.json), else the part of it vocab.json keeps."""
    if vocab_dir is None or not (vocab_dir / "vocab.json").is_file():
        return None
    summary = read_json(vocab_dir / "vocab.json", "vocab.json", expect=dict)
    features = summary.get("features")
    meta, source = None, vocab_dir / "vocab.json"
    if isinstance(features, str) and (Path(features) / "extract.json").is_file():
        source = Path(features) / "extract.json"
        meta = read_json(source, "extraction settings")
    meta = check_feature_settings(meta or summary.get("extract") or {}, source)
    return {key: meta[key] for key in FEATURE_KEYS if key in meta} or None


def package(model_dir: Path, vocab_dir: Path | None) -> dict[str, Any]:
    """Make ``model_dir`` self-contained (module docstring) from the VOCAB folder the model was
    trained with; returns what ``vocabulary.json`` records of it (``visual_vocab``, ``codebook``)."""
    record: dict[str, Any] = {"visual_vocab": None, "codebook": None}
    if vocab_dir is None or not (vocab_dir / "codebook.npz").is_file():
        log.warning("%s: no visual vocabulary to copy; the model folder can score visual words but not tokenize videos",
                    model_dir)
        return record
    record = {"visual_vocab": VISUAL_VOCAB, "codebook": copy_visual_vocab(vocab_dir, model_dir)}
    settings = feature_settings(vocab_dir)
    if settings is not None:
        atomic_write_json(model_dir / FEATURES_FILE, settings)
    else:
        log.warning("%s: the vocabulary records no extraction settings; features.json is not written", vocab_dir)
    return record
