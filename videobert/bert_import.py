"""Starting a VideoBERT from elsewhere: a Hugging Face BERT's weights, and the visual vocabulary's
centroids for the visual-word embeddings (the paper initialises from BERT-large and from the
centroids). The model itself (:mod:`videobert.model`) knows nothing of either format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from videobert.errors import ConfigError, InputError
from videobert.model import VideoBERT
from videobert.readers import Field, check_fields, load_safetensors
from videobert.store import read_json, safe_torch_load


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
    safetensors = folder / "model.safetensors"
    if safetensors.exists():
        return load_safetensors(safetensors, "BERT weights")
    pickled = folder / "pytorch_model.bin"
    if pickled.exists():
        return safe_torch_load(pickled, "BERT weights")
    raise InputError(f"{folder}: no model.safetensors or pytorch_model.bin (not a Hugging Face BERT folder)")


# the fields of a Hugging Face BERT config.json read here, with the bounds ModelConfig puts on them
BERT_FIELDS = {
    "hidden_size": Field("int", 1, 65_536), "num_hidden_layers": Field("int", 1, 512),
    "num_attention_heads": Field("int", 1, 1_024), "intermediate_size": Field("int", 1, 262_144),
    "max_position_embeddings": Field("int", 1, 1_048_576, required=False),
    "type_vocab_size": Field("int", 1, 1_024, required=False),
    "layer_norm_eps": Field("number", 0, 1, above=True, required=False),
    "vocab_size": Field("int", 1, 10_000_000),
}


def bert_config(folder: str | Path) -> dict:
    """The sizes of the Hugging Face BERT in ``folder`` (``config.json``), as :class:`ModelConfig` fields."""
    folder = Path(folder)
    path = folder / "config.json"
    hf = check_fields(read_json(path, "BERT config", expect=dict), path, BERT_FIELDS)
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
