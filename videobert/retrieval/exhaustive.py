"""Exhaustive ranking: queries against the whole gallery with the cross-encoder, in memory
proportional to the gallery.

For a square gallery (text i ↔ video i) the metrics need, per query, only how many gallery items
score higher than its true item and how many score the same
(:func:`videobert.retrieval.metrics.true_match_counts`). These are accumulated batch by batch as
pairs are scored (:mod:`videobert.retrieval.pairs`), never keeping the N × N scores: first the
batches that hold a query's own pair are scored (the true scores; kept for the second pass while
they fit in :data:`CACHE_SCORES`), then every batch, each pair's score compared with the true
scores of the queries it concerns, weighted by how many gallery items share its content. A pair
falls in the same batch in both passes, so its score is bit for bit the one of the full score
matrix, and the counts equal those of ``true_match_counts`` on it.

``queries`` (gallery indices) ranks only those queries, each still against the whole gallery:
text→video scores the queries' texts with every video, video→text the queries' videos with every
text. Under torchrun the batches are dealt round-robin to the ranks (``group``) and the counts
summed, so every rank ends with the same counts as one process alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from videobert.inputs import build_input
from videobert.inference import LoadedModel, forward_sequences
from videobert.retrieval.pairs import pair_batches, unique_contents
from videobert.runtime import ProcessGroup

CACHE_SCORES = 8 << 20  # float32 scores of the first pass kept for the second (32 MiB)


@dataclass
class RankCounts:
    """Per query (``queries``: gallery indices, ascending) the ``(greater, equal)`` counts of both
    directions (int64 [Q] each), and the number of unique pairs scored."""

    queries: np.ndarray
    t2v: tuple[np.ndarray, np.ndarray]
    v2t: tuple[np.ndarray, np.ndarray]
    pairs_scored: int


def _groups(owner: np.ndarray, selected: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the positions in ``selected`` grouped by ``owner[selected]`` (``size`` groups):
    (start offsets [size + 1], positions)."""
    keys = owner[selected]
    order = np.argsort(keys, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=size))]).astype(np.int64)
    return starts, order.astype(np.int64)


def _expand(starts: np.ndarray, members: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each entry of ``groups``, every member of that group: (entry index, member) pairs."""
    counts = starts[groups + 1] - starts[groups]
    total = int(counts.sum())
    entry = np.repeat(np.arange(groups.size), counts)
    offsets = np.repeat(starts[groups] - (np.cumsum(counts) - counts), counts) + np.arange(total)
    return entry, members[offsets]


def exhaustive_counts(
    loaded: LoadedModel,
    texts: Sequence[Sequence[int]],
    videos: Sequence[Sequence[int]],
    queries: np.ndarray | None = None,
    progress: Callable | None = None,
    group: ProcessGroup | None = None,
) -> RankCounts:
    """``greater``/``equal`` counts of text→video and video→text retrieval over the square gallery
    (text i ↔ video i) for ``queries`` (default: every item), from the alignment logits of the
    pairs they need (module docstring). ``progress(batches, total=…)`` wraps the second pass."""
    n = len(texts)
    if n != len(videos) or n == 0:
        raise ValueError(f"a square gallery needs as many texts as videos (got {len(texts)} and {len(videos)})")
    if any(len(v) == 0 for v in videos) or any(len(t) == 0 for t in texts):
        raise ValueError("every text and every video needs at least one token")
    group = group or ProcessGroup(False)
    rank, world = group.rank, group.world_size
    queries = np.arange(n, dtype=np.int64) if queries is None else np.unique(np.asarray(queries, dtype=np.int64))
    unique_texts, text_of = unique_contents(texts)
    unique_videos, video_of = unique_contents(videos)
    n_texts, n_videos = len(unique_texts), len(unique_videos)
    text_lengths = np.array([len(t) for t in unique_texts], np.int64)
    video_lengths = np.array([len(v) for v in unique_videos], np.int64)
    everything = queries.size == n
    active_texts = None if everything else np.isin(np.arange(n_texts), text_of[queries])
    active_videos = None if everything else np.isin(np.arange(n_videos), video_of[queries])

    def batches():
        return enumerate(pair_batches(text_lengths, video_lengths, loaded.max_len, loaded.batch_tokens,
                                      active_texts, active_videos))

    def score(t: np.ndarray, v: np.ndarray) -> np.ndarray:
        sequences = [build_input(loaded.layout, unique_texts[a], unique_videos[b], loaded.max_len) for a, b in zip(t, v)]
        logits = forward_sequences(loaded, sequences)[0]
        if np.isnan(logits).any():
            raise ValueError("score matrix holds NaN")
        return logits

    # pass 1: the true scores (each query's own pair), from the batches that hold them
    true_codes, true_of = np.unique(text_of[queries] * n_videos + video_of[queries], return_inverse=True)
    true_sum = np.zeros(true_codes.size, np.float64)
    cache: dict[int, np.ndarray] = {}
    cached = count = 0
    for index, (t, v) in batches():
        count += 1
        if index % world != rank:
            continue
        codes = t * n_videos + v
        hit = np.isin(codes, true_codes)
        if not hit.any():
            continue
        logits = score(t, v)
        true_sum[np.searchsorted(true_codes, codes[hit])] = logits[hit]
        if cached + logits.size <= CACHE_SCORES:
            cache[index] = logits
            cached += logits.size
    true_scores = np.asarray(group.sum_array(true_sum), dtype=np.float32)[true_of.reshape(-1)]

    # pass 2: every batch against the true scores of the queries it concerns
    column_weight = np.bincount(video_of, minlength=n_videos).astype(np.float64)  # gallery videos of each content
    row_weight = np.bincount(text_of, minlength=n_texts).astype(np.float64)
    text_starts, text_members = _groups(text_of, queries, n_texts)  # query positions by their text's content
    video_starts, video_members = _groups(video_of, queries, n_videos)
    counts = np.zeros((4, queries.size), np.float64)  # t2v greater, equal; v2t greater, equal
    scored = 0
    stream = batches()
    for index, (t, v) in progress(stream, total=count) if progress else stream:
        if index % world != rank:
            continue
        logits = cache.pop(index, None)
        if logits is None:
            logits = score(t, v)
        scored += t.size
        for starts, members, key, weight, row in ((text_starts, text_members, t, column_weight[v], 0),
                                                  (video_starts, video_members, v, row_weight[t], 2)):
            entry, member = _expand(starts, members, key)
            if not entry.size:
                continue
            mine, true = logits[entry], true_scores[member]
            counts[row] += np.bincount(member, weights=weight[entry] * (mine > true), minlength=queries.size)
            counts[row + 1] += np.bincount(member, weights=weight[entry] * (mine == true), minlength=queries.size)
    counts = np.asarray(group.sum_array(counts.reshape(-1)), np.float64).reshape(4, -1).round().astype(np.int64)
    for row, direction in ((1, "text→video"), (3, "video→text")):
        untied = np.flatnonzero(counts[row] < 1)
        if untied.size:  # the true pair is scored in both passes and must tie with itself
            raise RuntimeError(f"{direction}: the true pair of gallery item {int(queries[untied[0]])} ({untied.size} such) "
                               "did not tie with itself between the two passes (its score changed); its counts would be "
                               "wrong")
    scored = int(group.sum([scored])[0])
    return RankCounts(queries, (counts[0], counts[1]), (counts[2], counts[3]), scored)
