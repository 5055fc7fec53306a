"""Two-stage retrieval measured on a square gallery (text i ↔ video i): the dual encoder's first
stage keeps K candidates per query, the cross-encoder re-ranks them.

The first stage scores a text and a video by the dot product of their dual-encoder vectors
(:mod:`videobert.dual`). The system's ranking is the re-ranked top K followed by the rest of the
gallery in first-stage order. Similarities are computed block by block (a block of texts against
every video), so memory stays at O(N·K) plus one block, never N × N; the same pass counts the first
stage's own ranking of every query's true item, so the dual encoder alone is measured too (a
second pass counts the video queries', whose true score is known once its block has passed: the
same products, so equal scores stay equal). One
cross-encoder pass over the largest K's candidates serves every smaller K (a first stage's top K is
the start of its top K' > K).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from videobert.errors import ConfigError
from videobert.inference import LoadedModel
from videobert.retrieval.scoring import score_pairs

BLOCK_SCORES = 16 << 20  # first-stage similarities held at a time (64 MiB of float32)


class DualFirstStage:
    """First-stage similarities of a gallery from its texts' and videos' dual-encoder vectors
    (float32 [n, dim] each, unit length)."""

    def __init__(self, text_vectors: np.ndarray, video_vectors: np.ndarray):
        self.texts = np.ascontiguousarray(text_vectors, np.float32)
        self.videos = np.ascontiguousarray(video_vectors, np.float32)

    def block(self, start: int, stop: int) -> np.ndarray:
        """float32 [videos, stop - start]: every video against texts ``start`` … ``stop - 1``."""
        return self.videos @ self.texts[start:stop].T


def top_k(scores: np.ndarray, k: int, columns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``scores`` [n, m], the ``k`` largest (values, column numbers), best first; equal
    scores go to the lower column number. ``columns`` names the m columns (default 0 … m-1)."""
    columns = np.broadcast_to(np.arange(scores.shape[1]) if columns is None else columns, scores.shape)
    order = np.lexsort((columns, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(columns, order, axis=1)


@dataclass
class TwoStageResult:
    """``greater``/``equal`` counts of both directions (per query), the first stage's recall of
    the true item within K, and the pairs the cross-encoder scored."""

    t2v: tuple[np.ndarray, np.ndarray]
    v2t: tuple[np.ndarray, np.ndarray]
    first_stage_recall: dict[str, float]
    pairs_scored: int


@dataclass
class LadderResult:
    """Two-stage results at each K (``by_k``), and the first stage's own ``greater``/``equal``
    counts of both directions (``first_stage``: the dual encoder alone)."""

    by_k: dict[int, TwoStageResult]
    first_stage: dict[str, tuple[np.ndarray, np.ndarray]]


def _counts(candidates: np.ndarray, values: np.ndarray, cross: np.ndarray, true_items: np.ndarray,
            true_first: np.ndarray, first_counts: tuple[np.ndarray, np.ndarray]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(greater, equal, found) of the two-stage ranking with these K candidates: by cross-encoder
    score among them when the true item is one of them, else after all K, by first-stage score
    (its first-stage counts less those of the candidates)."""
    found = candidates == true_items[:, None]
    inside = found.any(axis=1)
    true = np.where(inside, cross[np.arange(len(cross)), found.argmax(axis=1)], 0.0)[:, None]
    outside_greater = first_counts[0] - (values > true_first[:, None]).sum(axis=1)
    outside_equal = first_counts[1] - (values == true_first[:, None]).sum(axis=1)
    greater = np.where(inside, (cross > true).sum(axis=1), candidates.shape[1] + outside_greater)
    equal = np.where(inside, (cross == true).sum(axis=1), outside_equal)
    return greater.astype(np.int64), equal.astype(np.int64), inside


def two_stage_ladder(
    loaded: LoadedModel,
    texts: Sequence[Sequence[int]],
    videos: Sequence[Sequence[int]],
    ks: Sequence[int],
    first_stage: DualFirstStage,
    queries: np.ndarray | None = None,
    progress: Callable | None = None,
) -> LadderResult:
    """Both directions of two-stage retrieval over the square gallery for ``queries`` (gallery
    indices; default: all), each against the whole gallery, at every K of ``ks`` (module docstring)."""
    if not ks or min(ks) < 1:
        raise ConfigError("two-stage K must be at least 1")
    n = len(texts)
    queries = np.arange(n, dtype=np.int64) if queries is None else np.unique(np.asarray(queries, dtype=np.int64))
    k_max = min(max(ks), n)
    block = max(1, BLOCK_SCORES // max(n, 1))
    is_query = np.zeros(n, bool)
    is_query[queries] = True
    position = np.full(n, -1, np.int64)
    position[queries] = np.arange(queries.size)
    true_first = np.zeros(queries.size, np.float32)
    t2v_values = np.zeros((queries.size, k_max), np.float32)
    t2v_candidates = np.zeros((queries.size, k_max), np.int64)
    t2v_first = np.zeros((2, queries.size), np.int64)
    v2t_values = np.full((queries.size, 0), -np.inf, np.float32)
    v2t_candidates = np.zeros((queries.size, 0), np.int64)
    v2t_first = np.zeros((2, queries.size), np.int64)
    blocks = [(start, min(n, start + block)) for start in range(0, n, block)]
    for start, stop in blocks:
        sims = first_stage.block(start, stop)  # [videos, texts of the block]
        mine = np.flatnonzero(is_query[start:stop])
        if mine.size:  # text→video: the block's query texts against every video
            rows = sims[:, mine].T
            at = position[start + mine]
            true_first[at] = rows[np.arange(mine.size), start + mine]
            t2v_values[at], t2v_candidates[at] = top_k(rows, k_max)
            true = true_first[at][:, None]
            t2v_first[0, at] = (rows > true).sum(axis=1)
            t2v_first[1, at] = (rows == true).sum(axis=1)
    for start, stop in blocks:  # video→text: every query video against each block's texts
        rows = first_stage.block(start, stop)[queries]
        v2t_first[0] += (rows > true_first[:, None]).sum(axis=1)
        v2t_first[1] += (rows == true_first[:, None]).sum(axis=1)
        v2t_values, v2t_candidates = top_k(np.concatenate([v2t_values, rows], axis=1), k_max, np.concatenate(
            [v2t_candidates, np.broadcast_to(np.arange(start, stop), rows.shape)], axis=1))

    # the cross-encoder re-ranks the largest K's candidates once
    pairs = np.concatenate([
        np.stack([np.repeat(queries, k_max), t2v_candidates.reshape(-1)], axis=1),
        np.stack([v2t_candidates.reshape(-1), np.repeat(queries, k_max)], axis=1),
    ])
    logits = score_pairs(loaded, texts, videos, pairs, progress)
    t2v_cross, v2t_cross = (part.reshape(queries.size, k_max) for part in np.split(logits, 2))
    by_k = {}
    for k in sorted(set(min(k, n) for k in ks)):
        *t2v, t2v_found = _counts(t2v_candidates[:, :k], t2v_values[:, :k], t2v_cross[:, :k], queries, true_first,
                                  (t2v_first[0], t2v_first[1]))
        *v2t, v2t_found = _counts(v2t_candidates[:, :k], v2t_values[:, :k], v2t_cross[:, :k], queries, true_first,
                                  (v2t_first[0], v2t_first[1]))
        by_k[k] = TwoStageResult(tuple(t2v), tuple(v2t), {"t2v": float(t2v_found.mean()), "v2t": float(v2t_found.mean())},
                                 2 * k * int(queries.size))
    for k in ks:  # a K above the gallery's size is the gallery's size
        by_k.setdefault(k, by_k[min(k, n)])
    return LadderResult(by_k, {"t2v": (t2v_first[0], t2v_first[1]), "v2t": (v2t_first[0], v2t_first[1])})
