"""The captioner: a transformer encoder-decoder from a segment's features to a sentence (paper
§4.3, after Zhou et al. 2018).

The encoder reads one token per feature part of a segment's row (``videobert`` H numbers,
``s3d`` 1024 — each LayerNormed and projected to the model width, plus a learned part
embedding); the decoder writes WordPiece ids of the VideoBERT run's tokenizer, ``[CLS]`` as the
start and ``[SEP]`` as the end of a caption, its output projection tied to its input embeddings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from videobert.errors import ConfigError
from videobert.readers import Field
from videobert.store import load_weights_folder, save_weights_folder


@dataclass
class CaptionerConfig:
    """Architecture of a captioner, saved as ``config.json`` beside its weights."""

    part_dims: list[int]  # numbers per input part, in row order
    vocab_size: int  # WordPiece entries
    bos_id: int
    eos_id: int
    pad_id: int
    hidden_size: int = 256
    encoder_layers: int = 2
    decoder_layers: int = 2
    heads: int = 4
    intermediate_size: int = 1024
    dropout: float = 0.1
    max_len: int = 32  # caption tokens, [CLS] and [SEP] included

    # what config.json may hold, checked field by field before anything is built
    FIELDS: ClassVar[dict[str, Field]] = {
        "part_dims": Field("ints", 1, 1_048_576),
        "vocab_size": Field("int", 1, 10_000_000),
        "bos_id": Field("int", 0, 10_000_000),
        "eos_id": Field("int", 0, 10_000_000),
        "pad_id": Field("int", 0, 10_000_000),
        "hidden_size": Field("int", 1, 65_536, required=False),
        "encoder_layers": Field("int", 1, 512, required=False),
        "decoder_layers": Field("int", 1, 512, required=False),
        "heads": Field("int", 1, 1_024, required=False),
        "intermediate_size": Field("int", 1, 262_144, required=False),
        "dropout": Field("number", 0, 1, required=False),
        "max_len": Field("int", 3, 1_048_576, required=False),
    }

    def check(self) -> None:
        if self.hidden_size % self.heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not a multiple of heads {self.heads}")
        if not self.part_dims or min(self.part_dims) < 1 or self.max_len < 3:
            raise ConfigError("a captioner needs at least one input part and max_len >= 3")
        if len(self.part_dims) > 64:
            raise ConfigError(f"part_dims: {len(self.part_dims)} parts, more than 64")
        if max(self.bos_id, self.eos_id, self.pad_id) >= self.vocab_size:
            raise ConfigError(f"bos_id, eos_id and pad_id must be ids below vocab_size {self.vocab_size}")


class Captioner(nn.Module):
    """features float [B, sum(part_dims)] + caption prefix ids [B, T] -> next-token logits [B, T, vocab]."""

    def __init__(self, config: CaptionerConfig):
        super().__init__()
        config.check()
        self.config = config
        hidden = config.hidden_size
        self.part_norms = nn.ModuleList(nn.LayerNorm(d) for d in config.part_dims)
        self.part_projections = nn.ModuleList(nn.Linear(d, hidden) for d in config.part_dims)
        self.part_embedding = nn.Embedding(len(config.part_dims), hidden)
        self.token_embedding = nn.Embedding(config.vocab_size, hidden, padding_idx=config.pad_id)
        self.position_embedding = nn.Embedding(config.max_len, hidden)
        self.embedding_dropout = nn.Dropout(config.dropout)

        def layer(cls):
            return cls(hidden, config.heads, config.intermediate_size, config.dropout, batch_first=True, norm_first=True)

        self.encoder = nn.TransformerEncoder(layer(nn.TransformerEncoderLayer), config.encoder_layers,
                                             enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(layer(nn.TransformerDecoderLayer), config.decoder_layers)
        self.output_norm = nn.LayerNorm(hidden)
        self.output_bias = nn.Parameter(torch.zeros(config.vocab_size))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        nn.init.normal_(self.part_embedding.weight, std=0.02)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, D] -> encoder states [B, parts, H]."""
        parts = torch.split(features.float(), self.config.part_dims, dim=-1)
        tokens = torch.stack([proj(norm(p)) for p, norm, proj in zip(parts, self.part_norms, self.part_projections)], 1)
        tokens = tokens + self.part_embedding.weight[None]
        return self.encoder(self.embedding_dropout(tokens))

    def decode(self, memory: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """memory [B, parts, H], prefix ids [B, T] -> logits [B, T, vocab] (causal)."""
        length = prefix.shape[1]
        positions = torch.arange(length, device=prefix.device)
        x = self.embedding_dropout(self.token_embedding(prefix) + self.position_embedding(positions)[None])
        causal = torch.ones(length, length, dtype=torch.bool, device=prefix.device).triu(1)  # True: may not attend
        padding = prefix == self.config.pad_id
        x = self.decoder(x, memory, tgt_mask=causal, tgt_key_padding_mask=padding, tgt_is_causal=True)
        return F.linear(self.output_norm(x), self.token_embedding.weight, self.output_bias)

    def forward(self, features: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(features), prefix)

    # ---------------------------------------------------------------- saving and loading
    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``folder``."""
        save_weights_folder(folder, dataclasses.asdict(self.config), self)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "Captioner":
        """The captioner saved in ``folder``, in eval mode on ``device``."""
        return load_weights_folder(folder, CaptionerConfig, cls, "captioner", device)
