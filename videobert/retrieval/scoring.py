"""Scoring text-video pairs with the [CLS] alignment head: pair scores and alignment accuracy.

**Scores.** A (text, video) pair is laid out as in training, ``[CLS] text [>] video [SEP]``
(:func:`videobert.inputs.build_input`), and scored by the alignment head. Rankings use the
logit; the alignment probability is its sigmoid (same order, but it saturates to exactly 1.0 in
float32 beyond a logit of ~17, which would create ties that are not in the model).

Pairs are deduplicated by content and scored in a canonical order (:mod:`videobert.retrieval.pairs`),
so that the score of a pair does not depend on where the gallery put it: shuffling a gallery
permutes the score matrix and changes nothing else, bit for bit. Ranking a whole gallery without
its N × N matrix is :mod:`videobert.retrieval.exhaustive`; the two-stage search for large
galleries is :mod:`videobert.retrieval.two_stage`.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from videobert.errors import InputError
from videobert.inputs import build_input
from videobert.inference import LoadedModel, forward_sequences, length_batches
from videobert.retrieval.pairs import unique_contents

log = logging.getLogger(__name__)


def score_pairs(
    loaded: LoadedModel,
    texts: Sequence[Sequence[int]],
    videos: Sequence[Sequence[int]],
    pairs: np.ndarray,
    progress: Callable | None = None,
) -> np.ndarray:
    """Alignment logits float32 [P] of ``pairs`` (int [P, 2]: text index, video index).

    ``texts`` are WordPiece ids, ``videos`` visual words 0 … V-1 (both without special tokens).
    Pairs with equal content are scored once; ``progress`` wraps the batch iterator.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if any(len(v) == 0 for v in videos) or any(len(t) == 0 for t in texts):
        raise ValueError("every text and every video needs at least one token")
    unique_texts, text_of = unique_contents(texts)
    unique_videos, video_of = unique_contents(videos)
    content_pairs = text_of[pairs[:, 0]] * len(unique_videos) + video_of[pairs[:, 1]]
    unique_pairs, back = np.unique(content_pairs, return_inverse=True)
    t_index, v_index = np.divmod(unique_pairs, len(unique_videos))
    t_len = np.array([len(t) for t in unique_texts])[t_index]
    v_len = np.array([len(v) for v in unique_videos])[v_index]
    lengths = np.minimum(t_len + v_len + 3, loaded.max_len)
    logits = np.empty(unique_pairs.size, np.float32)
    batches = list(length_batches(lengths, loaded.batch_tokens))
    for rows in progress(batches) if progress else batches:
        sequences = [build_input(loaded.layout, unique_texts[t_index[r]], unique_videos[v_index[r]], loaded.max_len)
                     for r in rows]
        logits[rows] = forward_sequences(loaded, sequences)[0]
    return logits[back.reshape(-1)]


def score_matrix(
    loaded: LoadedModel, texts: Sequence[Sequence[int]], videos: Sequence[Sequence[int]], progress: Callable | None = None
) -> np.ndarray:
    """Alignment logits float32 [len(texts), len(videos)] of every (text, video) pair."""
    t, v = np.meshgrid(np.arange(len(texts)), np.arange(len(videos)), indexing="ij")
    pairs = np.stack([t.reshape(-1), v.reshape(-1)], axis=1)
    return score_pairs(loaded, texts, videos, pairs, progress).reshape(len(texts), len(videos))


def align_probability(logits: np.ndarray) -> np.ndarray:
    """The alignment probability sigmoid(logit)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def align_accuracy(
    loaded: LoadedModel, texts: Sequence[Sequence[int]], videos: Sequence[Sequence[int]], groups: Sequence[str],
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy of "aligned iff probability > 0.5" on the split's pairs: a seeded half of the
    texts with their own video, the other half with the video of another example (of another
    video — ``groups`` names each example's video — when the split has more than one).

    Returns ``accuracy``, ``chance`` (0.5), ``positive_accuracy``, ``negative_accuracy``, ``pairs``.
    """
    n = len(texts)
    if n < 2:
        raise InputError("alignment accuracy needs at least two text-video examples")
    rng = np.random.default_rng([seed, 0xA119])
    aligned = np.zeros(n, bool)
    aligned[rng.permutation(n)[: (n + 1) // 2]] = True
    partner = np.arange(n)
    _, code = np.unique(np.asarray(groups), return_inverse=True)
    code = code.reshape(-1)
    members = np.argsort(code, kind="stable")  # each group's examples, ascending, groups one after another
    starts = np.concatenate([[0], np.cumsum(np.bincount(code))])
    single_group = starts.size == 2
    for i in np.flatnonzero(~aligned):
        if single_group:  # any other example: the k-th of the examples but i
            k = int(rng.integers(n - 1))
            partner[i] = k + (k >= i)
            continue
        # the k-th (ascending) example of another video: k plus the own video's examples before it
        own = members[starts[code[i]] : starts[code[i] + 1]]
        k = int(rng.integers(n - own.size))
        partner[i] = k + np.searchsorted(own - np.arange(own.size), k, side="right")
    logits = score_pairs(loaded, texts, videos, np.stack([np.arange(n), partner], axis=1))
    correct = (logits > 0) == aligned
    return {
        "accuracy": float(correct.mean()),
        "chance": 0.5,
        "positive_accuracy": float(correct[aligned].mean()),
        "negative_accuracy": float(correct[~aligned].mean()),
        "pairs": n,
    }
