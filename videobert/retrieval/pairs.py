"""Which text-video pairs a ranking scores with the cross-encoder, and in what order.

Texts and videos are deduplicated by content (:func:`unique_contents`: a gallery often holds the
same sentence or the same run of visual words twice) and numbered in a canonical order — by
length, then content — so that the score of a pair does not depend on where the gallery put it.
A pair of unique text *t* and unique video *v* is laid out as ``[CLS] text [>] video [SEP]``,
``min(len(t) + len(v) + 3, max_len)`` tokens long.

Pairs are scored in batches cut from the sequence of all wanted pairs sorted by (length, t, v):
consecutive pairs while ``rows × longest`` stays within the token budget (a longer single pair
is a batch of its own). :func:`pair_batches` produces exactly those batches one at a time,
without ever holding the list of pairs — an N × N gallery has N² of them — so that scoring the
whole gallery, or only some queries' rows and columns, uses memory proportional to N, and a
pair gets the same batch, hence the same score bit for bit, however it is asked for.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

CHUNK_PAIRS = 1 << 20  # pairs materialised at a time while cutting batches


def unique_contents(items: Sequence[Sequence[int]]) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct contents of ``items`` sorted by (length, content), and each item's index among
    them (int64 [len(items)])."""
    lengths = np.fromiter((len(item) for item in items), dtype=np.int64, count=len(items))
    where = np.empty(len(items), np.int64)
    unique: list[np.ndarray] = []
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        if length == 0:
            where[members] = len(unique)
            unique.append(np.zeros(0, np.int64))
            continue
        rows = np.stack([np.asarray(items[i], dtype=np.int64) for i in members])
        distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
        where[members] = len(unique) + inverse.reshape(-1)
        unique.extend(distinct)
    return unique, where


def _ragged_arange(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])``, vectorised."""
    total = int(counts.sum())
    if not total:
        return np.zeros(0, np.int64)
    ends = np.cumsum(counts)
    return np.repeat(starts - (ends - counts), counts) + np.arange(total)


def _wanted_pairs(text_lengths: np.ndarray, video_lengths: np.ndarray, max_len: int,
                  active_texts: np.ndarray | None, active_videos: np.ndarray | None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(length, t, v) chunks of the wanted pairs in (length, t, v) order. Texts and videos are
    numbered by (length, content), so the videos of one length are a contiguous range. With
    ``active_texts``/``active_videos`` (bool masks) only pairs with an active text or an active
    video are wanted; None: all pairs."""
    text_lengths, video_lengths = np.asarray(text_lengths, np.int64), np.asarray(video_lengths, np.int64)
    if not text_lengths.size or not video_lengths.size:
        return
    videos_active = np.flatnonzero(active_videos) if active_videos is not None else None
    texts_all = active_texts if active_texts is not None else np.ones(text_lengths.size, bool)
    shortest = int(text_lengths.min() + video_lengths.min() + 3)
    longest = int(text_lengths.max() + video_lengths.max() + 3)
    for length in range(min(shortest, max_len), min(longest, max_len) + 1):
        need = length - 3 - text_lengths
        low = np.searchsorted(video_lengths, need, "left")
        high = np.searchsorted(video_lengths, need, "right") if length < max_len else np.full_like(low, video_lengths.size)
        starts, counts = low.copy(), high - low
        if videos_active is not None:  # inactive texts pair with the active videos of that range only
            part_low = np.searchsorted(videos_active, low, "left")
            part_high = np.searchsorted(videos_active, high, "left")
            starts = np.where(texts_all, low, part_low)
            counts = np.where(texts_all, high - low, part_high - part_low)
        elif active_texts is not None:
            counts = np.where(texts_all, counts, 0)
        texts = np.flatnonzero(counts > 0)
        if not texts.size:
            continue
        cut = np.searchsorted(np.cumsum(counts[texts]), np.arange(CHUNK_PAIRS, int(counts[texts].sum()), CHUNK_PAIRS), "right")
        for group in np.split(texts, cut + 1 if cut.size else cut):
            if not group.size:
                continue
            t = np.repeat(group, counts[group])
            v = _ragged_arange(starts[group], counts[group])
            if videos_active is not None:  # for inactive texts, v counts among the active videos
                partial = ~np.repeat(texts_all[group], counts[group])
                v[partial] = videos_active[v[partial]]
            yield length, t, v


def pair_batches(text_lengths: np.ndarray, video_lengths: np.ndarray, max_len: int, batch_tokens: int,
                 active_texts: np.ndarray | None = None, active_videos: np.ndarray | None = None
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The batches (unique text indices, unique video indices; int64 [B] each) of the wanted pairs
    (module docstring), cut as :func:`videobert.inference.length_batches` cuts the
    sorted list of all of them. ``text_lengths``/``video_lengths`` are the token counts of the
    unique texts and videos (non-decreasing, as :func:`unique_contents` numbers them)."""
    texts: list[np.ndarray] = []
    videos: list[np.ndarray] = []
    rows = 0

    def emit():
        nonlocal texts, videos, rows
        batch = (np.concatenate(texts), np.concatenate(videos))
        texts, videos, rows = [], [], 0
        return batch

    for length, t, v in _wanted_pairs(text_lengths, video_lengths, max_len, active_texts, active_videos):
        capacity = batch_tokens // length  # most rows of a batch whose longest pair is this long
        position = 0
        while position < t.size:
            if rows and (rows + 1) * length > batch_tokens:
                yield emit()
            if capacity == 0:  # a pair longer than the budget is a batch of its own
                texts, videos, rows = [t[position : position + 1]], [v[position : position + 1]], 1
                position += 1
                yield emit()
                continue
            take = min(capacity - rows, t.size - position)
            texts.append(t[position : position + take])
            videos.append(v[position : position + take])
            rows += take
            position += take
    if rows:
        yield emit()
