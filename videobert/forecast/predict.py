"""Forecasting visual words: the paper's future forecasting ("forecasts future visual words from
the video so far").

The input is the video-only layout pretraining trains on, with the future as masks::

    [CLS] [>] v_1 … v_k [MASK]×n [SEP]            (token types: 0 for [CLS], 1 from [>] on)
    [CLS] sentence [>] v_1 … v_k [MASK]×n [SEP]   (with a sentence on the text side, types 0)

:func:`forecast` fills the masks left to right, each restricted to the visual words (softmax over
the visual slice of the masked-token logits) and fed back before the next is predicted. A context
longer than the model's ``max_len`` keeps its most recent words.

:func:`forecast_metrics` measures next-word prediction on a split: for every video and every clip
position ``t >= 1`` the word ``v_t`` is predicted from the (at most ``context``) words before it,
one masked slot ``[CLS] [>] v_{t-c} … v_{t-1} [MASK] [SEP]``. **Positions rule**: every clip of
the video's visual words counts once, whatever it shows — clips in a pause between narrated
segments, before the first or after the last sentence included — and the context runs across
those pauses (the visual words are the TOKENS folder's, every clip of the video). Beside it, two
baselines estimated on the train split's videos only (:func:`fit_baselines`) — unigram frequency
(the most frequent words) and bigram (the most frequent successors of the previous word; ties
among successors, and the slots a previous word's successors leave free — all five when it was
never seen in train — follow the unigram order) — then repeat (the previous word again, what a
clip of a still scene predicts, then the bigram's other predictions) and chance (1/V, 5/V). The
model's margin over each baseline comes with a 95 % interval (:func:`paired_difference`): the same
positions scored both ways, the videos resampled with replacement (a video's positions are not
independent).

Beside the rankings, the **log-loss** of each forecast (:func:`forecast_metrics`): the mean
negative log-probability, in nats, that the model (its softmax over the visual words) and the
baselines gave the word that came — the measure of a forecast's whole distribution, not only of
its first five. The bigram's probabilities are absolute discounting interpolated with the unigram
(:func:`bigram_probability`; the discount from the train split's counts of counts, nothing tuned
on the split measured), the unigram's are add-one; repeat predicts no distribution and has none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from videobert.corpus.reader import CorpusSplit, corpus_visual_words
from videobert.errors import ConfigError, InputError
from videobert.inference import LoadedModel, forward_sequences
from videobert.inputs import TokenLayout, build_input
from videobert.media import contact_sheet

log = logging.getLogger(__name__)

TOP_K = (1, 5)
SPECIALS = 3  # [CLS] [>] … [SEP]
DISCOUNT_RANGE = (0.05, 0.95)  # the bigram's discount is kept inside: every word keeps some probability
SMALLEST_PROBABILITY = float(np.finfo(np.float32).tiny)  # a model probability that underflowed counts as this
VIDEOS_PER_READ = 256  # videos whose visual words are in memory at once
BASELINES = ("bigram", "unigram", "repeat")
RESAMPLES = 1000  # bootstrap resamples of the videos for the model-minus-baseline intervals


# ------------------------------------------------------------------------ inputs
def forecast_input(layout: TokenLayout, context_words: Sequence[int], n_slots: int, max_len: int,
                   text_ids: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """``[CLS] (text) [>] context [MASK]×n_slots [SEP]`` (``build_input``'s layout and token types),
    cut to ``max_len``: the context keeps its most recent words; with a text, the video side is cut
    first, down to half of the room if the text needs the rest, then the text (as pretraining cuts).
    ``context_words`` are 0 … V-1. The masks are the ``n_slots`` positions before the final [SEP]."""
    context = np.asarray(context_words, dtype=np.int64)
    text = np.asarray(text_ids if text_ids is not None else [], dtype=np.int64)
    room = max_len - SPECIALS
    if n_slots < 1 or n_slots > room:
        raise ConfigError(f"{n_slots} forecast words do not fit max_len {max_len} (at most {room})")
    if context.size + n_slots + text.size > room:
        keep = room - n_slots - text.size
        if text.size:
            keep = max(keep, min(context.size, (room - n_slots) // 2))
        context = context[context.size - max(keep, 0):]
        text = text[: room - n_slots - context.size]
    sequence = build_input(layout, text if text.size else None, np.concatenate([context, np.zeros(n_slots, np.int64)]))
    sequence["input_ids"][-1 - n_slots : -1] = layout.mask_id
    return sequence


def _check_words(words: np.ndarray, layout: TokenLayout, what: str) -> None:
    if words.size and (words.min() < 0 or words.max() >= layout.visual_vocab_size):
        raise InputError(f"{what}: visual words must be 0 … {layout.visual_vocab_size - 1}")


# ------------------------------------------------------------------------ generation
@torch.no_grad()
def forecast(loaded: LoadedModel, context_words: Sequence[int], n_words: int,
             text: str | None = None) -> tuple[list[int], list[float]]:
    """The ``n_words`` visual words (0 … V-1) predicted to follow ``context_words`` (the video so
    far, in clip order), and each one's probability when it was chosen. The masks are filled left
    to right, each over the visual words only, the chosen word fed back before the next. ``text``:
    a sentence on the text side (the narration the video goes with)."""
    layout = loaded.layout
    if isinstance(n_words, bool) or not isinstance(n_words, (int, np.integer)) or n_words < 1:
        raise ConfigError(f"n_words: need a whole number >= 1, got {n_words!r}")
    context = np.asarray(context_words, dtype=np.int64).reshape(-1)
    _check_words(context, layout, "the context")
    text_ids = None
    if text is not None:
        loaded.vocab.warn_unknown(text, "--text")
        text_ids = loaded.vocab.encode_text(text)
        if not text_ids:
            raise ConfigError(f"the sentence {text!r} has no WordPiece the model knows")
    sequence = forecast_input(layout, context, int(n_words), loaded.max_len, text_ids)
    length = len(sequence["input_ids"])
    slots = range(length - 1 - int(n_words), length - 1)
    words, probabilities = [], []
    for slot in slots:
        _, logits = forward_sequences(loaded, [sequence], [[int(slot)]])
        visual = torch.softmax(torch.from_numpy(logits[0][0, layout.visual_offset : layout.size]).double(), dim=-1)
        probability, word = visual.max(dim=-1)
        words.append(int(word))
        probabilities.append(float(probability))
        sequence["input_ids"][slot] = int(word) + layout.visual_offset
    return words, probabilities


# ------------------------------------------------------------------------ baselines
@dataclass(frozen=True)
class Baselines:
    """Next-word baselines from the train split: ``unigram`` int64 [V], every word from the most
    frequent (ties: lower id first); ``bigram`` int64 [V, K], row p the K predictions after word p
    (its most frequent successors — ties in unigram order — then the unigram order). For the
    probabilities (:func:`bigram_probability`): the distinct train pairs ``pair_codes`` (previous
    · V + next, ascending) and their ``pair_counts``, per previous word its ``followed`` count
    (positions) and ``successors`` (distinct next words), ``unigram_probability`` float64 [V]
    (add-one) and the ``discount``."""

    unigram: np.ndarray
    bigram: np.ndarray
    positions: int  # train positions t >= 1 the bigram counts come from
    words: int  # train words the unigram counts come from
    seen_previous: int  # distinct previous words with a successor in train
    pair_codes: np.ndarray
    pair_counts: np.ndarray
    followed: np.ndarray
    successors: np.ndarray
    unigram_probability: np.ndarray
    discount: float


def fit_baselines(videos: Iterable[np.ndarray], vocab_size: int, k: int = max(TOP_K)) -> Baselines:
    """Unigram and bigram baselines from each video's visual words (the train split's). Memory:
    the distinct (previous, next) pairs, never the positions."""
    unigram_counts = np.zeros(vocab_size, np.int64)
    pair_codes: list[np.ndarray] = []
    pair_counts: list[np.ndarray] = []
    positions = 0
    for words in videos:
        words = np.asarray(words, dtype=np.int64)
        if words.size and (words.min() < 0 or words.max() >= vocab_size):
            raise InputError(f"a train video: visual words must be 0 … {vocab_size - 1}")
        unigram_counts += np.bincount(words, minlength=vocab_size)[:vocab_size]
        if words.size < 2:
            continue
        codes, counts = np.unique(words[:-1] * vocab_size + words[1:], return_counts=True)
        pair_codes.append(codes)
        pair_counts.append(counts)
        positions += words.size - 1
        if len(pair_codes) >= 64:  # merge as we go: memory stays with the distinct pairs
            pair_codes, pair_counts = [np.concatenate(pair_codes)], [np.concatenate(pair_counts)]
            pair_codes[0], pair_counts[0] = _merge_counts(pair_codes[0], pair_counts[0])
    unigram = np.lexsort((np.arange(vocab_size), -unigram_counts)).astype(np.int64)
    rank = np.empty(vocab_size, np.int64)
    rank[unigram] = np.arange(vocab_size)
    k = min(k, vocab_size)
    bigram = np.tile(unigram[:k], (vocab_size, 1))
    seen = 0
    codes, counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if pair_codes:
        codes, counts = _merge_counts(np.concatenate(pair_codes), np.concatenate(pair_counts))
        previous, following = codes // vocab_size, codes % vocab_size
        order = np.lexsort((rank[following], -counts, previous))
        previous, following = previous[order], following[order]
        starts = np.flatnonzero(np.r_[True, previous[1:] != previous[:-1]])
        ends = np.r_[starts[1:], previous.size]
        seen = starts.size
        for start, end in zip(starts, ends):
            best = following[start : min(end, start + k)]
            if best.size < k:
                rest = unigram[~np.isin(unigram, best)][: k - best.size]
                best = np.concatenate([best, rest])
            bigram[previous[start]] = best
    previous_of_pair = codes // vocab_size
    followed = np.bincount(previous_of_pair, weights=counts, minlength=vocab_size).astype(np.int64)
    successors = np.bincount(previous_of_pair, minlength=vocab_size).astype(np.int64)
    unigram_probability = (unigram_counts + 1) / (unigram_counts.sum() + vocab_size)
    return Baselines(unigram, bigram, positions, int(unigram_counts.sum()), seen, codes, counts, followed, successors,
                     unigram_probability, discount_of(counts))


def discount_of(pair_counts: np.ndarray) -> float:
    """Absolute discounting's ``D = n1 / (n1 + 2 n2)`` (Ney, Essen and Kneser 1994), n1 and n2 the
    pairs seen once and twice, kept inside :data:`DISCOUNT_RANGE` (0.5 without such pairs)."""
    once, twice = int(np.sum(pair_counts == 1)), int(np.sum(pair_counts == 2))
    discount = once / (once + 2 * twice) if once + twice else 0.5
    return float(np.clip(discount, *DISCOUNT_RANGE))


def bigram_probability(baselines: Baselines, previous: np.ndarray, following: np.ndarray) -> np.ndarray:
    """float64: the bigram's probability of each ``following`` word after its ``previous`` one —
    ``(max(c(p, y) - D, 0) + D · s(p) · u(y)) / c(p)`` with c the train counts, s(p) the distinct
    successors of p and u the unigram's add-one probabilities; ``u(y)`` after a word never
    followed in train. Over the V words after a word it sums to 1."""
    previous, following = np.asarray(previous, np.int64), np.asarray(following, np.int64)
    codes = previous * baselines.unigram.size + following
    count = np.zeros(codes.shape, np.float64)
    if baselines.pair_codes.size:
        at = np.minimum(np.searchsorted(baselines.pair_codes, codes), baselines.pair_codes.size - 1)
        count = np.where(baselines.pair_codes[at] == codes, baselines.pair_counts[at], 0).astype(np.float64)
    seen = baselines.followed[previous].astype(np.float64)
    back_off = baselines.unigram_probability[following]
    D = baselines.discount
    interpolated = (np.maximum(count - D, 0) + D * baselines.successors[previous] * back_off) / np.maximum(seen, 1)
    return np.where(seen > 0, interpolated, back_off)


def _merge_counts(codes: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(codes, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts, minlength=unique.size).astype(np.int64)


def baseline_hits(baselines: Baselines, words: np.ndarray) -> dict[str, dict[int, int]]:
    """Hits of the baselines at positions 1 … n-1 of one video: ``{"unigram": {1: hits@1, 5:
    hits@5}, "bigram": {...}, "repeat": {...}}``. ``repeat`` predicts the previous word again, then
    (for top-5) the bigram's other predictions after it, in order."""
    words = np.asarray(words, dtype=np.int64)
    previous, following = words[:-1], words[1:]
    unigram_rank = np.empty(baselines.unigram.size, np.int64)
    unigram_rank[baselines.unigram] = np.arange(baselines.unigram.size)
    bigram_top = baselines.bigram[previous]  # [n-1, K]
    others = bigram_top != previous[:, None]
    repeat_top = np.concatenate([previous[:, None], np.take_along_axis(
        bigram_top, np.argsort(~others, axis=1, kind="stable"), axis=1)[:, : bigram_top.shape[1] - 1]], axis=1)
    hits: dict[str, dict[int, int]] = {"unigram": {}, "bigram": {}, "repeat": {}}
    for k in TOP_K:
        hits["unigram"][k] = int((unigram_rank[following] < k).sum())
        hits["bigram"][k] = int((bigram_top[:, :k] == following[:, None]).any(axis=1).sum())
        hits["repeat"][k] = int((repeat_top[:, :k] == following[:, None]).any(axis=1).sum())
    return hits


def baseline_log_loss(baselines: Baselines, words: np.ndarray) -> dict[str, float]:
    """The bigram's and the unigram's log-loss summed over positions 1 … n-1 of one video (nats):
    ``{"bigram": ..., "unigram": ...}``."""
    words = np.asarray(words, dtype=np.int64)
    previous, following = words[:-1], words[1:]
    return {"bigram": float(-np.log(bigram_probability(baselines, previous, following)).sum()),
            "unigram": float(-np.log(baselines.unigram_probability[following]).sum())}


# ------------------------------------------------------------------------ the metric
def next_word_inputs(layout: TokenLayout, words: np.ndarray, context: int) -> list[dict[str, np.ndarray]]:
    """One sequence per position t = 1 … n-1 of a video: ``[CLS] [>] v_{t-c} … v_{t-1} [MASK] [SEP]``."""
    words = np.asarray(words, dtype=np.int64)
    sequences = []
    for t in range(1, words.size):
        ids = np.concatenate([[layout.cls_id, layout.video_sep_id], words[max(0, t - context) : t] + layout.visual_offset,
                              [layout.mask_id, layout.sep_id]])
        types = np.ones(ids.size, np.int64)
        types[0] = 0
        sequences.append({"input_ids": ids.astype(np.int64), "token_type_ids": types})
    return sequences


def model_hits(loaded: LoadedModel, videos: Iterable[np.ndarray], context: int,
               on_chunk: Callable[[int], None] | None = None) -> dict[int | str, np.ndarray]:
    """Hits@1 and @5 of the model's next-word prediction over every position t >= 1, one count a
    video of two clips or more, and its log-loss summed over them (nats; a probability that
    underflowed counts as :data:`SMALLEST_PROBABILITY`): ``{1: int64 [videos], 5: ..., "log_loss":
    float64 [videos]}``, in the order read; shorter videos are skipped. Sequences go through
    :func:`forward_sequences` in chunks of whole videos (only the visual-word probabilities of the
    masked slot come back: V numbers a position)."""
    layout = loaded.layout
    chunk_rows = max(64, min(loaded.batch_tokens // (context + SPECIALS + 1), 2**26 // layout.visual_vocab_size))
    hits: dict[int | str, list[np.ndarray]] = {**{k: [] for k in TOP_K}, "log_loss": []}
    pending: list[dict[str, np.ndarray]] = []
    targets: list[np.ndarray] = []

    def flush() -> None:
        nonlocal pending, targets
        if not pending:
            return
        slots = [[len(s["input_ids"]) - 2] for s in pending]
        _, probabilities = forward_sequences(loaded, pending, slots, visual_mean=True)
        truth = np.concatenate(targets)
        starts = np.cumsum([0] + [t.size for t in targets[:-1]])
        for k in TOP_K:
            k_eff = min(k, probabilities.shape[1])
            top = np.argpartition(-probabilities, k_eff - 1, axis=1)[:, :k_eff]
            hits[k].append(np.add.reduceat((top == truth[:, None]).any(axis=1).astype(np.int64), starts))
        of_truth = probabilities[np.arange(truth.size), truth].astype(np.float64)
        hits["log_loss"].append(np.add.reduceat(-np.log(np.maximum(of_truth, SMALLEST_PROBABILITY)), starts))
        if on_chunk is not None:
            on_chunk(truth.size)
        pending, targets = [], []

    for words in videos:
        words = np.asarray(words, dtype=np.int64)
        if words.size < 2:
            continue
        pending += next_word_inputs(layout, words, context)
        targets.append(words[1:])
        if len(pending) >= chunk_rows:
            flush()
    flush()
    return {k: np.concatenate(parts) if parts else np.zeros(0, np.float64 if k == "log_loss" else np.int64)
            for k, parts in hits.items()}


def paired_difference(hits: np.ndarray, other_hits: np.ndarray, positions: np.ndarray, resamples: int = RESAMPLES,
                      seed: int = 0) -> dict[str, float | None]:
    """The accuracy of ``hits`` minus that of ``other_hits`` (per-video hit counts of two predictors
    on the same positions; ``positions`` per video) and its 95 % percentile interval: ``resamples``
    draws of the videos with replacement, each giving the pooled difference of the drawn videos.
    ``{"difference", "low", "high"}``; with fewer than two videos the interval is None."""
    return paired_differences({"": (hits, other_hits)}, positions, resamples, seed)[""]


def paired_differences(pairs: dict[str, tuple[np.ndarray, np.ndarray]], positions: np.ndarray,
                       resamples: int = RESAMPLES, seed: int = 0) -> dict[str, dict[str, float | None]]:
    """:func:`paired_difference` of each ``(hits, other_hits)`` pair, every pair read through the
    same resamples of the videos (drawn once)."""
    positions = np.asarray(positions, dtype=np.float64)
    gained = {name: np.asarray(hits, np.float64) - np.asarray(other, np.float64) for name, (hits, other) in pairs.items()}
    total = positions.sum()
    differences = {name: float(g.sum() / total) if total else 0.0 for name, g in gained.items()}
    if positions.size < 2:
        return {name: {"difference": d, "low": None, "high": None} for name, d in differences.items()}
    rng = np.random.default_rng(seed)
    draws = {name: np.empty(resamples) for name in gained}
    for i in range(resamples):  # one draw at a time: memory stays with the videos, not videos × resamples
        weights = np.bincount(rng.integers(positions.size, size=positions.size), minlength=positions.size)
        drawn = max(weights @ positions, 1.0)
        for name, g in gained.items():
            draws[name][i] = weights @ g / drawn
    intervals = {name: np.percentile(d, [2.5, 97.5]) for name, d in draws.items()}
    return {name: {"difference": differences[name], "low": float(intervals[name][0]), "high": float(intervals[name][1])}
            for name in gained}


def forecast_metrics(loaded: LoadedModel, videos: Iterable[np.ndarray], train_videos: Iterable[np.ndarray],
                     context: int = 8, on_chunk: Callable[[int], None] | None = None) -> dict:
    """Next-word top-1/top-5 accuracy and log-loss of the model on ``videos`` (each an int array of
    visual words, every clip of one video) from the ``context`` most recent words, beside the
    unigram and bigram baselines fitted on ``train_videos``, repeat and chance. Returns ``predictions``, ``videos``,
    ``context``, ``model``, ``bigram``, ``unigram``, ``repeat``, ``chance`` (each ``{"top1",
    "top5"}``), ``log_loss`` (``{"model", "bigram", "unigram", "chance"}``: mean nats a position),
    ``model_minus_bigram`` and ``model_minus_unigram`` (each ``{"top1", "top5", "log_loss"}`` of
    :func:`paired_difference`: the margin and its 95 % interval over videos; a log-loss margin below
    0 is the model's gain), ``model_minus_repeat`` (``{"top1", "top5"}``), ``intervals`` (how they
    were drawn), ``baselines`` (what the baselines were fitted on) and ``positions`` (the rule).
    Both iterables are read once, in order; memory beyond a chunk of videos: a few counts a
    video."""
    layout = loaded.layout
    if isinstance(context, bool) or not isinstance(context, (int, np.integer)) or context < 1:
        raise ConfigError(f"context: need a whole number >= 1, got {context!r}")
    usable = loaded.max_len - SPECIALS - 1
    if context > usable:
        log.warning("context %d does not fit max_len %d: using the %d most recent words", context, loaded.max_len, usable)
        context = usable
    baselines = fit_baselines(train_videos, layout.visual_vocab_size)
    if baselines.positions == 0:
        log.warning("the train split has no video of two clips or more: the bigram baseline is the unigram order")
    counted: dict[str, dict[int, list[int]]] = {name: {k: [] for k in TOP_K} for name in BASELINES}
    losses: dict[str, list[float]] = {"bigram": [], "unigram": []}
    positions: list[int] = []

    def checked() -> Iterator[np.ndarray]:
        for words in videos:
            words = np.asarray(words, dtype=np.int64)
            _check_words(words, layout, "a video")
            if words.size < 2:
                continue
            positions.append(words.size - 1)
            for name, by_k in baseline_hits(baselines, words).items():
                for k, value in by_k.items():
                    counted[name][k].append(value)
            for name, value in baseline_log_loss(baselines, words).items():
                losses[name].append(value)
            yield words

    hits = model_hits(loaded, checked(), context, on_chunk)
    per_video = np.asarray(positions, dtype=np.int64)
    total = int(per_video.sum())
    V = layout.visual_vocab_size

    def rates(by_k: dict[int, Sequence[int]]) -> dict[str, float]:
        return {f"top{k}": int(np.sum(by_k[k])) / total if total else 0.0 for k in TOP_K}

    pairs = {(name, f"top{k}"): (hits[k], np.asarray(counted[name][k], np.int64)) for name in BASELINES for k in TOP_K}
    pairs.update({(name, "log_loss"): (hits["log_loss"], np.asarray(losses[name])) for name in losses})
    margins = paired_differences(pairs, per_video)

    return {
        "predictions": total,
        "videos": int(per_video.size),
        "context": int(context),
        "model": rates(hits),
        "bigram": rates(counted["bigram"]),
        "unigram": rates(counted["unigram"]),
        "repeat": rates(counted["repeat"]),
        "chance": {f"top{k}": min(k, V) / V for k in TOP_K},
        "log_loss": {"model": float(hits["log_loss"].sum()) / total if total else 0.0,
                     **{name: float(np.sum(values)) / total if total else 0.0 for name, values in losses.items()},
                     "chance": float(np.log(V))},
        **{f"model_minus_{name}": {measure: margin for (of, measure), margin in margins.items() if of == name}
           for name in BASELINES},
        "intervals": f"95 % percentile bootstrap over the videos ({RESAMPLES} resamples, seed 0), "
                     "both predictors scored on the same positions",
        "baselines": {"split": "train", "positions": baselines.positions, "words": baselines.words,
                      "seen_previous": baselines.seen_previous,
                      "ties": "successors tied in count, and unseen previous words, follow the unigram order; "
                              "words tied in count: lower id first",
                      "discount": baselines.discount,
                      "probabilities": "bigram: absolute discounting (D = n1 / (n1 + 2 n2) of the train pairs) "
                                       "interpolated with the unigram; unigram: add-one"},
        "positions": "every clip t >= 1 of each video, pauses between narrated segments included; "
                     f"context: up to {context} words before t, across pauses",
    }


# ------------------------------------------------------------------------ reading a corpus
def split_video_ids(corpus_dir: str | Path, split: str) -> list[str]:
    """The videos of a corpus split (those with at least one example), in corpus order."""
    return CorpusSplit(corpus_dir, split).video_names()


def split_visual_words(corpus_dir: str | Path, video_ids: Sequence[str]) -> Iterator[np.ndarray]:
    """Every clip's visual word of each of ``video_ids`` (the corpus's TOKENS), in that order, read
    ``VIDEOS_PER_READ`` videos at a time; videos without visual words are skipped (logged)."""
    missing = 0
    for start in range(0, len(video_ids), VIDEOS_PER_READ):
        chunk = video_ids[start : start + VIDEOS_PER_READ]
        tokens, _ = corpus_visual_words(corpus_dir, chunk)
        for video_id in chunk:
            if video_id in tokens:
                yield np.asarray(tokens[video_id], dtype=np.int64)
            else:
                missing += 1
    if missing:
        log.warning("%s: %d of %d videos have no visual words in the corpus's TOKENS folder", corpus_dir, missing,
                    len(video_ids))


# ------------------------------------------------------------------------ one video
@dataclass
class VideoForecast:
    """A forecast within one video: the ``context`` words of clips ``first_clip`` … ``at_clip-1``,
    the ``predicted`` words for clips ``at_clip`` … with their ``probabilities``, and the words
    that ``actual``-ly follow (fewer near the end of the video)."""

    video_id: str
    clip_seconds: float
    clips: int
    first_clip: int
    at_clip: int
    context: list[int]
    predicted: list[int]
    probabilities: list[float]
    actual: list[int]


def video_forecast(loaded: LoadedModel, corpus_dir: str | Path, video_id: str, n_words: int, context: int,
                   at: float | None = None, text: str | None = None) -> VideoForecast:
    """Forecast ``n_words`` words of ``video_id`` (a video of the corpus's TOKENS) after the clips
    that end by ``at`` seconds (default: the first half of its clips), from at most ``context``
    words before. A video without visual words, or an ``at`` past its end or before its first
    whole clip, raises :class:`InputError`."""
    tokens, clip_seconds = corpus_visual_words(corpus_dir, [video_id])
    if video_id not in tokens:
        raise InputError(f"{video_id}: no such video in the visual words of {corpus_dir} (its TOKENS folder)", "missing")
    words = np.asarray(tokens[video_id], dtype=np.int64)
    if words.size == 0:
        raise InputError(f"{video_id}: the video has no visual words (shorter than one clip)", "too_short")
    duration = words.size * clip_seconds
    if at is None:
        at_clip = max(1, words.size // 2)
    else:
        if not np.isfinite(at) or at > duration + 1e-9:
            raise InputError(f"--at {at:g} s is past the end of {video_id} ({words.size} clips, {duration:g} s)")
        at_clip = int(np.floor(at / clip_seconds + 1e-9))
        if at_clip < 1:
            raise InputError(f"--at {at:g} s: no whole clip of {video_id} ends by then (clips are {clip_seconds:g} s)")
    first = max(0, at_clip - context)
    predicted, probabilities = forecast(loaded, words[first:at_clip], n_words, text)
    return VideoForecast(video_id, clip_seconds, int(words.size), first, at_clip, words[first:at_clip].tolist(),
                         predicted, probabilities, words[at_clip : at_clip + n_words].tolist())


def strip_gap(size: int) -> int:
    """Width of the gap between the context and the forecast in :func:`forecast_strip`."""
    return max(12, size // 2)


def forecast_strip(context_images: Sequence[np.ndarray | None], forecast_images: Sequence[np.ndarray | None],
                   context_captions: Sequence[str], forecast_captions: Sequence[str], size: int = 96) -> Image.Image:
    """One row of tiles ``size`` wide — the context's, a gap with an arrow, the forecast's — each
    image scaled into its tile (grey where it is None), a caption under each, and "context" /
    "forecast" above. Width: (tiles) × size + :func:`strip_gap`."""
    gap, label = strip_gap(size), 14
    rows = [contact_sheet(images, captions, size, columns=len(images), upscale=True) if images else None
            for images, captions in ((context_images, context_captions), (forecast_images, forecast_captions))]
    split_x = len(context_images) * size
    height = max(row.height for row in rows if row is not None)
    sheet = Image.new("RGB", (split_x + gap + len(forecast_images) * size, label + height), (255, 255, 255))
    for row, x in zip(rows, (0, split_x + gap)):
        if row is not None:
            sheet.paste(row, (x, label))
    draw = ImageDraw.Draw(sheet)
    if context_images:
        draw.text((2, 1), "context", fill=(0, 0, 0))
    draw.text((split_x + gap + 2, 1), "forecast", fill=(180, 0, 0))
    middle = label + size // 2
    draw.line((split_x + 3, middle, split_x + gap - 4, middle), fill=(180, 0, 0), width=2)
    draw.polygon([(split_x + gap - 3, middle), (split_x + gap - 9, middle - 5), (split_x + gap - 9, middle + 5)],
                 fill=(180, 0, 0))
    return sheet
