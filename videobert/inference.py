"""A trained model ready to use: a model folder loaded for inference (the network in eval mode,
its joint vocabulary, its visual vocabulary's codebook, checked), and running sequences through it
in length-sorted batches cut by a token budget (padding only to the longest member; bf16 autocast
on GPU).

Three loaders read a model folder, each on top of the one before: the network alone
(:meth:`videobert.model.VideoBERT.from_pretrained`), the model ready for inference
(:func:`load_model`, here), and the user's object that also turns video files into visual words
(:meth:`videobert.VideoBERTPipeline.from_pretrained`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from videobert.config import field
from videobert.corpus.joint_vocab import JointVocabulary
from videobert.errors import ConfigError, InputError
from videobert.inputs import TokenLayout, collate_inputs, pad_multiple
from videobert.model import VideoBERT
from videobert.model_folder import check_visual_vocab
from videobert.readers import Field, check_fields, read_yaml
from videobert.runtime import DeviceName, Precision, autocast, resolve_device, resolve_precision
from videobert.vocab.codebook import Codebook


@dataclass
class InferenceConfig:
    """Where a trained model runs, and how many tokens go through it at once (a section of the
    evaluate and retrieve configs)."""

    device: DeviceName = field("auto", help="auto: the GPU if there is one")
    precision: Precision = field("auto", help="auto: bf16 autocast on GPU, fp32 on CPU")
    batch_tokens: int = field(0, speed_only=True, help="tokens per forward pass, padding included (0: 131072 on GPU, 8192 on CPU)")

    def check(self) -> None:
        if self.batch_tokens < 0:
            raise ConfigError("batch_tokens: need >= 0")


@dataclass
class LoadedModel:
    """A trained VideoBERT in eval mode with what scoring needs: its vocabulary, the id layout,
    device and precision, the longest sequence it was trained on, the batch token budget and the
    codebook of its visual vocabulary (None for a model folder without one)."""

    model: VideoBERT
    vocab: JointVocabulary
    layout: TokenLayout
    device: torch.device
    precision: str
    max_len: int
    batch_tokens: int
    codebook: Codebook | None = None


def default_batch_tokens(device: torch.device) -> int:
    """Tokens per forward pass: small batches keep CPU caches warm, GPUs want many rows."""
    return 131_072 if device.type == "cuda" else 8_192


def load_model(
    model_dir: str | Path, device: str = "auto", precision: str = "auto", batch_tokens: int = 0
) -> LoadedModel:
    """The model, joint vocabulary and training ``max_len`` of a model folder (``videobert
    pretrain``'s output), on ``device`` in eval mode."""
    model_dir = Path(model_dir)
    torch_device = resolve_device(device)
    resolved = resolve_precision(precision, torch_device)
    vocab = JointVocabulary.load(model_dir)
    # a model folder's copied codebook must be the one it was trained with
    codebook = check_visual_vocab(model_dir, vocab.codebook, device=torch_device.type)
    if codebook is not None and codebook.size != vocab.visual_vocab_size:
        raise InputError(f"{model_dir / 'visual_vocab' / 'codebook.npz'}: a codebook of {codebook.size} visual words, but "
                         f"vocabulary.json records {vocab.visual_vocab_size}; the folder was modified")
    model = VideoBERT.from_pretrained(model_dir, torch_device)
    if model.config.vocab_size != vocab.size:
        raise InputError(f"{model_dir}: the model has {model.config.vocab_size} ids but vocabulary.json {vocab.size}")
    max_len = model.config.max_positions
    trained_with = model_dir / "config.yaml"
    if trained_with.exists():
        data = check_fields(read_yaml(trained_with, "training config") or {}, trained_with,
                            {"max_len": Field("int", 1, 1_048_576, required=False)})
        max_len = data.get("max_len", max_len)
    return LoadedModel(model, vocab, TokenLayout.from_vocabulary(vocab), torch_device, resolved,
                       min(max_len, model.config.max_positions), batch_tokens or default_batch_tokens(torch_device), codebook)


def length_batches(lengths: np.ndarray, batch_tokens: int) -> Iterator[np.ndarray]:
    """Indices into ``lengths`` in batches of similar length whose padded size (rows × longest)
    stays within ``batch_tokens`` (a longer single row is a batch of its own)."""
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = np.asarray(lengths)[order]
    start = 0
    while start < order.size:
        # rows start … stop-1 pad to sorted_lengths[stop-1]; (stop - start) × that grows with stop
        low, high = start + 1, order.size
        while low < high:
            middle = (low + high + 1) // 2
            if (middle - start) * sorted_lengths[middle - 1] <= batch_tokens:
                low = middle
            else:
                high = middle - 1
        yield order[start:low]
        start = low


@torch.no_grad()
def forward_sequences(
    loaded: LoadedModel, sequences: Sequence[dict[str, np.ndarray]], read_positions: Sequence[Sequence[int]] | None = None,
    visual_mean: bool = False,
) -> tuple[np.ndarray, list[np.ndarray] | np.ndarray]:
    """Run sequences from :func:`build_input` through the model in length-sorted batches.

    Returns the align logits float32 [n] and, when ``read_positions`` gives token positions per
    sequence, the masked-token logits at those positions (float32 [len(positions), vocab] each;
    the output projection is computed only there). With ``visual_mean`` the second item is
    instead float32 [n, V]: per sequence, the softmax over the visual words at each of its
    positions, averaged — reduced on the device, so only V numbers a sequence leave it.
    """
    layout = loaded.layout
    lengths = np.array([len(s["input_ids"]) for s in sequences])
    align = np.empty(len(sequences), np.float32)
    masked: list[np.ndarray] = [np.empty((0, layout.size), np.float32)] * len(sequences)
    visual = np.zeros((len(sequences), layout.visual_vocab_size), np.float32) if visual_mean else None
    for rows in length_batches(lengths, loaded.batch_tokens):
        batch = collate_inputs([sequences[r] for r in rows], layout.pad_id, pad_multiple(loaded.device))
        width = batch["input_ids"].shape[1]
        flat, counts = [], []
        for i, r in enumerate(rows):
            wanted = list(read_positions[r]) if read_positions is not None else []
            flat += [i * width + p for p in wanted]
            counts.append(len(wanted))
        positions = torch.tensor(flat, dtype=torch.long)
        padded = bool((batch["attention_mask"] == 0).any())
        batch = {k: v.to(loaded.device, non_blocking=True) for k, v in batch.items()}
        with autocast(loaded.device, loaded.precision):
            out = loaded.model(batch["input_ids"], batch["token_type_ids"],
                               batch["attention_mask"] if padded else None, positions.to(loaded.device))
        align[rows] = out.align_logits.float().cpu().numpy()
        if read_positions is None:
            continue
        if visual_mean:
            probabilities = torch.softmax(out.mlm_logits[:, layout.visual_offset : layout.size].float(), dim=-1)
            owner = torch.repeat_interleave(torch.arange(len(rows)), torch.tensor(counts)).to(loaded.device)
            sums = torch.zeros(len(rows), layout.visual_vocab_size, device=loaded.device).index_add_(0, owner, probabilities)
            divisor = torch.tensor(counts, dtype=torch.float32, device=loaded.device).clamp(min=1)[:, None]
            visual[rows] = (sums / divisor).cpu().numpy()
            continue
        logits = out.mlm_logits.float().cpu().numpy()
        for r, piece in zip(rows, np.split(logits, np.cumsum(counts)[:-1])):
            masked[r] = piece
    return align, visual if visual_mean else masked
