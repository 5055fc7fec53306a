"""VideoBERT: one BERT encoder over the joint vocabulary of WordPiece text and visual words.

The network is BERT (post-LayerNorm blocks, learned positions, two token types) so that a
Hugging Face BERT checkpoint drops in; only the vocabulary is larger. Two heads sit on top:

* the masked-token head predicts any id of the joint vocabulary (text words, ``[>]``, visual
  words); its output projection is tied to the input embeddings, as in BERT;
* the alignment head reads the pooled ``[CLS]`` state and gives one logit: "this text and this
  video belong together". Imported from BERT's next-sentence head (logit of "is next" minus
  logit of "is not next").

Inputs follow the joint id layout of :mod:`videobert.corpus.joint_vocab`: text ids ``0 … T-1``,
``[>]`` at ``T``, visual words at ``T+1 … T+V``. Losses live in :mod:`videobert.pretrain.losses`;
starting from a Hugging Face BERT or from codebook centroids in :mod:`videobert.bert_import`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from videobert.corpus.joint_vocab import JointLayout
from videobert.errors import ConfigError
from videobert.readers import Field
from videobert.store import load_weights_folder, save_weights_folder

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 64, "layers": 2, "heads": 2, "intermediate_size": 256},
    "base": {"hidden_size": 768, "layers": 12, "heads": 12, "intermediate_size": 3072},
    "large": {"hidden_size": 1024, "layers": 24, "heads": 16, "intermediate_size": 4096},
}


@dataclass
class ModelConfig(JointLayout):
    """Architecture of a VideoBERT, saved as ``config.json`` beside the weights."""

    text_vocab_size: int
    visual_vocab_size: int
    hidden_size: int = 768
    layers: int = 12
    heads: int = 12
    intermediate_size: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    # what config.json may hold, checked field by field before anything is built
    FIELDS: ClassVar[dict[str, Field]] = {
        "text_vocab_size": Field("int", 1, 10_000_000),
        "visual_vocab_size": Field("int", 0, 10_000_000),
        "hidden_size": Field("int", 1, 65_536, required=False),
        "layers": Field("int", 1, 512, required=False),
        "heads": Field("int", 1, 1_024, required=False),
        "intermediate_size": Field("int", 1, 262_144, required=False),
        "max_positions": Field("int", 1, 1_048_576, required=False),
        "type_vocab_size": Field("int", 1, 1_024, required=False),
        "dropout": Field("number", 0, 1, required=False),
        "attention_dropout": Field("number", 0, 1, required=False),
        "layer_norm_eps": Field("number", 0, 1, above=True, required=False),
        "initializer_range": Field("number", 0, 100, required=False),
    }

    @property
    def vocab_size(self) -> int:
        """Joint vocabulary: text, ``[>]``, visual words."""
        return self.size

    @classmethod
    def preset(cls, name: str, text_vocab_size: int, visual_vocab_size: int, **overrides) -> "ModelConfig":
        """``tiny`` (CPU tests), ``base`` or ``large`` (the paper's), with any field overridden."""
        if name not in PRESETS:
            raise ConfigError(f"model preset {name!r} is not one of {', '.join(PRESETS)}")
        sizes = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        config = cls(text_vocab_size, visual_vocab_size, **sizes)
        config.check()
        return config

    def check(self) -> None:
        if self.hidden_size % self.heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not a multiple of heads {self.heads}")
        if min(self.hidden_size, self.layers, self.heads, self.intermediate_size, self.text_vocab_size) < 1:
            raise ConfigError("model sizes must be positive")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class VideoBertOutput:
    """``mlm_logits``: [B, L, vocab] scores over the joint vocabulary (or [N, vocab] when
    ``mlm_positions`` selected N positions); ``align_logits``: [B], "aligned" logit of each
    sequence; ``hidden_states``: [B, L, H] last encoder layer (zeros at padded positions)."""

    mlm_logits: torch.Tensor
    align_logits: torch.Tensor
    hidden_states: torch.Tensor


class Embeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout: ids [B, L] -> [B, L, H]."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position = nn.Embedding(config.max_positions, config.hidden_size)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """``positions``: each id's position, same shape as the ids (default: 0 … L-1 along the
        last axis)."""
        if positions is None:
            positions = torch.arange(input_ids.shape[-1], device=input_ids.device)
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


def scatter_rows(rows: torch.Tensor, index: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """Rows [N, D] of the flat positions ``index`` of a [B, L] batch -> [B·L, D], zeros elsewhere."""
    return rows.new_zeros(batch * length, rows.shape[-1]).index_copy(0, index, rows)


class Block(nn.Module):
    """One post-LayerNorm BERT layer: x [B, L, H], key mask [B, 1, 1, L] (True = attend) -> [B, L, H].

    Query, key and value come from one fused projection (one matrix multiply instead of three);
    attention is ``scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU).
    With ``packed`` = (index, B, L), ``x`` is [N, H]: only the real tokens, at flat positions
    ``index`` of the [B, L] batch. Every projection, norm and dropout then runs on the N real
    tokens alone; only attention sees the padded [B, L] layout.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = config.hidden_size
        self.heads = config.heads
        self.attention_dropout = config.attention_dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(hidden, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None,
                packed: tuple[torch.Tensor, int, int] | None = None) -> torch.Tensor:
        hidden = x.shape[-1]
        qkv = self.qkv(x)
        if packed is None:
            batch, length = x.shape[:2]
        else:
            index, batch, length = packed
            qkv = scatter_rows(qkv, index, batch, length)
        q, k, v = qkv.view(batch, length, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=self.attention_dropout if self.training else 0.0
        )
        attended = attended.transpose(1, 2).reshape(batch * length, hidden)
        attended = attended.view(batch, length, hidden) if packed is None else attended.index_select(0, packed[0])
        x = self.attn_norm(x + self.dropout(self.attn_out(attended)))
        return self.ffn_norm(x + self.dropout(self.ffn_out(F.gelu(self.ffn_in(x)))))


class VideoBERT(nn.Module):
    """The encoder and its two heads. See :meth:`forward` for shapes."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.check()
        self.config = config
        self.embeddings = Embeddings(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        hidden = config.hidden_size
        self.pooler = nn.Linear(hidden, hidden)
        self.align_head = nn.Linear(hidden, 1)
        self.mlm_transform = nn.Linear(hidden, hidden)
        self.mlm_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.mlm_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mlm_positions: torch.Tensor | None = None,
    ) -> VideoBertOutput:
        """Encode a batch.

        input_ids: long [B, L] joint ids; token_type_ids: long [B, L] (0 text side, 1 video side;
        zeros when omitted); attention_mask: [B, L] (1/True = real token, 0 = padding; None = no
        padding, which lets the GPU use flash attention). mlm_positions: optional long [N] indices
        into the flattened [B·L] positions — the masked-token head then scores only those N
        positions (training needs ~15 % of them), and ``mlm_logits`` is [N, vocab].
        """
        x = self.encode(input_ids, token_type_ids, attention_mask)
        align_logits = self.align_head(torch.tanh(self.pooler(x[:, 0]))).squeeze(-1)
        states = x if mlm_positions is None else x.reshape(-1, x.shape[-1]).index_select(0, mlm_positions)
        states = self.mlm_norm(F.gelu(self.mlm_transform(states)))
        mlm_logits = F.linear(states, self.embeddings.word.weight, self.mlm_bias)
        return VideoBertOutput(mlm_logits, align_logits, x)

    def encode(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder without its heads: the last layer's states [B, L, H] (zeros at padded
        positions). Arguments as :meth:`forward`'s."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        key_mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        real = None if attention_mask is None else attention_mask.reshape(-1).bool()
        if real is None or bool(real.all()):
            x = self.embeddings(input_ids, token_type_ids)
            for block in self.blocks:
                x = block(x, key_mask)
        else:  # everything but attention runs on the real tokens only (a length-bucketed batch is ~half padding)
            batch, length = input_ids.shape
            index = real.nonzero().squeeze(1)
            tokens = self.embeddings(input_ids.reshape(-1)[index], token_type_ids.reshape(-1)[index], index % length)
            for block in self.blocks:
                tokens = block(tokens, key_mask, (index, batch, length))
            x = scatter_rows(tokens, index, batch, length).view(batch, length, -1)
        return x

    def freeze_embeddings(self) -> None:
        """Stop training the word-embedding table (text and visual rows). The output projection
        is the same tensor, so it stays fixed too; the output bias still trains."""
        self.embeddings.word.weight.requires_grad_(False)

    # ---------------------------------------------------------------- saving and loading
    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``folder``."""
        save_weights_folder(folder, self.config.to_json(), self)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "VideoBERT":
        """The network saved in ``folder`` (a model folder or a checkpoint), in eval mode on
        ``device`` — the first of the three loaders of a model folder (:mod:`videobert.inference`)."""
        return load_weights_folder(folder, ModelConfig, cls, "model", device)


def flops_per_token(config: ModelConfig, sequence_length: int) -> float:
    """Model FLOPs of one training token (forward + backward): 6·N + 12·layers·H·L.

    N counts the weights that take part in matrix multiplies: the encoder blocks, the pooler,
    the masked-token transform and the output projection onto the joint vocabulary (H·vocab) —
    not the embedding lookups. 12·layers·H·L is the attention score and value products
    (2·2·L·H per token and layer forward, three times for forward + backward).
    """
    hidden, inner = config.hidden_size, config.intermediate_size
    block = 4 * hidden * hidden + 2 * hidden * inner
    matmul_params = config.layers * block + 2 * hidden * hidden + hidden * config.vocab_size
    return 6.0 * matmul_params + 12.0 * config.layers * hidden * sequence_length
