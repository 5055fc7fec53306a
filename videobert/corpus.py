"""The aligned training corpus: sentences paired with the visual words of their time span.

Format (see docs/formats.md): ``CORPUS/{train,val,test}.jsonl``, one example per line::

    {"video_id", "index", "start", "end", "text", "text_ids", "video_ids", "first_clip"}

with the joint vocabulary (``vocabulary.json`` + ``tokenizer/``) and ``summary.json`` beside them.

How :func:`build_corpus` makes the examples:

* **Transcript of a video**: the manifest's ``transcript`` if it gives one; otherwise
  ``<video_id>.vtt`` (or ``.srt``, ``.json``, ``.jsonl``) in the ``transcripts`` folder (e.g. the
  output of ``videobert asr``); otherwise the video has no speech. A transcript that cannot be
  read, or a video that ``videobert asr`` recorded as failed for a reason other than having no
  audio stream, is a failure (``failures.jsonl``), never taken for silence.
* **Sentences**: :func:`videobert.text.split_sentences` (``pause``, ``max_words``, and a local
  punctuation model with ``punctuator``).
* **Alignment**: clip *i* covers ``[i·cs, (i+1)·cs)`` with ``cs = clip_seconds``; a sentence
  ``[start, end)`` takes exactly the clips with ``i·cs < end`` and ``(i+1)·cs > start`` (and
  ``i < n_clips``). A sentence that overlaps no clip (for instance one after the last full clip)
  is dropped and counted in the summary (``dropped_sentences.outside_clips``).
* **Videos without speech** (no transcript, or one without cues) contribute video-only examples of
  ``video_only_words`` (16, the paper's rule) consecutive visual words, the last one shorter;
  ``text`` is ``""`` and ``text_ids`` ``[]``.
* **Splits** follow the manifest (a video without one is in ``train``), so a video is in one split.
* **WordPiece**: a local BERT tokenizer folder (``tokenizer``), as the paper used BERT's, or one
  trained on the train split's sentences (:func:`videobert.text.train_wordpiece`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from videobert.asr import NO_AUDIO_REASON
from videobert.config import field
from videobert.errors import ConfigError, InputError, StageError
from videobert.manifest import TRANSCRIPT_EXTENSIONS, VideoEntry
from videobert.text import DEFAULT_MAX_WORDS, DEFAULT_PAUSE, Cue, read_transcript, split_sentences

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
EXAMPLE_KEYS = ("video_id", "index", "start", "end", "text", "text_ids", "video_ids", "first_clip")


@dataclass
class CorpusConfig:
    """Configuration of ``videobert corpus``."""

    tokenizer: Path | None = field(
        None, help="local BERT tokenizer folder (vocab.txt or tokenizer.json); default: train WordPiece on the train split"
    )
    wordpiece_vocab_size: int = field(8000, help="trained WordPiece: largest vocabulary (smaller if the text supports fewer pieces)")
    wordpiece_min_frequency: int = field(2, help="trained WordPiece: fewest occurrences for a merged piece")
    lowercase: bool = field(True, help="trained WordPiece: lowercase (and strip accents) before tokenising")
    pause: float = field(DEFAULT_PAUSE, help="a silence of at least this many seconds between timed words ends a sentence")
    max_words: int = field(DEFAULT_MAX_WORDS, help="longest sentence in words (longer runs are cut evenly)")
    punctuator: Path | None = field(
        None, help="local Hugging Face token-classification punctuation model, for transcripts without punctuation (ASR)"
    )
    video_only_words: int = field(16, help="visual words per example for videos without speech (paper: 16)")

    def check(self) -> None:
        if self.wordpiece_vocab_size < 16:
            raise ConfigError("wordpiece_vocab_size: must be at least 16")
        if self.wordpiece_min_frequency < 0:
            raise ConfigError("wordpiece_min_frequency: must be 0 or more")
        if self.pause <= 0:
            raise ConfigError("pause: must be positive")
        if self.max_words < 1:
            raise ConfigError("max_words: must be at least 1")
        if self.video_only_words < 1:
            raise ConfigError("video_only_words: must be at least 1")


def split_path(corpus_dir: str | Path, split: str) -> Path:
    return Path(corpus_dir) / f"{split}.jsonl"


def load_corpus(corpus_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The examples of one split, in corpus order (by video, then time)."""
    if split not in SPLITS:
        raise InputError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    path = split_path(corpus_dir, split)
    if not path.exists():
        raise InputError(f"{path}: no such corpus split (build it with 'videobert corpus')")
    examples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                example = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
            missing = [key for key in EXAMPLE_KEYS if key not in example]
            if missing:
                raise InputError(f"{path}:{number}: example lacks {', '.join(missing)}")
            examples.append(example)
    return examples


# ----------------------------------------------------------------------------------------------
# Alignment


def overlapping_clips(start: float, end: float, n_clips: int, clip_seconds: float) -> range:
    """Indices of the clips ``i`` (``0 <= i < n_clips``) whose span ``[i·cs, (i+1)·cs)`` overlaps
    ``[start, end)``, i.e. ``i·cs < end`` and ``(i+1)·cs > start``; empty when there is none."""
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


# ----------------------------------------------------------------------------------------------
# Inputs of one video


@dataclass(frozen=True)
class TokensInfo:
    """What ``tokens.json`` says about a TOKENS folder."""

    folder: Path
    vocab: str | None
    vocab_size: int
    clip_seconds: float


def read_tokens_info(tokens_dir: str | Path) -> TokensInfo:
    from videobert.vocab import tokens_meta

    tokens_dir = Path(tokens_dir)
    meta = tokens_meta(tokens_dir)
    where = tokens_dir / "tokens.json"
    try:
        vocab_size = int(meta["vocab_size"])
        if "clip_seconds" in meta:
            clip_seconds = float(meta["clip_seconds"])
        else:
            clip_seconds = float(meta["clip_frames"]) / float(meta["fps"])
    except KeyError as exc:
        raise InputError(f"{where}: lacks {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: malformed ({exc})") from None
    if vocab_size < 1 or not clip_seconds > 0:
        raise InputError(f"{where}: vocab_size must be positive and clip_seconds > 0")
    vocab = meta.get("vocab")
    return TokensInfo(tokens_dir, str(vocab) if vocab is not None else None, vocab_size, clip_seconds)


def video_tokens(info: TokensInfo, video_id: str) -> np.ndarray:
    """The visual words (int64 ``[n_clips]``) of one video; raises :class:`InputError` with the reason."""
    path = info.folder / f"{video_id}.npy"
    if not path.exists():
        raise InputError(f"no visual words in {info.folder} (tokenize failed or did not include this video)")
    try:
        words = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable visual words {path} ({exc})") from None
    if words.ndim != 1 or not np.issubdtype(words.dtype, np.integer):
        raise InputError(f"visual words {path} are not a 1-d integer array (shape {list(words.shape)}, {words.dtype})")
    if words.size and (words.min() < 0 or words.max() >= info.vocab_size):
        raise InputError(f"visual words {path} fall outside 0 … {info.vocab_size - 1}")
    return words.astype(np.int64)


def find_transcript(entry: VideoEntry, transcripts_dir: Path | None) -> Path | None:
    """The manifest's transcript, else ``<video_id>.<ext>`` in ``transcripts_dir``, else None."""
    if entry.transcript is not None:
        return entry.transcript
    if transcripts_dir is not None:
        for ext in TRANSCRIPT_EXTENSIONS:
            candidate = transcripts_dir / f"{entry.video_id}{ext}"
            if candidate.is_file():
                return candidate
    return None


def asr_failures(transcripts_dir: Path | None) -> dict[str, str]:
    """``{video_id: reason}`` from the failure records of an ASR output folder."""
    if transcripts_dir is None:
        return {}
    from videobert.store import read_failures

    try:
        return {r["id"]: str(r.get("reason", "")) for r in read_failures(transcripts_dir) if "id" in r}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{transcripts_dir}: unreadable failure records ({exc})") from None


def video_sentences(
    entry: VideoEntry, transcripts_dir: Path | None, failed_asr: dict[str, str], cfg: CorpusConfig, punctuator=None
) -> list[Cue]:
    """The sentences of one video (empty: no speech); raises :class:`InputError` with the reason."""
    path = find_transcript(entry, transcripts_dir)
    if path is None:
        reason = failed_asr.get(entry.video_id)
        if reason is not None and reason != NO_AUDIO_REASON:
            raise InputError(f"no transcript: speech recognition failed ({reason})")
        return []
    return split_sentences(read_transcript(path), cfg.pause, cfg.max_words, punctuator)


# ----------------------------------------------------------------------------------------------
# Building


def _stats(counts: Counter) -> dict[str, float]:
    """count, mean, min, median, max of the values tallied in ``counts``."""
    total = sum(counts.values())
    if not total:
        return {"count": 0, "mean": 0.0, "min": 0, "median": 0, "max": 0}
    values = sorted(counts)
    running, median = 0, values[0]
    for value in values:
        running += counts[value]
        if running * 2 >= total:
            median = value
            break
    mean = sum(v * c for v, c in counts.items()) / total
    return {"count": total, "mean": round(mean, 3), "min": values[0], "median": median, "max": values[-1]}


def _train_texts(
    entries: Sequence[VideoEntry], transcripts_dir: Path | None, failed_asr: dict[str, str], cfg: CorpusConfig,
    punctuator,
) -> Iterator[str]:
    """Sentences of the train split's videos (unreadable transcripts are skipped here and recorded
    by the second pass)."""
    for entry in entries:
        if (entry.split or "train") != "train":
            continue
        try:
            sentences = video_sentences(entry, transcripts_dir, failed_asr, cfg, punctuator)
        except InputError:
            continue
        for sentence in sentences:
            yield sentence.text


def make_tokenizer(cfg: CorpusConfig, entries, transcripts_dir, failed_asr, punctuator=None):
    """The WordPiece tokenizer: loaded from ``cfg.tokenizer`` or trained on the train split."""
    from videobert.text import train_wordpiece
    from videobert.vocabulary import load_tokenizer

    if cfg.tokenizer is not None:
        return load_tokenizer(Path(cfg.tokenizer).expanduser())
    texts = _train_texts(entries, transcripts_dir, failed_asr, cfg, punctuator)
    return train_wordpiece(texts, cfg.wordpiece_vocab_size, cfg.wordpiece_min_frequency, cfg.lowercase)


def _example(video_id: str, index: int, start: float, end: float, text: str, text_ids: list[int],
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


def build_corpus(
    entries: Sequence[VideoEntry],
    tokens_dir: str | Path,
    out_dir: str | Path,
    cfg: CorpusConfig,
    failures,
    transcripts_dir: str | Path | None = None,
    progress=None,
    manifest: str | Path | None = None,
) -> dict[str, Any]:
    """Write the split files, the joint vocabulary and ``summary.json`` into ``out_dir``.

    ``failures`` is a :class:`videobert.store.FailureLog`; ``progress`` wraps the iterator of
    videos; ``manifest`` (where ``entries`` came from) is recorded in the summary's ``inputs`` so
    that later stages can find the videos. Returns the summary. Raises :class:`StageError` when no
    example could be made.
    """
    from videobert.store import atomic_write, atomic_write_json, atomic_write_text
    from videobert.vocabulary import JointVocabulary

    out_dir = Path(out_dir)
    info = read_tokens_info(tokens_dir)
    transcripts_dir = Path(transcripts_dir) if transcripts_dir is not None else None
    if transcripts_dir is not None and not transcripts_dir.is_dir():
        raise InputError(f"{transcripts_dir}: transcripts folder not found")
    failed_asr = asr_failures(transcripts_dir)

    punctuator = None
    if cfg.punctuator is not None:
        from videobert.text import Punctuator

        punctuator = Punctuator(cfg.punctuator)
    tokenizer = make_tokenizer(cfg, entries, transcripts_dir, failed_asr, punctuator)
    vocabulary = JointVocabulary(tokenizer, info.vocab_size, visual_vocab=info.vocab)
    if cfg.tokenizer is None and len(tokenizer) <= len(vocabulary.special_ids):
        log.warning("the train split has no text: the trained WordPiece vocabulary holds only the special tokens")

    per_split = {split: Counter() for split in SPLITS}
    words_per_sentence, pieces_per_sentence, clips_per_sentence, sentences_per_video = Counter(), Counter(), Counter(), Counter()
    dropped = Counter()
    videos = Counter()
    with contextlib.ExitStack() as stack:
        handles = {split: stack.enter_context(atomic_write(split_path(out_dir, split), "w")) for split in SPLITS}
        for entry in progress(entries, total=len(entries)) if progress else entries:
            split = entry.split or "train"
            try:
                words = video_tokens(info, entry.video_id)
                sentences = video_sentences(entry, transcripts_dir, failed_asr, cfg, punctuator)
            except InputError as exc:
                failures.record(entry.video_id, str(exc))
                videos["failed"] += 1
                continue
            examples = []
            if sentences:
                encoded = tokenizer([s.text for s in sentences], add_special_tokens=False)["input_ids"]
                for index, (sentence, text_ids) in enumerate(zip(sentences, encoded)):
                    clips = overlapping_clips(sentence.start, sentence.end, len(words), info.clip_seconds)
                    if not clips:
                        dropped["outside_clips"] += 1
                        continue
                    if not text_ids:
                        dropped["no_wordpieces"] += 1
                        continue
                    examples.append(_example(entry.video_id, index, sentence.start, sentence.end, sentence.text,
                                             text_ids, words, clips))
                    words_per_sentence[len(sentence.text.split())] += 1
                    pieces_per_sentence[len(text_ids)] += 1
                    clips_per_sentence[len(clips)] += 1
                if not examples:
                    failures.record(
                        entry.video_id,
                        f"none of its {len(sentences)} sentences overlaps its {len(words)} clips "
                        f"(0 … {len(words) * info.clip_seconds:.1f} s); is the transcript this video's?",
                    )
                    videos["failed"] += 1
                    continue
                sentences_per_video[len(examples)] += 1
                videos["with_speech"] += 1
            else:
                for index, clips in enumerate(video_only_segments(len(words), cfg.video_only_words)):
                    examples.append(_example(entry.video_id, index, clips.start * info.clip_seconds,
                                             clips.stop * info.clip_seconds, "", [], words, clips))
                videos["video_only"] += 1
            per_split[split]["videos"] += 1
            per_split[split]["examples"] += len(examples)
            per_split[split]["text_examples" if sentences else "video_only_examples"] += len(examples)
            handles[split].write("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples))
        total = sum(c["examples"] for c in per_split.values())
        if not total:
            raise StageError(f"no example could be made from {len(entries)} videos (see {failures.path})")

    vocabulary.save(out_dir)
    vocab_txt = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    atomic_write_text(out_dir / "tokenizer" / "vocab.txt", "\n".join(vocab_txt) + "\n")
    summary = {
        "videos": {"total": len(entries), **{k: videos[k] for k in ("with_speech", "video_only", "failed")}},
        "examples": total,
        "splits": {
            split: {k: per_split[split][k] for k in ("videos", "examples", "text_examples", "video_only_examples")}
            for split in SPLITS
        },
        "sentences_per_video": _stats(sentences_per_video),
        "words_per_sentence": _stats(words_per_sentence),
        "wordpieces_per_sentence": _stats(pieces_per_sentence),
        "clips_per_sentence": _stats(clips_per_sentence),
        "dropped_sentences": {k: dropped[k] for k in ("outside_clips", "no_wordpieces")},
        "tokenizer": {
            "source": str(cfg.tokenizer) if cfg.tokenizer is not None else "trained on the train split",
            "text_vocab_size": vocabulary.text_vocab_size,
        },
        "visual_vocab_size": vocabulary.visual_vocab_size,
        "joint_vocab_size": vocabulary.size,
        "clip_seconds": info.clip_seconds,
        "inputs": {
            "manifest": str(Path(manifest).absolute()) if manifest is not None else None,
            "tokens": str(Path(tokens_dir).absolute()),
            "transcripts": str(Path(transcripts_dir).absolute()) if transcripts_dir is not None else None,
        },
    }
    atomic_write_json(out_dir / "summary.json", summary)
    return summary
