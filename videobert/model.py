"""VideoBERT: one BERT encoder over the joint vocabulary of WordPiece text and visual words.

The network is BERT (post-LayerNorm blocks, learned positions, two token types) so that a
Hugging Face BERT checkpoint drops in; only the vocabulary is larger. Two heads sit on top:

* the masked-token head predicts any id of the joint vocabulary (text words, ``[>]``, visual
  words); its output projection is tied to the input embeddings, as in BERT;
* the alignment head reads the pooled ``[CLS]`` state and gives one logit: "this text and this
  video belong together". Imported from BERT's next-sentence head (logit of "is next" minus
  logit of "is not next").

Inputs follow the joint id layout of :mod:`videobert.vocabulary`: text ids ``0 … T-1``, ``[>]`` at
``T``, visual words at ``T+1 … T+V``. Losses live in :mod:`videobert.train`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videobert.errors import ConfigError, InputError
from videobert.vocabulary import JointLayout

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
    sequence; ``hidden_states``: [B, L, H] last encoder layer."""

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

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word(input_ids) + self.position(positions)[None] + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


class Block(nn.Module):
    """One post-LayerNorm BERT layer: x [B, L, H], key mask [B, 1, 1, L] (True = attend) -> [B, L, H].

    Query, key and value come from one fused projection (one matrix multiply instead of three);
    attention is ``scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU).
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

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=self.attention_dropout if self.training else 0.0
        )
        attended = attended.transpose(1, 2).reshape(batch, length, hidden)
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
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        key_mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        x = self.embeddings(input_ids, token_type_ids)
        for block in self.blocks:
            x = block(x, key_mask)
        align_logits = self.align_head(torch.tanh(self.pooler(x[:, 0]))).squeeze(-1)
        states = x if mlm_positions is None else x.reshape(-1, x.shape[-1]).index_select(0, mlm_positions)
        states = self.mlm_norm(F.gelu(self.mlm_transform(states)))
        mlm_logits = F.linear(states, self.embeddings.word.weight, self.mlm_bias)
        return VideoBertOutput(mlm_logits, align_logits, x)

    def freeze_embeddings(self) -> None:
        """Stop training the word-embedding table (text and visual rows). The output projection
        is the same tensor, so it stays fixed too; the output bias still trains."""
        self.embeddings.word.weight.requires_grad_(False)

    # ---------------------------------------------------------------- saving and loading
    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``folder``."""
        from safetensors.torch import save

        from videobert.store import atomic_write_bytes, atomic_write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / "config.json", self.config.to_json())
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        atomic_write_bytes(folder / "model.safetensors", save(state))

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "VideoBERT":
        """The model saved in ``folder`` (a pretrain RUN or a checkpoint), in eval mode on ``device``."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from videobert.store import read_json

        folder = Path(folder)
        data = read_json(folder / "config.json", "model config")
        try:
            config = ModelConfig(**data)
        except TypeError as exc:
            raise InputError(f"{folder / 'config.json'}: not a VideoBERT config ({exc})") from None
        model = cls(config)
        path = folder / "model.safetensors"
        try:
            state = load_file(str(path))
        except FileNotFoundError:
            raise InputError(f"{path}: model weights not found") from None
        except (SafetensorError, OSError) as exc:
            raise InputError(f"{path}: unreadable weights ({exc})") from None
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InputError(f"{path}: weights do not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
        return model.to(device).eval()


# -------------------------------------------------------------------- initialisation from elsewhere
def init_visual_embeddings(model: VideoBERT, centroids: np.ndarray, seed: int = 0) -> None:
    """Set the visual-word rows of the input embeddings from the codebook centroids [V, D].

    The paper initialises each visual word's embedding with its centroid. The centroids are
    centred; when D differs from the hidden size H they are mapped to H dimensions — by PCA onto
    the top H principal directions when D > H, by a fixed random isometry (orthonormal columns,
    drawn from ``seed``) when D < H — and finally scaled so that their standard deviation equals
    that of the text embeddings (of the imported BERT, or the initialiser's). Output biases of
    visual words are set to zero.
    """
    config = model.config
    centroids = np.asarray(centroids, dtype=np.float64)
    if centroids.ndim != 2 or centroids.shape[0] != config.visual_vocab_size:
        raise InputError(
            f"visual vocabulary has {centroids.shape[0] if centroids.ndim == 2 else '?'} words with vectors "
            f"{list(centroids.shape)}, but the model expects {config.visual_vocab_size} words"
        )
    hidden = config.hidden_size
    vectors = centroids - centroids.mean(axis=0, keepdims=True)
    dim = vectors.shape[1]
    if dim > hidden:
        _, _, components = np.linalg.svd(vectors, full_matrices=False)
        basis = np.zeros((dim, hidden))
        top = components[:hidden].T  # [D, min(H, V, D)]
        basis[:, : top.shape[1]] = top
        vectors = vectors @ basis
    elif dim < hidden:
        gaussian = np.random.default_rng(seed).standard_normal((hidden, dim))
        isometry, _ = np.linalg.qr(gaussian)  # [H, D], orthonormal columns
        vectors = vectors @ isometry.T
    std = vectors.std()
    word = model.embeddings.word.weight
    with torch.no_grad():
        target_std = float(word[: config.text_vocab_size].float().std())
        scale = target_std / std if std > 0 else 0.0
        rows = slice(config.visual_offset, config.vocab_size)
        word[rows] = torch.as_tensor(vectors * scale, dtype=word.dtype, device=word.device)
        model.mlm_bias[rows] = 0.0


def _bert_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    safetensors = folder / "model.safetensors"
    if safetensors.exists():
        return load_file(str(safetensors))
    pickled = folder / "pytorch_model.bin"
    if pickled.exists():
        from videobert.checkpoint import safe_torch_load

        return safe_torch_load(pickled, "BERT weights")
    raise InputError(f"{folder}: no model.safetensors or pytorch_model.bin (not a Hugging Face BERT folder)")


def bert_config(folder: str | Path) -> dict:
    """The sizes of the Hugging Face BERT in ``folder`` (``config.json``), as :class:`ModelConfig` fields."""
    from videobert.store import read_json

    folder = Path(folder)
    hf = read_json(folder / "config.json", "BERT config")
    if hf.get("model_type", "bert") != "bert" or hf.get("hidden_act", "gelu") != "gelu":
        raise InputError(f"{folder / 'config.json'}: not a BERT with GELU activations")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise InputError(f"{folder / 'config.json'}: only absolute position embeddings are supported")
    return {
        "hidden_size": hf["hidden_size"],
        "layers": hf["num_hidden_layers"],
        "heads": hf["num_attention_heads"],
        "intermediate_size": hf["intermediate_size"],
        "max_positions": hf.get("max_position_embeddings", 512),
        "type_vocab_size": hf.get("type_vocab_size", 2),
        "layer_norm_eps": hf.get("layer_norm_eps", 1e-12),
        "text_vocab_size": hf["vocab_size"],
    }


def load_bert_weights(model: VideoBERT, folder: str | Path) -> None:
    """Copy a Hugging Face BERT (``BertForPreTraining`` or ``BertModel`` folder) into ``model``.

    Encoder, position and token-type embeddings and the text rows of the word embeddings are
    copied; so are the masked-token transform and the text part of its bias, the pooler, and the
    next-sentence head folded into the one alignment logit. Visual-word rows are left to
    :func:`init_visual_embeddings`. The model's text vocabulary must be the BERT's.
    """
    folder = Path(folder)
    state = {_modern_key(k): v for k, v in _bert_state_dict(folder).items()}
    prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
    config = model.config

    def take(name: str) -> torch.Tensor:
        try:
            return state[prefix + name]
        except KeyError:
            raise InputError(f"{folder}: BERT weights lack {prefix + name}") from None

    word = take("embeddings.word_embeddings.weight")
    if word.shape != (config.text_vocab_size, config.hidden_size):
        raise ConfigError(
            f"{folder}: BERT word embeddings are {list(word.shape)} but the corpus text vocabulary has "
            f"{config.text_vocab_size} entries and the model hidden size is {config.hidden_size}; build the "
            "corpus with this BERT's tokenizer"
        )
    ours: dict[str, torch.Tensor] = {
        "embeddings.position.weight": take("embeddings.position_embeddings.weight")[: config.max_positions],
        "embeddings.token_type.weight": take("embeddings.token_type_embeddings.weight"),
        "embeddings.norm.weight": take("embeddings.LayerNorm.weight"),
        "embeddings.norm.bias": take("embeddings.LayerNorm.bias"),
    }
    for i in range(config.layers):
        hf = f"encoder.layer.{i}."
        for part in ("weight", "bias"):
            ours[f"blocks.{i}.qkv.{part}"] = torch.cat(
                [take(f"{hf}attention.self.{n}.{part}") for n in ("query", "key", "value")]
            )
            ours[f"blocks.{i}.attn_out.{part}"] = take(f"{hf}attention.output.dense.{part}")
            ours[f"blocks.{i}.attn_norm.{part}"] = take(f"{hf}attention.output.LayerNorm.{part}")
            ours[f"blocks.{i}.ffn_in.{part}"] = take(f"{hf}intermediate.dense.{part}")
            ours[f"blocks.{i}.ffn_out.{part}"] = take(f"{hf}output.dense.{part}")
            ours[f"blocks.{i}.ffn_norm.{part}"] = take(f"{hf}output.LayerNorm.{part}")
    if prefix + "pooler.dense.weight" in state:
        ours["pooler.weight"] = take("pooler.dense.weight")
        ours["pooler.bias"] = take("pooler.dense.bias")
    heads = {
        "mlm_transform.weight": "cls.predictions.transform.dense.weight",
        "mlm_transform.bias": "cls.predictions.transform.dense.bias",
        "mlm_norm.weight": "cls.predictions.transform.LayerNorm.weight",
        "mlm_norm.bias": "cls.predictions.transform.LayerNorm.bias",
    }
    ours.update({name: state[key] for name, key in heads.items() if key in state})
    if "cls.seq_relationship.weight" in state:
        # BERT's label 0 is "B follows A"; the difference of the two logits is the log-odds of it.
        nsp_weight, nsp_bias = state["cls.seq_relationship.weight"], state["cls.seq_relationship.bias"]
        ours["align_head.weight"] = (nsp_weight[0] - nsp_weight[1])[None]
        ours["align_head.bias"] = (nsp_bias[0] - nsp_bias[1])[None]
    params = model.state_dict()
    with torch.no_grad():
        for name, tensor in ours.items():
            params[name].copy_(tensor.to(params[name].dtype))
        params["embeddings.word.weight"][: config.text_vocab_size].copy_(word)
        bias = state.get("cls.predictions.bias", state.get("cls.predictions.decoder.bias"))
        if bias is not None:
            params["mlm_bias"][: config.text_vocab_size].copy_(bias)


def _modern_key(key: str) -> str:
    """TF-converted checkpoints name LayerNorm parameters gamma/beta."""
    return key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


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
