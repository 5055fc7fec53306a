"""Sentences: cutting transcribed words into the sentences a corpus example is made of.

:func:`split_sentences` cuts the words into sentences. ASR output has no punctuation, so the rule
uses what there is: a sentence ends after a word that ends with ``.``, ``?``, ``!`` or ``…`` (not
after a few abbreviations such as ``mr.``/``e.g.``), and before a word that starts ``pause``
seconds or more after the previous word ended; a run longer than ``max_words`` is cut into the
fewest pieces of at most ``max_words`` words, of nearly equal length. Cues with word timings (ASR
output, auto-captions) form one word stream, so a sentence may span cues. Cues without word
timings are split cue by cue: a cue boundary is always a sentence boundary (pauses are unknown),
and the pieces of a long cue share its time span in proportion to their word count. Where the
words carry no sentence punctuation at all, a punctuation model (:class:`Punctuator`, a Hugging
Face token-classification model from a local folder, standing in for the paper's LSTM punctuator)
can add it first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from videobert.config import field
from videobert.errors import ConfigError, InputError
from videobert.runtime import resolve_device
from videobert.text.transcripts import Cue, Word

DEFAULT_PAUSE = 0.7  # seconds of silence between two words that end a sentence
DEFAULT_MAX_WORDS = 40


@dataclass
class SentenceConfig:
    """How timed words become sentences (a section of the asr and corpus configs)."""

    pause: float = field(DEFAULT_PAUSE, help="a silence of at least this many seconds between timed words ends a sentence")
    max_words: int = field(DEFAULT_MAX_WORDS, help="longest sentence in words (longer runs are cut evenly)")

    def check(self) -> None:
        if self.pause <= 0:
            raise ConfigError("pause: must be positive")
        if self.max_words < 1:
            raise ConfigError("max_words: must be at least 1")


SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")
ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "vs.", "etc.", "e.g.", "i.e.", "approx."})


def ends_sentence(word: str) -> bool:
    """Whether ``word`` ends a sentence by its punctuation (closing quotes and brackets ignored)."""
    stripped = word.rstrip("\"')]}»”’")
    return stripped.endswith(SENTENCE_END) and stripped.lower() not in ABBREVIATIONS


def _even_words(cue: Cue) -> list[Word]:
    tokens = cue.text.split()
    step = (cue.end - cue.start) / max(1, len(tokens))
    return [Word(cue.start + k * step, cue.start + (k + 1) * step, token) for k, token in enumerate(tokens)]


def _balanced(run: list[Word], max_words: int) -> list[list[Word]]:
    pieces = math.ceil(len(run) / max_words)
    bounds = [k * len(run) // pieces for k in range(pieces + 1)]
    return [run[a:b] for a, b in zip(bounds, bounds[1:])]


def _split_stream(
    words: list[Word], pause: float, max_words: int, punctuator: Callable[[list[str]], list[str]] | None
) -> list[list[Word]]:
    if punctuator is not None and words and not any(ends_sentence(w.text) for w in words):
        words = [replace(w, text=text) for w, text in zip(words, punctuator([w.text for w in words]))]
    runs: list[list[Word]] = []
    current: list[Word] = []
    for word in words:
        if current and word.start - current[-1].end >= pause:
            runs.append(current)
            current = []
        current.append(word)
        if ends_sentence(word.text):
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [piece for run in runs for piece in _balanced(run, max_words)]


def split_sentences(
    cues: Iterable[Cue | Word],
    pause: float = DEFAULT_PAUSE,
    max_words: int = DEFAULT_MAX_WORDS,
    punctuator: Callable[[list[str]], list[str]] | None = None,
) -> list[Cue]:
    """Sentences of a transcript (its cues, or timed words), in time order (the rule is in the
    module docstring).

    Sentences cut from timed words keep their ``words``; those cut from plain cues have none
    (their times are shares of the cue's span, not measurements). ``punctuator`` maps a list of
    words to the same words with punctuation attached (e.g. a :class:`Punctuator`); it is asked
    only about word runs (the timed stream, or one plain cue) that carry no sentence punctuation.
    """
    if pause <= 0:
        raise ValueError("pause must be positive")
    if max_words < 1:
        raise ValueError("max_words must be at least 1")
    sentences: list[Cue] = []
    stream: list[Word] = []

    def flush_stream() -> None:
        for piece in _split_stream(stream, pause, max_words, punctuator):
            sentences.append(Cue(piece[0].start, piece[-1].end, " ".join(w.text for w in piece), tuple(piece)))
        stream.clear()

    for cue in cues:
        if isinstance(cue, Word):
            stream.append(cue)
            continue
        if cue.words:
            stream.extend(cue.words)
            continue
        flush_stream()
        for piece in _split_stream(_even_words(cue), pause, max_words, punctuator):
            start, end = round(piece[0].start, 3), round(piece[-1].end, 3)
            sentences.append(Cue(start, end, " ".join(w.text for w in piece)))
    flush_stream()
    return sentences


# Label names of punctuation models, as the punctuation they stand for.
_LABEL_MARKS = {"PERIOD": ".", "FULLSTOP": ".", "COMMA": ",", "QUESTION": "?", "QUESTIONMARK": "?",
                "EXCLAMATION": "!", "COLON": ":", "SEMICOLON": ";"}


def label_mark(label: str) -> str:
    """The punctuation that a punctuation model's label appends to its word: ``"."``, ``","``,
    ``"?"`` … for labels such as ``"."``, ``".U"`` or ``"PERIOD"``; ``""`` for ``"0"``/``"O"``."""
    name = label.upper().removeprefix("B-").removeprefix("I-")
    if name in _LABEL_MARKS:
        return _LABEL_MARKS[name]
    return label[0] if label and label[0] in ".,?!:;" else ""


class Punctuator:
    """Punctuation for unpunctuated words from a Hugging Face token-classification model in a
    local folder (the label of a word's first piece is the punctuation that follows the word; see
    :func:`label_mark`). Words are classified in windows of ``window`` words.

    ``punctuator(["so", "we", "bake", "it", "now", "we", "eat"])`` ->
    ``["so", "we", "bake", "it.", "now", "we", "eat."]``.
    """

    def __init__(self, folder: str | Path, device: str = "auto", window: int = 200):
        folder = Path(folder).expanduser()
        if not (folder / "config.json").is_file():
            raise InputError(f"{folder}: not a Hugging Face model folder (no config.json)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModelForTokenClassification.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InputError(f"{folder}: cannot load the punctuation model ({str(exc).splitlines()[0]})") from None
        if not self.tokenizer.is_fast:
            raise InputError(f"{folder}: the punctuation model needs a fast tokenizer (tokenizer.json)")
        labels = self.model.config.id2label
        self.marks = [label_mark(str(labels[i])) for i in range(self.model.config.num_labels)]
        if not any(mark in SENTENCE_END for mark in self.marks):
            raise InputError(f"{folder}: no label of the punctuation model ends a sentence (labels: {list(labels.values())})")
        self.device = resolve_device(device)
        self.model.to(self.device).eval()
        self.window = window

    def __call__(self, words: list[str]) -> list[str]:
        punctuated: list[str] = []
        for offset in range(0, len(words), self.window):
            chunk = words[offset : offset + self.window]
            encoded = self.tokenizer(chunk, is_split_into_words=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                logits = self.model(**encoded.to(self.device)).logits[0]  # [pieces, labels]
            predicted = logits.argmax(-1).tolist()
            first_piece: dict[int, int] = {}
            for position, word_index in enumerate(encoded.word_ids()):
                if word_index is not None:
                    first_piece.setdefault(word_index, predicted[position])
            for index, word in enumerate(chunk):
                mark = self.marks[first_piece[index]] if index in first_piece else ""
                punctuated.append(word + mark if mark and not word.endswith(mark) else word)
        return punctuated
