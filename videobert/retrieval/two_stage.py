"""Two-stage search for large galleries: a cheap first stage proposes K candidates per query, the
cross-encoder re-ranks them.

The first stage embeds a text as the model's predicted distribution over visual words for a
masked video span (``[CLS] text [>] [MASK]×m [SEP]``, averaged over the m slots; the softmax over
the visual-word slice of the logits is taken on the device, so only V numbers a text leave it),
and a video as the histogram of its visual words (a sparse row: a video of L clips has at most L
non-zero entries). Their inner product is the expected overlap. It costs one forward pass per
text and none per video, against one per pair.

The system's ranking is the re-ranked top K followed by the rest of the gallery in first-stage
order. Texts are embedded in blocks; each block's similarities with every video give the
text→video candidates of its queries at once and update a running top K of every video query,
so memory stays at O(N·K) plus one block, never N × V or N × N. A video query whose true text is
not among its candidates needs the first-stage rank of that text among all texts: a second pass
over the blocks (the same forward passes, the same numbers) counts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.sparse

from videobert.errors import ConfigError
from videobert.inference import LoadedModel, forward_sequences
from videobert.inputs import masked_video_input
from videobert.retrieval.scoring import score_pairs

BLOCK_SCORES = 16 << 20  # first-stage similarities held at a time (64 MiB of float32)


def predicted_visual_words(loaded: LoadedModel, texts: Sequence[Sequence[int]], span: int) -> np.ndarray:
    """float32 [len(texts), V]: per text, the model's distribution over visual words for a masked
    video span of ``span`` tokens (``[CLS] text [>] [MASK]×span [SEP]``), averaged over the slots."""
    layout = loaded.layout
    sequences, positions = [], []
    for text in texts:
        sequence = masked_video_input(layout, text, span, loaded.max_len)
        sequences.append(sequence)
        positions.append(np.flatnonzero(sequence["input_ids"] == layout.mask_id).tolist())
    return forward_sequences(loaded, sequences, positions, visual_mean=True)[1]


def visual_word_histograms(videos: Sequence[Sequence[int]], visual_vocab_size: int) -> scipy.sparse.csr_matrix:
    """float32 CSR [len(videos), V]: each video's visual-word frequencies (each row sums to 1)."""
    lengths = np.fromiter((len(v) for v in videos), dtype=np.int64, count=len(videos))
    words = np.concatenate([np.asarray(v, dtype=np.int64) for v in videos]) if len(videos) else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(videos)), lengths)
    weights = np.repeat(1.0 / np.maximum(lengths, 1), lengths).astype(np.float32)
    matrix = scipy.sparse.csr_matrix((weights, (rows, words)), shape=(len(videos), visual_vocab_size), dtype=np.float32)
    matrix.sum_duplicates()
    return matrix


def masked_span(videos: Sequence[Sequence[int]]) -> int:
    """The masked span the first stage embeds texts with: the gallery's median video length."""
    return int(max(1, np.median([len(v) for v in videos])))


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


def _counts(candidates: np.ndarray, cross: np.ndarray, true_items: np.ndarray, outside: tuple[np.ndarray, np.ndarray]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(greater, equal, found) of the two-stage ranking: among the candidates by cross-encoder
    score when the true item is one of them, else after all K of them, by first-stage score
    (``outside``: the counts among the items that are not candidates)."""
    found = candidates == true_items[:, None]
    inside = found.any(axis=1)
    true = np.where(inside, cross[np.arange(len(cross)), found.argmax(axis=1)], 0.0)[:, None]
    greater = np.where(inside, (cross > true).sum(axis=1), candidates.shape[1] + outside[0])
    equal = np.where(inside, (cross == true).sum(axis=1), outside[1])
    return greater.astype(np.int64), equal.astype(np.int64), inside


def two_stage_search(
    loaded: LoadedModel,
    texts: Sequence[Sequence[int]],
    videos: Sequence[Sequence[int]],
    k: int,
    queries: np.ndarray | None = None,
    progress: Callable | None = None,
) -> TwoStageResult:
    """Both directions of two-stage retrieval over the square gallery (text i ↔ video i) for
    ``queries`` (gallery indices; default: all), each against the whole gallery."""
    if k < 1:
        raise ConfigError("two-stage K must be at least 1")
    n = len(texts)
    queries = np.arange(n, dtype=np.int64) if queries is None else np.unique(np.asarray(queries, dtype=np.int64))
    k = min(k, n)
    histograms = visual_word_histograms(videos, loaded.layout.visual_vocab_size)
    span = masked_span(videos)
    block = max(1, BLOCK_SCORES // max(n, 1))
    is_query = np.zeros(n, bool)
    is_query[queries] = True

    def blocks():
        for start in range(0, n, block):
            stop = min(n, start + block)
            embeddings = predicted_visual_words(loaded, texts[start:stop], span)
            yield start, stop, np.asarray(histograms @ embeddings.T, dtype=np.float32)  # [videos, texts of the block]

    t2v_candidates = np.zeros((queries.size, k), np.int64)
    t2v_outside = np.zeros((2, queries.size), np.int64)
    v2t_values = np.full((queries.size, 0), -np.inf, np.float32)
    v2t_columns = np.zeros((queries.size, 0), np.int64)
    v2t_true = np.zeros(queries.size, np.float32)
    position = np.full(n, -1, np.int64)
    position[queries] = np.arange(queries.size)
    for start, stop, sims in blocks():
        # text→video: the block's query texts against every video
        mine = np.flatnonzero(is_query[start:stop])
        if mine.size:
            rows = sims[:, mine].T  # [queries of the block, videos]
            values, columns = top_k(rows, k)
            at = position[start + mine]
            t2v_candidates[at] = columns
            true = rows[np.arange(mine.size), start + mine][:, None]
            t2v_outside[0, at] = (rows > true).sum(axis=1) - (values > true).sum(axis=1)
            t2v_outside[1, at] = (rows == true).sum(axis=1) - (values == true).sum(axis=1)
        # video→text: every query video against the block's texts
        rows = sims[queries]
        v2t_values, v2t_columns = top_k(np.concatenate([v2t_values, rows], axis=1), k,
                                        np.concatenate([v2t_columns, np.broadcast_to(np.arange(start, stop), rows.shape)], axis=1))
        inside = (queries >= start) & (queries < stop)
        v2t_true[inside] = rows[np.flatnonzero(inside), queries[inside] - start]

    missing = ~(v2t_columns == queries[:, None]).any(axis=1)
    v2t_outside = np.zeros((2, queries.size), np.int64)
    if missing.any():  # their true text's first-stage rank among every text
        threshold = v2t_true[missing][:, None]
        for _, _, sims in blocks():
            rows = sims[queries[missing]]
            v2t_outside[0, missing] += (rows > threshold).sum(axis=1)
            v2t_outside[1, missing] += (rows == threshold).sum(axis=1)
        v2t_outside[0, missing] -= (v2t_values[missing] > threshold).sum(axis=1)
        v2t_outside[1, missing] -= (v2t_values[missing] == threshold).sum(axis=1)

    # the cross-encoder re-ranks the candidates
    pairs = np.concatenate([
        np.stack([np.repeat(queries, k), t2v_candidates.reshape(-1)], axis=1),
        np.stack([v2t_columns.reshape(-1), np.repeat(queries, k)], axis=1),
    ])
    logits = score_pairs(loaded, texts, videos, pairs, progress)
    t2v_cross, v2t_cross = (part.reshape(queries.size, k) for part in np.split(logits, 2))
    *t2v, t2v_found = _counts(t2v_candidates, t2v_cross, queries, (t2v_outside[0], t2v_outside[1]))
    *v2t, v2t_found = _counts(v2t_columns, v2t_cross, queries, (v2t_outside[0], v2t_outside[1]))
    recall = {"t2v": float(t2v_found.mean()), "v2t": float(v2t_found.mean())}
    return TwoStageResult(tuple(t2v), tuple(v2t), recall, int(pairs.shape[0]))


def first_stage_candidates(loaded: LoadedModel, text: Sequence[int], videos: Sequence[Sequence[int]], k: int) -> np.ndarray:
    """The ``k`` gallery videos of largest first-stage similarity with one text, best first."""
    embedding = predicted_visual_words(loaded, [text], masked_span(videos))
    sims = np.asarray(visual_word_histograms(videos, loaded.layout.visual_vocab_size) @ embedding.T, np.float32).T
    return top_k(sims, min(k, len(videos)))[1][0]
