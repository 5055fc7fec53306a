"""The dual encoder: a text tower and a video tower, each a VideoBERT encoder, each giving one
L2-normalised vector, so that a text and a video are scored by one dot product and a collection is
searched with a nearest-neighbour index (:mod:`videobert.search`). A model folder carries it in
``MODEL/dual/`` (``config.json``, ``model.safetensors``, ``dual.json``: how it was trained, what it
measured on the val split and the first-stage K chosen there).

Inputs are the pretrained model's own single-modality sequences (:mod:`videobert.inputs`)::

    text tower    [CLS] text [SEP]
    video tower   [CLS] [>] visual words [SEP]

A tower's vector is its pooled output — the ``[CLS]`` state (``cls``) or the mean of the real
tokens' states (``mean``) — projected to ``dim`` numbers and scaled to unit length. With
``shared`` the two towers are one encoder (the token types and ``[>]`` tell the modalities apart)
with a projection each; otherwise each tower is an encoder of its own. Both start from the
pretrained VideoBERT (:mod:`videobert.distil` trains them to rank as its cross-encoder does).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

from videobert.errors import ConfigError, InputError
from videobert.inference import LoadedModel, length_batches
from videobert.inputs import build_input, collate_inputs, pad_multiple
from videobert.model import ModelConfig, VideoBERT
from videobert.runtime import autocast
from videobert.readers import Field, check_fields, file_sha256, read_json
from videobert.store import load_weights_folder, save_weights_folder

DUAL = "dual"  # MODEL/dual
INFO_FILE = "dual.json"


@dataclass
class DualConfig:
    """Architecture of a dual encoder, saved as ``config.json`` beside its weights."""

    encoder: dict  # the towers' ModelConfig (the pretrained model's), as config.json holds it
    dim: int = 128
    shared: bool = True
    pooling: Literal["cls", "mean"] = "mean"

    def check(self) -> None:
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or not 8 <= self.dim <= 4096:
            raise ConfigError(f"dim: need a whole number 8 … 4096, got {self.dim!r}")
        if self.pooling not in ("cls", "mean") or not isinstance(self.shared, bool):
            raise ConfigError("pooling: cls or mean; shared: true or false")

    def model_config(self) -> ModelConfig:
        return ModelConfig(**self.encoder)


class DualEncoder(nn.Module):
    """Text and video towers (module docstring): ids [B, L] -> unit vectors [B, dim]."""

    def __init__(self, config: DualConfig):
        super().__init__()
        config.check()
        self.config = config
        # a shared encoder is registered once, so that its weights are saved once
        self.encoders = nn.ModuleDict({"text": VideoBERT(config.model_config())})
        if not config.shared:
            self.encoders["video"] = VideoBERT(config.model_config())
        hidden = self.text_encoder.config.hidden_size
        self.text_projection = nn.Linear(hidden, config.dim)
        self.video_projection = nn.Linear(hidden, config.dim)

    @property
    def text_encoder(self) -> VideoBERT:
        return self.encoders["text"]

    @property
    def video_encoder(self) -> VideoBERT:
        return self.encoders["video" if "video" in self.encoders else "text"]

    @classmethod
    def from_videobert(cls, model: VideoBERT, dim: int, shared: bool, pooling: str, seed: int = 0) -> "DualEncoder":
        """Towers that start as copies of ``model``'s encoder, projections from a seeded init."""
        config = DualConfig(model.config.to_json(), dim, shared, pooling)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            dual = cls(config)
        state = model.state_dict()
        dual.text_encoder.load_state_dict(state)
        if not shared:
            dual.video_encoder.load_state_dict(state)
        return dual

    def _pool(self, encoder: VideoBERT, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, H]: the pooled states of a batch (``input_ids``, ``token_type_ids``, ``attention_mask``)."""
        mask = batch["attention_mask"]
        states = encoder.encode(batch["input_ids"], batch["token_type_ids"], mask if bool((mask == 0).any()) else None)
        if self.config.pooling == "cls":
            return states[:, 0]
        weights = mask.to(states.dtype)[:, :, None]
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1)

    def forward(self, texts: dict[str, torch.Tensor], videos: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Both towers in one call (what DistributedDataParallel wraps): [B, dim] each."""
        return self.encode_texts(texts), self.encode_videos(videos)

    def encode_texts(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """float [B, dim], unit length: the text tower's vectors of ``[CLS] text [SEP]`` sequences."""
        return F.normalize(self.text_projection(self._pool(self.text_encoder, batch)).float(), dim=-1)

    def encode_videos(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """float [B, dim], unit length: the video tower's vectors of ``[CLS] [>] words [SEP]`` sequences."""
        return F.normalize(self.video_projection(self._pool(self.video_encoder, batch)).float(), dim=-1)

    # ---------------------------------------------------------------- saving and loading
    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``folder``."""
        save_weights_folder(folder, dataclasses.asdict(self.config), self)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "DualEncoder":
        """The dual encoder saved in ``folder``, in eval mode on ``device``."""
        return load_weights_folder(folder, DualConfig, cls, "dual encoder", device)


# ------------------------------------------------------------------------ a model's dual encoder, for search
@dataclass
class LoadedDual:
    """A model folder's dual encoder in eval mode, beside the cross-encoder it was distilled from
    (``loaded``: its vocabulary, device, precision, ``max_len``), and what ``dual.json`` records."""

    model: DualEncoder
    loaded: LoadedModel
    info: dict[str, Any]

    @property
    def dim(self) -> int:
        return self.model.config.dim

    @property
    def identity(self) -> str:
        """What names these vectors: the sha256 of the dual encoder's weights (an index records it)."""
        return str(self.info["weights_sha256"])


def load_dual(model_dir: str | Path, loaded: LoadedModel) -> LoadedDual | None:
    """``MODEL/dual`` (None where the model folder has none), on ``loaded``'s device. Its
    ``dual.json`` must name the weights beside it (their sha256) and the cross-encoder's vocabulary."""
    folder = Path(model_dir) / DUAL
    if not (folder / INFO_FILE).is_file():
        return None
    info = check_fields(read_json(folder / INFO_FILE, "dual encoder summary", expect=dict), folder / INFO_FILE,
                        {"weights_sha256": Field("str"), "k": Field("int", 1, 1_000_000, required=False)})
    digest = file_sha256(folder / "model.safetensors") if (folder / "model.safetensors").is_file() else None
    if digest != info["weights_sha256"]:
        raise InputError(f"{folder / 'model.safetensors'}: missing or altered (sha256 {digest}, {INFO_FILE} says "
                         f"{info['weights_sha256']}); copy the whole model folder")
    model = DualEncoder.from_pretrained(folder, loaded.device)
    if model.config.model_config().vocab_size != loaded.layout.size:
        raise InputError(f"{folder / 'config.json'}: a dual encoder of {model.config.model_config().vocab_size} ids, the "
                         f"model's vocabulary has {loaded.layout.size}")
    return LoadedDual(model, loaded, info)


@torch.no_grad()
def _vectors(dual: DualEncoder, loaded: LoadedModel, sequences: list[dict[str, np.ndarray]], tower: str) -> np.ndarray:
    encode = dual.encode_texts if tower == "text" else dual.encode_videos
    lengths = np.array([len(s["input_ids"]) for s in sequences], dtype=np.int64)
    out = np.zeros((len(sequences), dual.config.dim), np.float32)
    for rows in length_batches(lengths, loaded.batch_tokens):
        batch = collate_inputs([sequences[r] for r in rows], loaded.layout.pad_id, pad_multiple(loaded.device))
        batch = {k: v.to(loaded.device) for k, v in batch.items()}
        with autocast(loaded.device, loaded.precision):
            out[rows] = encode(batch).float().cpu().numpy()
    return out


def text_vectors(dual: DualEncoder, loaded: LoadedModel, texts: Sequence[Sequence[int]]) -> np.ndarray:
    """float32 [n, dim], unit length: the text tower's vector of each WordPiece id sequence."""
    return _vectors(dual, loaded, [build_input(loaded.layout, t, None, loaded.max_len) for t in texts], "text")


def video_vectors(dual: DualEncoder, loaded: LoadedModel, videos: Sequence[Sequence[int]]) -> np.ndarray:
    """float32 [n, dim], unit length: the video tower's vector of each visual-word sequence (0 … V-1)."""
    return _vectors(dual, loaded, [build_input(loaded.layout, None, v, loaded.max_len) for v in videos], "video")
