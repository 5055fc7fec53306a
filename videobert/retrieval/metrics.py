"""Retrieval metrics from ranks, with ties never broken in the true item's favour.

The true item's rank is computed from ``greater`` (gallery items scoring strictly higher) and
``equal`` (items scoring exactly the same, the true item included):

* ``average`` (default): the expected rank when ties are broken uniformly at random,
  ``greater + (equal + 1) / 2``; R@k is the probability that the true item lands in the top k,
  ``clip((k - greater) / equal, 0, 1)``. A model whose scores are all equal gets exactly chance.
* ``pessimistic``: the true item comes last among its ties, rank ``greater + equal``.

Chance for a gallery of N items: R@k = min(k, N)/N, median and mean rank (N + 1)/2.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Ties = Literal["average", "pessimistic"]
RECALL_AT = (1, 5, 10)


def true_match_counts(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a square score matrix whose row i's true match is column i: per row, the number of
    columns scoring strictly higher than the true one (``greater``) and exactly as high
    (``equal``, the true column included). int64 [N] each."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] == 0:
        raise ValueError(f"expected a non-empty square score matrix, got shape {list(scores.shape)}")
    if np.isnan(scores).any():
        raise ValueError("score matrix holds NaN")
    true = np.diagonal(scores)[:, None]
    return (scores > true).sum(axis=1), (scores == true).sum(axis=1)


def _checked_counts(greater: np.ndarray, equal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The counts as float64, refusing an ``equal`` below 1: the true item ties with itself, so a 0
    means the counts are wrong (a recall computed from it would be 1 whatever the scores)."""
    greater, equal = np.asarray(greater, np.float64), np.asarray(equal, np.float64)
    if greater.shape != equal.shape:
        raise ValueError(f"greater and equal counts differ in shape: {list(greater.shape)} and {list(equal.shape)}")
    bad = np.flatnonzero(~(equal >= 1))
    if bad.size:
        raise ValueError(f"equal count {equal[bad[0]]:g} for query {int(bad[0])} ({bad.size} such): it counts the true "
                         "item itself and must be at least 1")
    if (greater < 0).any():
        raise ValueError("greater counts must be >= 0")
    return greater, equal


def ranks_from_counts(greater: np.ndarray, equal: np.ndarray, ties: Ties = "average") -> np.ndarray:
    """1-based rank of each true item (float64 [N]) under the tie rule (module docstring);
    ValueError for an ``equal`` below 1 (the true item ties with itself)."""
    greater, equal = _checked_counts(greater, equal)
    if ties == "average":
        return greater + (equal + 1) / 2
    if ties == "pessimistic":
        return greater + equal
    raise ValueError(f"ties must be 'average' or 'pessimistic', not {ties!r}")


def recall_from_counts(greater: np.ndarray, equal: np.ndarray, k: int, ties: Ties = "average") -> np.ndarray:
    """Per query, the probability (average) or indicator (pessimistic) that the true item is in the top k."""
    greater, equal = _checked_counts(greater, equal)
    if ties == "average":
        return np.clip((k - greater) / equal, 0.0, 1.0)
    return (ranks_from_counts(greater, equal, ties) <= k).astype(np.float64)


def metrics_from_counts(greater: np.ndarray, equal: np.ndarray, ties: Ties = "average") -> dict[str, float]:
    """``r1``, ``r5``, ``r10`` (fractions), ``median_rank`` and ``mean_rank`` (1-based)."""
    ranks = ranks_from_counts(greater, equal, ties)
    metrics = {f"r{k}": float(recall_from_counts(greater, equal, k, ties).mean()) for k in RECALL_AT}
    metrics["median_rank"] = float(np.median(ranks))
    metrics["mean_rank"] = float(ranks.mean())
    return metrics


def retrieval_metrics(scores: np.ndarray, ties: Ties = "average") -> dict[str, float]:
    """R@1/5/10 and median/mean rank for a square score matrix whose row i's true match is
    column i (higher is better). Ties are averaged (default) or pessimistic, never optimistic."""
    return metrics_from_counts(*true_match_counts(scores), ties)


def chance_metrics(gallery_size: int) -> dict[str, float]:
    """What random scores give on a gallery of N: R@k = min(k, N)/N, median/mean rank (N+1)/2."""
    n = gallery_size
    chance = {f"chance_r{k}": min(k, n) / n for k in RECALL_AT}
    chance.update(chance_median_rank=(n + 1) / 2, chance_mean_rank=(n + 1) / 2)
    return chance
