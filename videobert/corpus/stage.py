"""The corpus stage: MANIFEST + TOKENS (+ transcripts) -> CORPUS (docs/formats.md), and the CORPUS
folder's layout.

``run`` creates the folder, writes ``config.yaml``, owns the failure log, and writes the split
files ``{train,val,test}.jsonl`` (one example a line), the joint vocabulary (``vocabulary.json`` +
``tokenizer/``) and ``summary.json``:

* **Transcript of a video**: the manifest's ``transcript`` if it gives one; otherwise
  ``<video_id>.vtt`` (or ``.srt``, ``.json``, ``.jsonl``) in the ``transcripts`` folder (e.g. the
  output of ``videobert asr``); otherwise the video has no speech. A transcript that cannot be
  read, or a video that ``videobert asr`` recorded as failed for a reason other than having no
  audio stream (its record's ``kind``), is a failure, never taken for silence.
* **Sentences**: :func:`videobert.text.split_sentences` (``pause``, ``max_words``, and a local
  punctuation model with ``punctuator``).
* **Alignment**: :mod:`videobert.corpus.align`.
* **Splits** follow the manifest (a video without one is in ``train``), so a video is in one split.
* **WordPiece**: a local BERT tokenizer folder (``tokenizer``), as the paper used BERT's, or one
  trained on the train split's sentences (:func:`videobert.text.train_wordpiece`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from videobert import config as cfgmod
from videobert.config import field
from videobert.corpus.align import EXAMPLE_KEYS, sentence_examples, video_only_examples
from videobert.corpus.joint_vocab import JointVocabulary
from videobert.errors import ConfigError, InputError, StageError
from videobert.logs import progress
from videobert.manifest import SPLITS, TRANSCRIPT_EXTENSIONS, VideoEntry, read_manifest
from videobert.store import (
    FailureLog, StageSummary, atomic_write, atomic_write_json, atomic_write_text, failures_name, prepare_output_dir,
    load_npy, read_json, read_jsonl,
)
from videobert.text.sentences import DEFAULT_MAX_WORDS, DEFAULT_PAUSE, Punctuator, split_sentences
from videobert.text.stage import asr_failures
from videobert.text.transcripts import Cue, read_transcript
from videobert.text.wordpiece import load_tokenizer, train_wordpiece
from videobert.vocab.stage import token_path, tokens_meta

log = logging.getLogger(__name__)


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


def run(manifest: str | Path, tokens_dir: str | Path, out_dir: str | Path, cfg: CorpusConfig,
        transcripts_dir: str | Path | None = None) -> StageSummary:
    """Write the split files, the joint vocabulary and ``summary.json`` (the summary's ``details``).
    Raises :class:`StageError` when no example could be made."""
    began = time.perf_counter()
    entries = read_manifest(manifest)
    info = read_tokens_info(tokens_dir)
    transcripts_dir = Path(transcripts_dir) if transcripts_dir is not None else None
    if transcripts_dir is not None and not transcripts_dir.is_dir():
        raise InputError(f"{transcripts_dir}: transcripts folder not found", "missing")
    failed_asr = asr_failures(transcripts_dir) if transcripts_dir is not None else {}
    punctuator = Punctuator(cfg.punctuator) if cfg.punctuator is not None else None
    out = prepare_output_dir(out_dir)
    # summary.json is the folder's completion record: gone while the folder is rewritten, written
    # last, so that a kill half-way never leaves new splits beside an old vocabulary for a reader.
    (out / SUMMARY_FILE).unlink(missing_ok=True)
    cfgmod.save(cfg, out / "config.yaml")

    if cfg.tokenizer is not None:
        tokenizer = load_tokenizer(Path(cfg.tokenizer).expanduser())
    else:
        texts = _TrainTexts(entries, transcripts_dir, failed_asr, cfg, punctuator)
        tokenizer = train_wordpiece(texts, cfg.wordpiece_vocab_size, cfg.wordpiece_min_frequency, cfg.lowercase)
    vocabulary = JointVocabulary(tokenizer, info.vocab_size, visual_vocab=info.vocab)
    if cfg.tokenizer is None and len(tokenizer) <= len(vocabulary.special_ids):
        log.warning("the train split has no text: the trained WordPiece vocabulary holds only the special tokens")

    per_split = {split: Counter() for split in SPLITS}
    words_per_sentence, pieces_per_sentence, clips_per_sentence, sentences_per_video = Counter(), Counter(), Counter(), Counter()
    dropped = Counter()
    videos = Counter()
    with FailureLog(out / failures_name()) as failures, contextlib.ExitStack() as stack:
        handles = {split: stack.enter_context(atomic_write(split_path(out, split), "w")) for split in SPLITS}
        for entry in progress(entries, total=len(entries), desc="corpus", unit="video"):
            split = entry.split or "train"
            try:
                words = video_tokens(info, entry.video_id)
                sentences = video_sentences(entry, transcripts_dir, failed_asr, cfg, punctuator)
            except InputError as exc:
                failures.record_error(entry.video_id, exc)
                videos["failed"] += 1
                continue
            if sentences:
                encoded = tokenizer([s.text for s in sentences], add_special_tokens=False)["input_ids"]
                examples, dropped_here = sentence_examples(entry.video_id, sentences, encoded, words, info.clip_seconds)
                dropped += dropped_here
                if not examples:
                    failures.record(
                        entry.video_id,
                        f"none of its {len(sentences)} sentences overlaps its {len(words)} clips "
                        f"(0 … {len(words) * info.clip_seconds:.1f} s); is the transcript this video's?",
                        "no_overlap",
                    )
                    videos["failed"] += 1
                    continue
                for example in examples:
                    words_per_sentence[len(example["text"].split())] += 1
                    pieces_per_sentence[len(example["text_ids"])] += 1
                    clips_per_sentence[len(example["video_ids"])] += 1
                sentences_per_video[len(examples)] += 1
                videos["with_speech"] += 1
            else:
                examples = video_only_examples(entry.video_id, words, info.clip_seconds, cfg.video_only_words)
                videos["video_only"] += 1
            per_split[split]["videos"] += 1
            per_split[split]["examples"] += len(examples)
            per_split[split]["text_examples" if sentences else "video_only_examples"] += len(examples)
            handles[split].write("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples))
        total = sum(c["examples"] for c in per_split.values())
        if not total:
            raise StageError(f"no example could be made from {len(entries)} videos (see {failures.path})")
        failed = failures.count

    vocabulary.save(out)
    vocab_txt = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    atomic_write_text(out / "tokenizer" / "vocab.txt", "\n".join(vocab_txt) + "\n")
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
            "manifest": str(Path(manifest).absolute()),
            "tokens": str(Path(tokens_dir).absolute()),
            "transcripts": str(Path(transcripts_dir).absolute()) if transcripts_dir is not None else None,
        },
    }
    atomic_write_json(out / SUMMARY_FILE, summary)
    seconds = time.perf_counter() - began
    splits = summary["splits"]
    message = (
        f"corpus: {total} examples (train {splits['train']['examples']}, val {splits['val']['examples']}, "
        f"test {splits['test']['examples']}) from {len(entries)} videos ({videos['with_speech']} with speech, "
        f"{videos['video_only']} video-only, {videos['failed']} failed); "
        f"{summary['words_per_sentence']['mean']:.1f} words and {summary['clips_per_sentence']['mean']:.1f} clips per sentence; "
        f"{dropped['outside_clips']} sentences outside the clips dropped; joint vocabulary {vocabulary.size} = "
        f"{vocabulary.text_vocab_size} text + [>] + {vocabulary.visual_vocab_size} visual; in {seconds:.1f} s"
    )
    return StageSummary("corpus", out, len(entries) - failed, 0, failed, seconds, message, summary)


# ---------------------------------------------------------------------------------------------- the folder
SUMMARY_FILE = "summary.json"


def split_path(corpus_dir: str | Path, split: str) -> Path:
    return Path(corpus_dir) / f"{split}.jsonl"


def check_complete(corpus_dir: str | Path) -> None:
    """Raise :class:`InputError` unless the corpus stage finished writing ``corpus_dir`` (its
    ``summary.json``, written last, is there)."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise InputError(f"{corpus_dir}: corpus folder not found", "missing")
    if not (corpus_dir / SUMMARY_FILE).is_file():
        raise InputError(f"{corpus_dir}: not a finished corpus (no {SUMMARY_FILE}: the corpus stage was interrupted "
                         "or did not write it); run 'videobert corpus' again", "missing")


def load_corpus(corpus_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The examples of one split of a finished corpus (:func:`check_complete`), in corpus order
    (by video, then time)."""
    if split not in SPLITS:
        raise InputError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    check_complete(corpus_dir)
    path = split_path(corpus_dir, split)
    if not path.exists():
        raise InputError(f"{path}: no such corpus split (build it with 'videobert corpus')", "missing")
    examples = []
    for number, example in read_jsonl(path, "corpus split"):
        missing = [key for key in EXAMPLE_KEYS if key not in example]
        if missing:
            raise InputError(f"{path}:{number}: example lacks {', '.join(missing)}")
        examples.append(example)
    return examples


def corpus_summary(corpus_dir: str | Path) -> dict[str, Any]:
    """The corpus's ``summary.json``."""
    return read_json(Path(corpus_dir) / SUMMARY_FILE, "corpus summary")


# ---------------------------------------------------------------------------------------------- inputs of one video
@dataclass(frozen=True)
class TokensInfo:
    """What ``tokens.json`` says about a TOKENS folder."""

    folder: Path
    vocab: str | None
    vocab_size: int
    clip_seconds: float


def read_tokens_info(tokens_dir: str | Path) -> TokensInfo:
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
    path = token_path(info.folder, video_id)
    if not path.exists():
        raise InputError(f"no visual words in {info.folder} (tokenize failed or did not include this video)", "missing")
    words = load_npy(path, "visual words")
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


def video_sentences(
    entry: VideoEntry, transcripts_dir: Path | None, failed_asr: dict[str, dict], cfg: CorpusConfig, punctuator=None
) -> list[Cue]:
    """The sentences of one video (empty: no speech); raises :class:`InputError` with the reason."""
    path = find_transcript(entry, transcripts_dir)
    if path is None:
        record = failed_asr.get(entry.video_id)
        if record is not None and record["kind"] != "no_audio":
            raise InputError(f"no transcript: speech recognition failed ({record.get('reason', '')})", "asr_failed")
        return []
    return split_sentences(read_transcript(path), cfg.pause, cfg.max_words, punctuator)


@dataclass(frozen=True)
class _TrainTexts:
    """Sentences of the train split's videos, read afresh on each iteration (unreadable
    transcripts are skipped here and recorded when the splits are written)."""

    entries: Sequence[VideoEntry]
    transcripts_dir: Path | None
    failed_asr: dict[str, dict]
    cfg: CorpusConfig
    punctuator: object

    def __iter__(self) -> Iterator[str]:
        for entry in self.entries:
            if (entry.split or "train") != "train":
                continue
            try:
                sentences = video_sentences(entry, self.transcripts_dir, self.failed_asr, self.cfg, self.punctuator)
            except InputError:
                continue
            for sentence in sentences:
                yield sentence.text


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
