"""VideoBERT features of a segment (paper §4.3): what captioning and other downstream tasks read.

The paper runs the trained model over a segment's visual words behind a fill-in-the-blank
sentence, ``[CLS] now let's [MASK] the [MASK] to the [MASK], and then [MASK] the [MASK] [>] v12
v40 … [SEP]``, and takes the **average of the final states of the video tokens and of the masked
text tokens** — one H-dimensional vector per segment, in which the masks have read the video. It
concatenates that with the segment's S3D features (here: their mean over the segment's clips,
1024-d). The two parts are kept side by side in one row: ``[videobert (H) | s3d (1024)]``.

A segment longer than the model's ``max_len`` leaves room for is subsampled evenly (every clip
of the span still has a chance to be seen, as pretraining's subsampling does), not cut.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from videobert.errors import ConfigError
from videobert.inputs import build_input, collate_inputs
from videobert.inference import LoadedModel, length_batches
from videobert.runtime import autocast

PAPER_TEMPLATE = "now let's [MASK] the [MASK] to the [MASK], and then [MASK] the [MASK]"
MASK = "[MASK]"


def template_ids(loaded: LoadedModel, template: str) -> list[int]:
    """WordPiece ids of the fill-in-the-blank template; it needs at least one ``[MASK]``."""
    ids = loaded.vocab.encode_template(template)
    if loaded.vocab.mask_id not in ids:
        raise ConfigError(f"embedding template {template!r} has no {MASK}: the masked text tokens are half the feature")
    return ids


def fit_video(words: np.ndarray, room: int) -> np.ndarray:
    """At most ``room`` of ``words``, evenly spaced over the segment (all of them when they fit)."""
    if words.size <= room:
        return words
    picks = np.linspace(0, words.size - 1, room).round().astype(np.int64)
    return words[picks]


def embedding_input(loaded: LoadedModel, template: Sequence[int], video_words: np.ndarray) -> dict[str, np.ndarray]:
    """``[CLS] template [>] video [SEP]`` within the model's ``max_len``: int64 ``input_ids`` and
    ``token_type_ids`` [L]."""
    room = loaded.max_len - len(template) - 3  # [CLS], [>], [SEP]
    if room < 1:
        raise ConfigError(f"the embedding template takes {len(template)} tokens; the model's max_len {loaded.max_len} "
                          "leaves no room for the video")
    return build_input(loaded.layout, template, fit_video(np.asarray(video_words, np.int64), room))


@torch.no_grad()
def videobert_features(loaded: LoadedModel, sequences: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
    """float32 [n, H]: per sequence from :func:`embedding_input`, the mean final hidden state over
    its video tokens and its masked text tokens (length-sorted batches, padding excluded)."""
    layout = loaded.layout
    hidden = loaded.model.config.hidden_size
    out = np.empty((len(sequences), hidden), np.float32)
    lengths = np.array([len(s["input_ids"]) for s in sequences])
    for rows in length_batches(lengths, loaded.batch_tokens):
        batch = collate_inputs([sequences[r] for r in rows], layout.pad_id)
        ids = batch["input_ids"]
        read = ((ids >= layout.visual_offset) | (ids == layout.mask_id)).float()
        padded = bool((batch["attention_mask"] == 0).any())
        batch = {k: v.to(loaded.device, non_blocking=True) for k, v in batch.items()}
        with autocast(loaded.device, loaded.precision):
            states = loaded.model(batch["input_ids"], batch["token_type_ids"],
                                  batch["attention_mask"] if padded else None,
                                  torch.zeros(0, dtype=torch.long, device=loaded.device)).hidden_states
        read = read.to(loaded.device)
        pooled = (states.float() * read[..., None]).sum(dim=1) / read.sum(dim=1, keepdim=True)
        out[rows] = pooled.cpu().numpy()
    return out


def mean_clip_features(features: np.ndarray, clips: range) -> np.ndarray:
    """float32 [1024]: the mean S3D feature of ``clips`` (rows of one video's features)."""
    return np.asarray(features[clips.start : clips.stop], dtype=np.float32).mean(axis=0)
