"""Scoring text-video pairs with the [CLS] alignment head: batched pair scores, alignment
accuracy, and a two-stage search for large galleries.

**Scores.** A (text, video) pair is laid out as in training, ``[CLS] text [>] video [SEP]``
(:func:`videobert.pretrain.data.build_input`), and scored by the alignment head. Rankings use the
logit; the alignment probability is its sigmoid (same order, but it saturates to exactly 1.0 in
float32 beyond a logit of ~17, which would create ties that are not in the model).

Pairs are deduplicated by content (a gallery often holds the same sentence or the same run of
visual words twice) and scored in a canonical order — unique texts and videos sorted by content,
pairs by length — so that the score of a pair does not depend on where the gallery put it:
shuffling a gallery permutes the score matrix and changes nothing else, bit for bit.

**Two-stage search.** A cheap first stage proposes K candidates per query; the cross-encoder
re-ranks them. The first stage embeds a text as the model's predicted distribution over visual
words for a masked video span (``[CLS] text [>] [MASK]×m [SEP]``, averaged over the m slots), and
a video as the histogram of its visual words; both live in the visual-word space, and their inner
product (a faiss ``IndexFlatIP``) is the expected overlap. It costs one forward pass per text and
none per video, against one per pair. The system's ranking is the re-ranked top K followed by the
rest of the gallery in first-stage order; its recall is reported beside exhaustive scoring.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from videobert.errors import ConfigError, InputError
from videobert.pretrain.data import build_input
from videobert.retrieval.inference import LoadedModel, forward_sequences, length_batches, masked_video_input

log = logging.getLogger(__name__)


def _content_ids(items: Sequence[Sequence[int]]) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Unique contents sorted, and each item's index among them."""
    keys = [tuple(int(t) for t in item) for item in items]
    unique = sorted(set(keys), key=lambda k: (len(k), k))
    where = {k: i for i, k in enumerate(unique)}
    return unique, np.array([where[k] for k in keys], dtype=np.int64)


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
    unique_texts, text_of = _content_ids(texts)
    unique_videos, video_of = _content_ids(videos)
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


def predicted_visual_words(loaded: LoadedModel, texts: Sequence[Sequence[int]], span: int) -> np.ndarray:
    """float32 [len(texts), V]: per text, the model's distribution over visual words for a masked
    video span of ``span`` tokens (``[CLS] text [>] [MASK]×span [SEP]``), averaged over the slots."""
    layout = loaded.layout
    sequences, positions = [], []
    for text in texts:
        sequence = masked_video_input(layout, text, span, loaded.max_len)
        sequences.append(sequence)
        positions.append(np.flatnonzero(sequence["input_ids"] == layout.mask_id).tolist())
    _, logits = forward_sequences(loaded, sequences, positions)
    out = np.empty((len(texts), layout.visual_vocab_size), np.float32)
    for row, slot_logits in enumerate(logits):
        visual = torch.from_numpy(slot_logits[:, layout.visual_offset : layout.size])
        out[row] = torch.softmax(visual, dim=-1).mean(0).numpy()
    return out



def visual_word_histograms(videos: Sequence[Sequence[int]], visual_vocab_size: int) -> np.ndarray:
    """float32 [len(videos), V]: each video's visual-word frequencies (summing to 1)."""
    out = np.zeros((len(videos), visual_vocab_size), np.float32)
    for row, words in enumerate(videos):
        np.add.at(out[row], np.asarray(words, dtype=np.int64), 1.0)
        out[row] /= max(len(words), 1)
    return out


def first_stage_embeddings(
    loaded: LoadedModel, texts: Sequence[Sequence[int]], videos: Sequence[Sequence[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Text and video embeddings of the first stage (module docstring), float32 [n, V] each.
    The masked span is the median video length of the gallery."""
    span = int(max(1, np.median([len(v) for v in videos])))
    return predicted_visual_words(loaded, texts, span), visual_word_histograms(videos, loaded.layout.visual_vocab_size)


def top_k_candidates(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    """int64 [n_queries, k]: the k gallery rows of largest inner product with each query
    (faiss ``IndexFlatIP``; ties at the cut-off go to the earlier gallery row)."""
    import faiss

    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    _, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, gallery.shape[0]))
    return found.astype(np.int64)


def two_stage_counts(
    first_queries: np.ndarray, first_gallery: np.ndarray, candidates: np.ndarray, candidate_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``greater``/``equal`` counts (see :func:`true_match_counts`) of the two-stage ranking:
    the candidates (int [N, K]) ordered by their cross-encoder scores (float [N, K]), then every
    other gallery item in first-stage order. Query i's true item is gallery item i; the
    embeddings are float32 [N, D]."""
    first_queries = np.ascontiguousarray(first_queries, dtype=np.float32)
    first_gallery = np.ascontiguousarray(first_gallery, dtype=np.float32)
    n, k = candidates.shape
    rows = np.arange(n)
    found = candidates == rows[:, None]
    inside = found.any(axis=1)
    true = np.where(inside, candidate_scores[rows, found.argmax(axis=1)], 0.0)[:, None]
    greater = np.where(inside, (candidate_scores > true).sum(axis=1), 0)
    equal = np.where(inside, (candidate_scores == true).sum(axis=1), 0)
    missed = np.flatnonzero(~inside)
    for block in np.array_split(missed, max(1, -(-missed.size // 256))):  # [block, gallery] sims at a time
        if block.size == 0:
            continue
        sims = (torch.from_numpy(first_queries[block]) @ torch.from_numpy(first_gallery).T).numpy()
        true_sims = sims[np.arange(block.size), block][:, None]
        outside = np.ones_like(sims, dtype=bool)
        outside[np.arange(block.size)[:, None], candidates[block]] = False
        greater[block] = k + ((sims > true_sims) & outside).sum(axis=1)
        equal[block] = ((sims == true_sims) & outside).sum(axis=1)
    return greater.astype(np.int64), equal.astype(np.int64)


@dataclass
class TwoStageResult:
    """Counts of both directions, first-stage recall of the true item within K, pairs scored."""

    t2v: tuple[np.ndarray, np.ndarray]
    v2t: tuple[np.ndarray, np.ndarray]
    first_stage_recall: dict[str, float]
    pairs_scored: int


def two_stage_search(
    loaded: LoadedModel,
    texts: Sequence[Sequence[int]],
    videos: Sequence[Sequence[int]],
    k: int,
    exhaustive: np.ndarray | None = None,
    progress: Callable | None = None,
) -> TwoStageResult:
    """Both directions of two-stage retrieval over the square gallery (text i ↔ video i).

    With ``exhaustive`` (the full logit matrix, when it was computed anyway) the re-ranking reads
    it instead of scoring the candidates again; the numbers are the same.
    """
    if k < 1:
        raise ConfigError("two-stage K must be at least 1")
    text_emb, video_emb = first_stage_embeddings(loaded, texts, videos)
    t2v_candidates = top_k_candidates(text_emb, video_emb, k)
    v2t_candidates = top_k_candidates(video_emb, text_emb, k)
    n = len(texts)
    rows = np.repeat(np.arange(n), t2v_candidates.shape[1])
    pairs = np.concatenate([
        np.stack([rows, t2v_candidates.reshape(-1)], axis=1),
        np.stack([v2t_candidates.reshape(-1), rows], axis=1),
    ])
    if exhaustive is not None:
        logits = exhaustive[pairs[:, 0], pairs[:, 1]]
    else:
        logits = score_pairs(loaded, texts, videos, pairs, progress)
    t2v_scores, v2t_scores = np.split(logits, 2)
    t2v = two_stage_counts(text_emb, video_emb, t2v_candidates, t2v_scores.reshape(t2v_candidates.shape))
    v2t = two_stage_counts(video_emb, text_emb, v2t_candidates, v2t_scores.reshape(v2t_candidates.shape))
    recall = {
        "t2v": float(np.mean([i in row for i, row in enumerate(t2v_candidates)])),
        "v2t": float(np.mean([i in row for i, row in enumerate(v2t_candidates)])),
    }
    return TwoStageResult(t2v, v2t, recall, int(pairs.shape[0]))


# ------------------------------------------------------------------------ searching a gallery
def search(
    loaded: LoadedModel,
    query: str,
    videos: Sequence[Sequence[int]],
    top_k: int = 5,
    two_stage: int = 0,
    progress: Callable | None = None,
) -> list[tuple[int, float]]:
    """The ``top_k`` gallery videos for a text query, best first: (gallery index, alignment
    probability). With ``two_stage`` K > 0 only the first stage's K best are scored by the
    cross-encoder. Equal scores keep gallery order."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ConfigError(f"top_k: need a whole number >= 1, got {top_k!r}")
    text = loaded.vocab.encode_text(query)
    unknown = sum(1 for i in text if i == loaded.vocab.unk_id)
    if not text or unknown == len(text):
        why = " (every piece is [UNK]): its ranking would not depend on it" if text else ""
        raise ConfigError(f"the query {query!r} has no WordPiece the model knows{why}")
    if unknown:
        log.warning("%d of the %d word pieces of the query %r are unknown to the model ([UNK])", unknown, len(text), query)
    if not videos:
        raise InputError("the gallery is empty")
    candidates = np.arange(len(videos))
    if two_stage:
        text_emb = predicted_visual_words(loaded, [text], int(max(1, np.median([len(v) for v in videos]))))
        video_emb = visual_word_histograms(videos, loaded.layout.visual_vocab_size)
        candidates = top_k_candidates(text_emb, video_emb, max(two_stage, top_k))[0]
        candidates = candidates[candidates >= 0]
    pairs = np.stack([np.zeros_like(candidates), candidates], axis=1)
    logits = score_pairs(loaded, [text], videos, pairs, progress)
    order = np.lexsort((candidates, -logits))[:top_k]
    probabilities = align_probability(logits[order])
    return [(int(candidates[o]), float(p)) for o, p in zip(order, probabilities)]


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
    groups = np.asarray(groups)
    partner = np.arange(n)
    for i in np.flatnonzero(~aligned):
        others = np.flatnonzero(groups != groups[i])
        if others.size == 0:
            others = np.flatnonzero(np.arange(n) != i)
        partner[i] = others[rng.integers(others.size)]
    logits = score_pairs(loaded, texts, videos, np.stack([np.arange(n), partner], axis=1))
    correct = (logits > 0) == aligned
    return {
        "accuracy": float(correct.mean()),
        "chance": 0.5,
        "positive_accuracy": float(correct[aligned].mean()),
        "negative_accuracy": float(correct[~aligned].mean()),
        "pairs": n,
    }
