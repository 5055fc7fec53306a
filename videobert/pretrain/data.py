"""Training examples for the three objectives, masking, augmentation, batching.

Sequences are laid out by :mod:`videobert.inputs` (``[CLS] text [>] video [SEP]`` and its
text-only and video-only forms).

A corpus sentence becomes one of these among the objectives that are switched on and that it can
feed (a sentence without speech feeds only the video objective): a sentence with both text and
video becomes a video-text sequence with probability ``pair_share`` — the only kind that trains
alignment and cross-modal prediction — and otherwise a text-only or video-only one, evenly.

Augmentations (paper §3.2): with ``concat_prob`` the sentence is joined with 1 to ``concat_max - 1`` following
sentences of the same video (text concatenated, clips merged); the video side is subsampled at a
rate drawn from 1 … ``subsample_max`` with a random phase (the rate is capped at half the number
of visual words, so that no video side shrinks to a single word). Half of the video-text
sequences are misaligned: their video — as many sentences' worth as the positive's — comes from
another segment (``negatives``: of another video, of a distant part of the same video — at least
``negative_min_distance`` sentences away — or either, half and half).

Masking is BERT's: ``mask_prob`` of the non-special tokens of each modality are targets (the count
rounded stochastically, so short sides are not over-masked; single-modality sequences get at least
one), of which 80 % become ``[MASK]``, 10 % a random token of the same modality, 10 % stay.
Misaligned pairs are masked exactly like aligned ones — otherwise the absence of ``[MASK]`` would
give the answer away — but only aligned pairs carry masked-token targets: the text of a wrong video
is no evidence for it.

Forecasting (``forecast_prob``, off by default): that share of the video-only sequences instead
continues the video from its left, as :mod:`videobert.forecast` asks — a run of the video's
consecutive clips, none subsampled, whose last 1 … ``forecast_max`` words are all ``[MASK]``. The
run is read from every clip of the video (:class:`VideoClips`, from the TOKENS folder the corpus
was built from), the pauses between narrated sentences and the silent parts included, as the
forecasting metric and its bigram baseline count them; its first masked clip is one of the clips
the sentence owns (up to the next sentence's first clip), its context 1 … as many words as fit
(at most ``forecast_context`` where that is set).

Longer than ``max_len``: cut as :func:`videobert.inputs.build_input` cuts.

Batches are a pure function of (seed, step, row): the construction does not depend on the number
of data-loader workers or of ranks, so a resumed or a distributed run sees exactly the same data.
Each epoch is a seeded permutation cut into length-sorted buckets, so batches hold sequences of
similar length and are padded only to their longest member.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from videobert.config import field
from videobert.corpus.reader import CorpusSplit
from videobert.errors import ConfigError, StageError
from videobert.inputs import IGNORE, TokenLayout, build_input, collate_inputs
from videobert.vocab.stage import load_tokens

TEXT, VIDEO, PAIR = 0, 1, 2
ALL_KINDS = (TEXT, VIDEO, PAIR)
# Groups of masked-token targets: which loss and which accuracy each belongs to.
GROUP_TEXT, GROUP_VIDEO, GROUP_PAIR_TEXT, GROUP_PAIR_VIDEO = 0, 1, 2, 3
GROUP_NAMES = ("text_mlm", "video_mlm", "video_text_text", "video_text_video")


@dataclass
class DataConfig:
    """How sequences are built from corpus sentences (a section of the pretraining config)."""

    mask_prob: float = field(0.15, help="fraction of tokens of each modality that are masking targets")
    pair_share: float = field(0.5, help="share of sentences with text and video that become video-text sequences "
                              "(the rest: text-only or video-only, evenly)")
    max_len: int = field(256, help="longest sequence in tokens (video is cut first, then whole sentences)")
    negatives: Literal["other_video", "same_video_distant", "mixed"] = field(
        "other_video", help="where misaligned pairs take their video: another video, a distant part of the same one, or either")
    negative_min_distance: int = field(2, help="same_video_distant: sentences between a negative and its positive")
    concat_prob: float = field(0.3, help="probability of joining a sentence with the following ones")
    concat_max: int = field(3, help="most sentences joined into one sequence")
    subsample_max: int = field(5, help="video tokens are subsampled at a rate drawn from 1 … this")
    forecast_prob: float = field(0.0, help="share of video-only sequences that continue a video from its left, as "
                                          "forecasting asks: a run of the video's consecutive clips (every clip of the "
                                          "TOKENS folder the corpus was built from, pauses and silent parts included; "
                                          "none subsampled) whose last 1 … forecast_max visual words are masked, the "
                                          "context 1 … forecast_context words (0: off, the paper's masking)", neutral=True)
    forecast_max: int = field(3, help="most visual words masked at the end of a forecasting sequence", neutral=True)
    forecast_context: int = field(0, help="most visual words of context before the masks of a forecasting sequence "
                                          "(0: as many as fit)", neutral=True)

    def check(self) -> None:
        if not 0 < self.mask_prob < 1:
            raise ConfigError("mask_prob: need 0 < mask_prob < 1")
        if self.max_len < 8:
            raise ConfigError("max_len: need at least 8 tokens")
        if self.concat_max < 1 or self.subsample_max < 1 or self.negative_min_distance < 1 or self.forecast_max < 1:
            raise ConfigError("concat_max, subsample_max, negative_min_distance, forecast_max: need >= 1")
        if not 0 <= self.concat_prob <= 1 or not 0 <= self.pair_share <= 1 or not 0 <= self.forecast_prob <= 1:
            raise ConfigError("concat_prob, pair_share, forecast_prob: need 0..1")
        if self.forecast_context < 0:
            raise ConfigError("forecast_context: need >= 0 (0: as many words as fit)")


# ------------------------------------------------------------------------ masking
def mask_sequence(
    layout: TokenLayout, sequence: dict[str, np.ndarray], rng: np.random.Generator, mask_prob: float, at_least_one: bool
) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking of one sequence, per modality. Returns (masked input ids [L], labels [L] with
    the original id at target positions and ``IGNORE`` elsewhere)."""
    ids = sequence["input_ids"]
    masked, labels = ids.copy(), np.full_like(ids, IGNORE)
    is_visual = ids >= layout.visual_offset
    is_text = (ids < layout.text_vocab_size) & ~layout.is_text_special[ids]
    for candidates, low, high in (
        (np.flatnonzero(is_text), 0, layout.text_vocab_size),
        (np.flatnonzero(is_visual), layout.visual_offset, layout.size),
    ):
        if candidates.size == 0:
            continue
        expected = mask_prob * candidates.size
        count = int(expected) + int(rng.random() < expected - int(expected))
        count = min(candidates.size, max(count, 1 if at_least_one else 0))
        if count == 0:
            continue
        targets = rng.choice(candidates, size=count, replace=False)
        labels[targets] = ids[targets]
        action = rng.random(count)
        masked[targets[action < 0.8]] = layout.mask_id
        swap = targets[(action >= 0.8) & (action < 0.9)]
        masked[swap] = _random_tokens(layout, rng, swap.size, low, high)
    return masked, labels


def _random_tokens(layout: TokenLayout, rng: np.random.Generator, count: int, low: int, high: int) -> np.ndarray:
    tokens = rng.integers(low, high, size=count)
    if low == 0:  # text: never draw a special token
        while True:
            bad = layout.is_text_special[tokens]
            if not bad.any():
                break
            tokens[bad] = rng.integers(low, high, size=int(bad.sum()))
    return tokens


# ------------------------------------------------------------------------ training sequences
class VideoClips:
    """Every clip's visual word of each video of a corpus split, by video number (the split's
    ``video_codes``): one int32 array of all words and the offsets of each video's, so that forked
    data-loader workers share them. A video without words here (missing from the TOKENS folder,
    or not matching the corpus) has none: its forecasting sequences read its sentences' clips."""

    def __init__(self, words: np.ndarray, offsets: np.ndarray):
        self.words, self.offsets = np.asarray(words, np.int32), np.asarray(offsets, np.int64)

    def words_of(self, code: int) -> np.ndarray | None:
        start, end = int(self.offsets[code]), int(self.offsets[code + 1])
        return self.words[start:end].astype(np.int64) if end > start else None

    @classmethod
    def read(cls, split: CorpusSplit, tokens_dir: str | Path, visual_vocab_size: int,
             chunk: int = 1024) -> tuple["VideoClips", int]:
        """The words of ``split``'s videos from the TOKENS folder ``tokens_dir``, read ``chunk``
        videos at a time, and the number of videos left without (missing, another vocabulary's
        words, or words that differ from those of the video's first sentence in the corpus)."""
        names = split.video_names()
        first_row = np.full(len(names), -1, np.int64)
        with_video = np.flatnonzero(split.video_lengths > 0)
        codes = split.video_codes[with_video]
        new = np.r_[True, codes[1:] != codes[:-1]] if codes.size else np.zeros(0, bool)
        first_row[codes[new]] = with_video[new]
        parts, lengths, unusable = [], np.zeros(len(names), np.int64), 0
        for begin in range(0, len(names), chunk):
            tokens = load_tokens(tokens_dir, names[begin : begin + chunk])
            for code in range(begin, min(begin + chunk, len(names))):
                words = tokens.get(names[code])
                row = int(first_row[code])
                if words is not None and row >= 0:
                    words = np.asarray(words).reshape(-1)
                    first, sentence = int(split.first_clips[row]), split.video_ids(row)
                    if (words.size and (words.min() < 0 or words.max() >= visual_vocab_size)) or \
                            not np.array_equal(words[first : first + sentence.size], sentence):
                        words = None
                if words is None:
                    unusable += row >= 0
                    continue
                parts.append(words.astype(np.int32))
                lengths[code] = words.size
        offsets = np.r_[0, np.cumsum(lengths)]
        return cls(np.concatenate(parts) if parts else np.zeros(0, np.int32), offsets), unusable


class PretrainExamples:
    """Builds masked training sequences from corpus sentences (see the module docstring) for the
    objectives ``kinds`` (``TEXT``, ``VIDEO``, ``PAIR``) that are switched on; batches are padded
    to a multiple of ``pad_to_multiple`` tokens.

    ``corpus`` is a :class:`~videobert.corpus.CorpusSplit` (rows read lazily from its mapped
    files) or a list of example dicts; ``rows`` picks some of its rows (ascending; default: all).
    Position ``p`` of this object is the ``p``-th of those rows that can feed an enabled
    objective. What is held per position is a few integers in NumPy arrays, never Python objects
    per sentence, so that forked data-loader workers share it instead of copying it.
    """

    def __init__(self, corpus: CorpusSplit | Sequence[dict[str, Any]], layout: TokenLayout, options: DataConfig,
                 kinds: Sequence[int] = ALL_KINDS, pad_to_multiple: int = 1, rows: np.ndarray | None = None,
                 clips: "VideoClips | None" = None):
        self.layout, self.options, self.clips = layout, options, clips
        self.kinds, self.pad_to_multiple = tuple(kinds), pad_to_multiple
        self.split = corpus if isinstance(corpus, CorpusSplit) else CorpusSplit.from_examples(corpus)
        rows = np.arange(len(self.split), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        has_text, has_video = self.split.text_lengths[rows] > 0, self.split.video_lengths[rows] > 0
        usable = np.zeros(rows.size, bool)
        for kind, can in ((TEXT, has_text), (VIDEO, has_video), (PAIR, has_text & has_video)):
            if kind in self.kinds:
                usable |= can
        self.rows = rows[usable]
        if not self.rows.size:
            raise StageError("no corpus example can feed the enabled objectives")
        self.has_text, self.has_video = has_text[usable], has_video[usable]
        self.lengths = (self.split.text_lengths[self.rows] + self.split.video_lengths[self.rows]).astype(np.int32)
        self.video = self.split.video_codes[self.rows]  # non-decreasing: a video's positions are contiguous
        self.index = self.split.sentence_index[self.rows]
        self.first_clip = self.split.first_clips[self.rows]
        self._with_video = np.flatnonzero(self.has_video)
        self._videos_with_video = int(np.unique(self.video[self._with_video]).size)
        # the clips each sentence with video owns for forecasting: from its first clip (0 for a
        # video's first sentence) to the next such sentence's first clip (-1: the video's end)
        self.owned_start = np.zeros(len(self.rows), np.int32)
        self.owned_end = np.full(len(self.rows), -1, np.int32)
        with_video = self._with_video
        same_as_previous = np.r_[False, self.video[with_video[1:]] == self.video[with_video[:-1]]]
        self.owned_start[with_video[same_as_previous]] = self.first_clip[with_video[same_as_previous]]
        self.owned_end[with_video[:-1][same_as_previous[1:]]] = self.first_clip[with_video[1:][same_as_previous[1:]]]

    def __len__(self) -> int:
        return len(self.rows)

    def kinds_of(self, position: int) -> list[int]:
        """The enabled objectives that the sentence at ``position`` can feed."""
        has_text, has_video = bool(self.has_text[position]), bool(self.has_video[position])
        usable = {TEXT: has_text, VIDEO: has_video, PAIR: has_text and has_video}
        return [kind for kind in self.kinds if usable[kind]]

    def sequence(self, index: int, rng: np.random.Generator, kind: int | None = None, aligned: bool | None = None) -> dict:
        """A masked sequence from the sentence at position ``index``: the objective is drawn unless
        ``kind`` is given, a video-text pair is aligned with probability 1/2 unless ``aligned`` is given.

        Returns ``input_ids``, ``token_type_ids``, ``labels`` (int64 [L]), ``kind`` and ``aligned``
        (1, 0, or -1 for single-modality sequences).
        """
        options, layout = self.options, self.layout
        if kind is None:
            kind = self._draw_kind(self.kinds_of(index), rng)
        # drawn only when switched on, so that runs without it draw the same numbers as before it existed
        forecasting = kind == VIDEO and options.forecast_prob > 0 and rng.random() < options.forecast_prob
        if forecasting:
            span = self._forecast_span(index, rng)
            if span is not None:
                return self._forecast_sequence(*span)
        window = self._window(index, rng)
        text, sentence_ends, video = self._merge(window)
        if kind == PAIR:
            aligned = bool(rng.random() < 0.5) if aligned is None else aligned
            if not aligned:
                negative = self._negative(window, rng)
                if negative is None:
                    aligned = True
                else:  # as many sentences' worth of video as the positive would have had
                    video = self._merge(self._following(negative, len(window)))[2]
        if kind in (VIDEO, PAIR):
            video = self._subsample(video, rng)
        sequence = build_input(
            layout, text if kind != VIDEO else None, video if kind != TEXT else None, options.max_len, sentence_ends
        )
        masked, labels = mask_sequence(layout, sequence, rng, options.mask_prob, at_least_one=kind != PAIR)
        if kind == PAIR and not aligned:
            labels[:] = IGNORE
        return {
            "input_ids": masked,
            "token_type_ids": sequence["token_type_ids"],
            "labels": labels,
            "kind": kind,
            "aligned": int(aligned) if kind == PAIR else -1,
        }

    def _draw_kind(self, kinds: list[int], rng: np.random.Generator) -> int:
        if PAIR in kinds and len(kinds) > 1:
            if rng.random() < self.options.pair_share:
                return PAIR
            kinds = [kind for kind in kinds if kind != PAIR]
        return kinds[int(rng.integers(len(kinds)))]

    def _window(self, index: int, rng: np.random.Generator) -> list[int]:
        """Sentence ``index`` and, with ``concat_prob``, some of the sentences that follow it."""
        options = self.options
        if options.concat_max > 1 and rng.random() < options.concat_prob:
            return self._following(index, int(rng.integers(2, options.concat_max + 1)))
        return [index]

    def _following(self, index: int, count: int) -> list[int]:
        """Sentence ``index`` and up to ``count - 1`` sentences right after it in its video (the
        next positions, as long as they are the video's next sentences)."""
        window = [index]
        while len(window) < count:
            following = index + len(window)
            if (following >= len(self.rows) or self.video[following] != self.video[index]
                    or self.index[following] != self.index[index] + len(window)):
                break
            window.append(following)
        return window

    def _merge(self, window: list[int]) -> tuple[list[int], list[int], list[int]]:
        text: list[int] = []
        ends: list[int] = []
        clips: dict[int, int] = {}
        for position in window:
            row = int(self.rows[position])
            if self.has_text[position]:
                text.extend(self.split.text_ids(row).tolist())
                ends.append(len(text))
            first = int(self.first_clip[position])
            for offset, word in enumerate(self.split.video_ids(row).tolist()):
                clips.setdefault(first + offset, word)
        return text, ends, [clips[c] for c in sorted(clips)]

    def _forecast_span(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, int] | None:
        """The visual words of a forecasting sequence from the sentence at ``index``, and how many
        of them, at the end, are masked; None where its video has fewer than two clips.

        The words are a run of the video's consecutive clips: with :attr:`clips`, every clip of the
        video (pauses and silent parts included); without, the clips of ``concat_max`` sentences
        from this one, merged. The first masked clip is drawn among the clips this sentence owns —
        from its first clip to the next sentence's (the first sentence of a video also owns what
        comes before it, the last what comes after it) — so that over a video's sentences every
        clip after its first is a target; then 1 … ``forecast_max`` masks and a context of 1 … as
        many words as come before and fit."""
        options = self.options
        words = self.clips.words_of(int(self.video[index])) if self.clips is not None else None
        if words is not None and words.size >= 2:
            low = int(self.owned_start[index])
            high = words.size if self.owned_end[index] < 0 else int(self.owned_end[index])
        else:
            words = np.asarray(self._merge(self._following(index, options.concat_max))[2], dtype=np.int64)
            low, high = 0, words.size
        low, high = max(low, 1), min(max(high, low + 1), words.size)
        if high <= low:
            return None
        first = int(rng.integers(low, high))
        room = options.max_len - 3  # [CLS] [>] … [SEP]
        masks = int(rng.integers(1, min(options.forecast_max, words.size - first, room - 1) + 1))
        longest = min(first, room - masks)
        if options.forecast_context:
            longest = min(longest, options.forecast_context)
        context = int(rng.integers(1, longest + 1))
        return words[first - context : first + masks], masks

    def _forecast_sequence(self, words: np.ndarray, masks: int) -> dict:
        """``[CLS] [>] words [SEP]`` with the last ``masks`` words masked (all of them [MASK])."""
        sequence = build_input(self.layout, None, words)
        ids = sequence["input_ids"]
        masked, labels = ids.copy(), np.full_like(ids, IGNORE)
        targets = np.arange(ids.size - 1 - masks, ids.size - 1)
        labels[targets] = ids[targets]
        masked[targets] = self.layout.mask_id
        return {"input_ids": masked, "token_type_ids": sequence["token_type_ids"], "labels": labels, "kind": VIDEO,
                "aligned": -1}

    def _subsample(self, video: list[int], rng: np.random.Generator) -> list[int]:
        """Every r-th visual word from a random phase, r drawn from 1 … ``subsample_max`` but at most
        half the length, so that a short video side keeps at least two words."""
        highest = min(self.options.subsample_max, len(video) // 2)
        if highest < 2:
            return video
        rate = int(rng.integers(1, highest + 1))
        return video[int(rng.integers(rate)) :: rate]

    def _negative(self, window: list[int], rng: np.random.Generator) -> int | None:
        """Position of a sentence whose video is wrong for ``window``, or None if the corpus has none."""
        mode = self.options.negatives
        if mode == "mixed":
            mode = "other_video" if rng.random() < 0.5 else "same_video_distant"
        order = ("same_video_distant", "other_video") if mode == "same_video_distant" else ("other_video", "same_video_distant")
        for choice in order:
            found = self._other_video(window, rng) if choice == "other_video" else self._distant(window, rng)
            if found is not None:
                return found
        return None

    def _other_video(self, window: list[int], rng: np.random.Generator) -> int | None:
        if self._videos_with_video < 2:
            return None
        own = self.video[window[0]]
        while True:
            candidate = int(self._with_video[rng.integers(self._with_video.size)])
            if self.video[candidate] != own:
                return candidate

    def _distant(self, window: list[int], rng: np.random.Generator) -> int | None:
        first, last = int(self.index[window[0]]), int(self.index[window[-1]])
        gap, span = self.options.negative_min_distance, len(window) - 1
        video = self.video[window[0]]
        low, high = np.searchsorted(self.video, video, "left"), np.searchsorted(self.video, video, "right")
        same = low + np.flatnonzero(self.has_video[low:high])
        index = self.index[same].astype(np.int64)
        far = same[(index + span <= first - gap) | (index >= last + gap)]
        return int(far[int(rng.integers(far.size))]) if far.size else None


def collate_training(sequences: Sequence[dict], layout: TokenLayout, pad_to_multiple: int = 1) -> dict[str, Any]:
    """Pad masked sequences into a batch.

    Returns ``input_ids``, ``token_type_ids``, ``attention_mask`` int64 [B, L]; the targets as flat
    lists ready for the loss without a device sync: ``mlm_positions`` [N] (indices into B·L),
    ``mlm_labels`` [N], ``mlm_groups`` [N] (``GROUP_*``), ``align_rows`` [M] and ``align_labels``
    float [M]; and plain numbers: ``group_counts`` (targets per group), ``tokens`` (real tokens),
    ``padded`` (whether any row is padded).
    """
    batch = collate_inputs(sequences, layout.pad_id, pad_to_multiple)
    length = batch["input_ids"].shape[1]
    labels = np.full((len(sequences), length), IGNORE, np.int64)
    groups = np.zeros((len(sequences), length), np.int64)
    for row, seq in enumerate(sequences):
        n = len(seq["labels"])
        labels[row, :n] = seq["labels"]
        visual = seq["labels"] >= layout.visual_offset
        if seq["kind"] == PAIR:
            groups[row, :n] = np.where(visual, GROUP_PAIR_VIDEO, GROUP_PAIR_TEXT)
        else:
            groups[row, :n] = GROUP_VIDEO if seq["kind"] == VIDEO else GROUP_TEXT
    positions = np.flatnonzero(labels.reshape(-1) != IGNORE)
    mlm_groups = groups.reshape(-1)[positions]
    aligned = np.array([seq["aligned"] for seq in sequences])
    align_rows = np.flatnonzero(aligned >= 0)
    batch.update(
        mlm_positions=torch.from_numpy(positions),
        mlm_labels=torch.from_numpy(labels.reshape(-1)[positions]),
        mlm_groups=torch.from_numpy(mlm_groups),
        align_rows=torch.from_numpy(align_rows),
        align_labels=torch.from_numpy(aligned[align_rows].astype(np.float32)),
        group_counts=np.bincount(mlm_groups, minlength=len(GROUP_NAMES)).tolist(),
        tokens=int(batch["attention_mask"].sum()),
        padded=bool((batch["attention_mask"] == 0).any()),
    )
    return batch


# ------------------------------------------------------------------------ batches by step
class StepBatches(torch.utils.data.Dataset):
    """Item ``step`` = this rank's ``grad_accum`` micro-batches of global step ``step``.

    The global batch of ``batch_size`` sentences is cut into ``grad_accum × world_size``
    micro-batches; rank r takes micro-batch ``a·world_size + r`` for accumulation step a. Every
    sequence is built with ``default_rng([seed, step, row])``, so any worker can build any step.
    """

    def __init__(
        self, examples: PretrainExamples, batch_size: int, grad_accum: int, seed: int, rank: int = 0,
        world_size: int = 1, bucket_batches: int = 50,
    ):
        self.examples, self.batch_size, self.grad_accum, self.seed = examples, batch_size, grad_accum, seed
        self.rank, self.world_size, self.bucket_batches = rank, world_size, bucket_batches
        self.micro_batch = batch_size // (grad_accum * world_size)
        self.batches_per_epoch = max(1, len(examples) // batch_size)
        self._plan: tuple[int, list[np.ndarray]] | None = None

    def position(self, step: int) -> dict[str, int]:
        """Where step ``step`` reads: epoch and batch within it (checkpoints record this)."""
        return {"step": step, "epoch": step // self.batches_per_epoch, "batch": step % self.batches_per_epoch}

    def global_batch(self, step: int) -> np.ndarray:
        """Sentence positions [batch_size] of global step ``step``."""
        where = self.position(step)
        if self._plan is None or self._plan[0] != where["epoch"]:
            self._plan = (where["epoch"], self._epoch_batches(where["epoch"]))
        return self._plan[1][where["batch"]]

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch, 0xE90C])
        count = self.batches_per_epoch * self.batch_size
        order = np.resize(rng.permutation(len(self.examples)), count)
        batches = []
        bucket = self.batch_size * self.bucket_batches
        for start in range(0, count, bucket):
            chunk = order[start : start + bucket]
            chunk = chunk[np.argsort(self.examples.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, chunk.size, self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __getitem__(self, step: int) -> list[dict[str, Any]]:
        rows = self.global_batch(step)
        micro_batches = []
        for accum in range(self.grad_accum):
            first = (accum * self.world_size + self.rank) * self.micro_batch
            sequences = [
                self.examples.sequence(int(rows[row]), np.random.default_rng([self.seed, step, row]))
                for row in range(first, first + self.micro_batch)
            ]
            micro_batches.append(collate_training(sequences, self.examples.layout, self.examples.pad_to_multiple))
        return micro_batches


def validation_batches(
    examples: PretrainExamples, batch_size: int, seed: int, max_sentences: int, rank: int = 0, world_size: int = 1
) -> list[dict[str, Any]]:
    """A fixed validation set (same masks and negatives at every evaluation): each of the first
    ``max_sentences`` sentences once per objective it can feed, pairs aligned or not at random;
    rank r of ``world_size`` takes every world_size-th batch."""
    sequences = []
    for index in range(min(len(examples), max_sentences)):
        for kind in examples.kinds_of(index):
            rng = np.random.default_rng([seed, 0x7A1, index, kind])
            sequences.append(examples.sequence(index, rng, kind=kind))
    sequences.sort(key=lambda s: len(s["input_ids"]))
    batches = [sequences[i : i + batch_size] for i in range(0, len(sequences), batch_size)]
    return [
        collate_training(batch, examples.layout, examples.pad_to_multiple)
        for batch in batches[rank::world_size]
    ]


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A collated batch with its tensors on ``device``."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
