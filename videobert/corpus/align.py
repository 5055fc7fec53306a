"""Alignment: a video's sentences paired with the visual words of the clips their time span
overlaps, and video-only examples for videos without speech.

Clip *i* covers ``[i·cs, (i+1)·cs)`` with ``cs = clip_seconds``; a sentence ``[start, end)`` takes
exactly the clips with ``i·cs < end`` and ``(i+1)·cs > start`` (and ``i < n_clips``). A sentence
that overlaps no clip (for instance one after the last full clip) is dropped, and so is one
without a WordPiece; both are counted. A video without speech gives video-only examples of
``video_only_words`` (16, the paper's rule) consecutive visual words, the last one shorter, with
``text == ""`` and ``text_ids == []``.

An example is ``{"video_id", "index", "start", "end", "text", "text_ids", "video_ids",
"first_clip"}`` (docs/formats.md).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np

from videobert.text.transcripts import Cue

EXAMPLE_KEYS = ("video_id", "index", "start", "end", "text", "text_ids", "video_ids", "first_clip")


def overlapping_clips(start: float, end: float, n_clips: int, clip_seconds: float) -> range:
    """Indices of the clips ``i`` (``0 <= i < n_clips``) whose span ``[i·cs, (i+1)·cs)`` overlaps
    ``[start, end)``, i.e. ``i·cs < end`` and ``(i+1)·cs > start``; empty when there is none (also
    when a time is not finite). The times are clamped to the clips' span first, so the
    floating-point guards below step at most once whatever the times."""
    if not (math.isfinite(start) and math.isfinite(end)) or n_clips <= 0:
        return range(0)
    span = n_clips * clip_seconds
    if start >= span or end <= 0:
        return range(0)
    start, end = max(start, 0.0), min(end, span)
    first = max(0, math.floor(start / clip_seconds))
    while first > 0 and first * clip_seconds > start:  # floating-point guard: (first-1) may still overlap
        first -= 1
    while (first + 1) * clip_seconds <= start:
        first += 1
    stop = max(0, math.ceil(end / clip_seconds))
    while stop > 0 and (stop - 1) * clip_seconds >= end:
        stop -= 1
    while stop * clip_seconds < end:
        stop += 1
    return range(first, min(stop, n_clips))


def video_only_segments(n_clips: int, words: int) -> list[range]:
    """Consecutive runs of ``words`` clips covering ``0 … n_clips-1`` (the last one may be shorter)."""
    return [range(s, min(s + words, n_clips)) for s in range(0, n_clips, words)]


def make_example(video_id: str, index: int, start: float, end: float, text: str, text_ids: Sequence[int],
                 words: np.ndarray, clips: range) -> dict[str, Any]:
    return {
        "video_id": video_id,
        "index": index,
        "start": round(float(start), 3),
        "end": round(float(end), 3),
        "text": text,
        "text_ids": [int(i) for i in text_ids],
        "video_ids": [int(w) for w in words[clips.start : clips.stop]],
        "first_clip": clips.start,
    }


def sentence_examples(video_id: str, sentences: Sequence[Cue], text_ids: Sequence[Sequence[int]], words: np.ndarray,
                      clip_seconds: float) -> tuple[list[dict[str, Any]], Counter]:
    """The examples of a video's sentences (WordPiece ids ``text_ids``, one list per sentence) and
    the sentences dropped (``outside_clips``, ``no_wordpieces``)."""
    examples, dropped = [], Counter()
    for index, (sentence, ids) in enumerate(zip(sentences, text_ids)):
        clips = overlapping_clips(sentence.start, sentence.end, len(words), clip_seconds)
        if not clips:
            dropped["outside_clips"] += 1
            continue
        if not ids:
            dropped["no_wordpieces"] += 1
            continue
        examples.append(make_example(video_id, index, sentence.start, sentence.end, sentence.text, ids, words, clips))
    return examples, dropped


# A span of clips carries at most this many sentences per clip: more (one long cue cut into thousands
# of sentences of the same seconds) would repeat the same clips as thousands of examples.
MAX_SENTENCES_PER_CLIP = 4


def cap_sentences(sentences: Sequence[Cue], n_clips: int, clip_seconds: float) -> tuple[list[Cue], int]:
    """The sentences kept when those over one span of clips are cut to ``MAX_SENTENCES_PER_CLIP``
    per clip of the span (the first ones, in time order), and how many were cut."""
    kept: list[Cue] = []
    per_span: Counter = Counter()
    cut = 0
    for sentence in sentences:
        clips = overlapping_clips(sentence.start, sentence.end, n_clips, clip_seconds)
        if clips:
            span = (clips.start, clips.stop)
            if per_span[span] >= MAX_SENTENCES_PER_CLIP * len(clips):
                cut += 1
                continue
            per_span[span] += 1
        kept.append(sentence)
    return kept, cut


def video_only_examples(video_id: str, words: np.ndarray, clip_seconds: float, per_example: int) -> list[dict[str, Any]]:
    """Examples of ``per_example`` consecutive visual words for a video without speech."""
    return [
        make_example(video_id, index, clips.start * clip_seconds, clips.stop * clip_seconds, "", [], words, clips)
        for index, clips in enumerate(video_only_segments(len(words), per_example))
    ]
