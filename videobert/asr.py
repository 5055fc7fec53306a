"""Speech recognition for videos that have no transcript: audio → timed words → WebVTT.

ffmpeg decodes the first audio stream to 16 kHz mono 16-bit PCM through a pipe; a backend turns
it into words with start and end times; :func:`videobert.text.split_sentences` groups the words
into sentences (pauses and ``max_words``; ASR has no punctuation); each video's sentences are
written as ``<video_id>.vtt``, one cue per sentence with every word's time as a WebVTT timestamp
tag, so that everything downstream reads one format (:func:`videobert.text.read_transcript`).

Backends:

* ``pocketsphinx`` (default): CMU PocketSphinx 5 with its bundled US-English model, offline.
  Speech regions are found with its voice-activity endpointer and each region (in pieces of at
  most 30 s) is decoded as one utterance; word times come from the decoder's segmentation (10 ms frames). Fillers and silences
  (``<s>``, ``<sil>``, ``[NOISE]``, ``++BREATH++``) are dropped and alternate-pronunciation marks
  (``the(2)``) removed. Dither is on (with a fixed seed), which keeps the features finite on
  digitally silent audio such as synthesized narration.
* ``whisper``: faster-whisper (a CTranslate2 model folder) or openai-whisper (a ``.pt`` file),
  whichever is installed, from a local ``model`` path; neither is a dependency of this package.

A video without an audio stream, or one ffmpeg cannot read, is recorded in ``failures.jsonl`` and
the others carry on. A video whose audio holds no speech gets a WebVTT file without cues.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np

from videobert.config import field
from videobert.errors import ConfigError, InputError, StageError
from videobert.manifest import VideoEntry
from videobert.text import DEFAULT_MAX_WORDS, DEFAULT_PAUSE, Cue, Word, read_transcript, split_sentences, write_webvtt

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
_BYTES_PER_SECOND = 2 * SAMPLE_RATE
# Speech that never pauses (talk over music) is decoded in pieces of at most this length, which
# bounds the decoder's memory; a word may be cut at a piece boundary.
MAX_UTTERANCE_SECONDS = 30.0
_ALTERNATE_PRONUNCIATION = re.compile(r"\(\d+\)$")
NO_AUDIO_REASON = "no audio stream"


@dataclass
class AsrConfig:
    """Configuration of ``videobert asr``."""

    backend: Literal["pocketsphinx", "whisper"] = field(
        "pocketsphinx", help="recogniser: pocketsphinx (offline, bundled English model) or whisper (needs --model)"
    )
    model: Path | None = field(
        None, help="whisper only: local model, a faster-whisper (CTranslate2) folder or an openai-whisper .pt file"
    )
    language: str = field("en", help="whisper only: spoken language code (pocketsphinx's bundled model is US English)")
    device: Literal["auto", "cpu", "cuda"] = field("auto", help="whisper only: where the model runs")
    pause: float = field(DEFAULT_PAUSE, help="a silence of at least this many seconds between words ends a sentence")
    max_words: int = field(DEFAULT_MAX_WORDS, help="longest sentence in words (longer runs are cut evenly)")
    workers: int = field(0, help="parallel processes (0: one per CPU core for pocketsphinx, 1 for whisper)")

    def check(self) -> None:
        if self.backend == "whisper" and self.model is None:
            raise ConfigError("backend whisper needs --model PATH (a local faster-whisper folder or whisper .pt file)")
        if self.backend == "pocketsphinx" and self.model is not None:
            raise ConfigError("model: only the whisper backend takes a model path (pocketsphinx uses its bundled model)")
        if self.pause <= 0:
            raise ConfigError("pause: must be positive")
        if self.max_words < 1:
            raise ConfigError("max_words: must be at least 1")
        if self.workers < 0:
            raise ConfigError("workers: must be 0 (automatic) or more")

    def worker_count(self) -> int:
        if self.workers:
            return self.workers
        return (os.cpu_count() or 1) if self.backend == "pocketsphinx" else 1


def whisper_package() -> str | None:
    """``faster_whisper`` or ``whisper``, whichever is importable (faster-whisper first), else None."""
    for name in ("faster_whisper", "whisper"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def check_backend(cfg: AsrConfig) -> None:
    """Refuse, before any work, a backend that cannot run here (:class:`ConfigError`)."""
    if cfg.backend != "whisper":
        return
    package = whisper_package()
    if package is None:
        raise ConfigError(
            "backend whisper needs faster-whisper or openai-whisper installed (pip install faster-whisper); "
            "or use --backend pocketsphinx"
        )
    model = Path(cfg.model).expanduser()
    if not model.exists():
        raise ConfigError(f"model: {model} does not exist (give a local path; nothing is downloaded)")
    if package == "faster_whisper" and not model.is_dir():
        raise ConfigError(f"model: {model} must be a faster-whisper model folder (with model.bin)")
    if package == "whisper" and not model.is_file():
        raise ConfigError(f"model: {model} must be an openai-whisper checkpoint file (.pt)")


# ----------------------------------------------------------------------------------------------
# Audio


def has_audio_stream(path: str | Path) -> bool:
    """Whether the container at ``path`` has an audio stream; raises :class:`InputError` if unreadable."""
    import av

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.error.FFmpegError, OSError) as exc:
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise InputError(f"{path}: not a readable media file ({first})") from None


def audio_pcm(path: str | Path, chunk_bytes: int = 1 << 16) -> Iterator[bytes]:
    """The first audio stream as 16 kHz mono signed 16-bit little-endian PCM, in chunks, decoded by
    ffmpeg through a pipe. Raises :class:`InputError` when ffmpeg fails."""
    from videobert.video import ffmpeg_exe, ffmpeg_url

    command = [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", ffmpeg_url(path),
        "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "pipe:1",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while True:
            chunk = proc.stdout.read(chunk_bytes)
            if not chunk:
                break
            yield chunk
        stderr = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            last = stderr.splitlines()[-1] if stderr else f"exit {proc.returncode}"
            raise InputError(f"{path}: ffmpeg could not decode the audio ({last})")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _frames(chunks: Iterator[bytes], frame_bytes: int) -> Iterator[bytes]:
    """Re-cut a byte stream into frames of ``frame_bytes`` (the last one may be shorter)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        whole = len(pending) - len(pending) % frame_bytes
        for offset in range(0, whole, frame_bytes):
            yield pending[offset : offset + frame_bytes]
        pending = pending[whole:]
    if pending:
        yield pending


# ----------------------------------------------------------------------------------------------
# Recognisers: ``words(pcm_chunks) -> list[Word]`` in time order, times in seconds from the start.


def is_spoken_word(token: str) -> bool:
    """False for PocketSphinx's silence and filler tokens (``<sil>``, ``[NOISE]``, ``++UM++``)."""
    return bool(token) and token[0] not in "<[+"


class PocketsphinxRecognizer:
    """PocketSphinx with its bundled US-English acoustic model, language model and dictionary."""

    name = "pocketsphinx"

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(loglevel="FATAL", dither=True, seed=1)
        self.frame_rate = int(self.decoder.config["frate"])

    def _decode(self, pcm: bytes, offset: float) -> list[Word]:
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        words = []
        for segment in self.decoder.seg():
            token = _ALTERNATE_PRONUNCIATION.sub("", segment.word)
            if not is_spoken_word(token):
                continue
            start = offset + segment.start_frame / self.frame_rate
            end = offset + (segment.end_frame + 1) / self.frame_rate  # end_frame is inclusive
            words.append(Word(round(start, 3), round(end, 3), token))
        return words

    def words(self, chunks: Iterator[bytes]) -> list[Word]:
        from pocketsphinx import Endpointer

        endpointer = Endpointer(sample_rate=SAMPLE_RATE)
        longest = int(MAX_UTTERANCE_SECONDS * _BYTES_PER_SECOND)
        words: list[Word] = []
        utterance: list[bytes] = []
        size, start, continued = 0, 0.0, False
        for frame in _frames(chunks, endpointer.frame_bytes):
            if len(frame) == endpointer.frame_bytes:
                speech = endpointer.process(frame)
            else:
                speech = endpointer.end_stream(frame)
            if speech is None:
                continue
            if not utterance and not continued:
                start = endpointer.speech_start
            utterance.append(speech)
            size += len(speech)
            if not endpointer.in_speech or size >= longest:
                words += self._decode(b"".join(utterance), start)
                continued = endpointer.in_speech
                start += size / _BYTES_PER_SECOND
                utterance, size = [], 0
        if utterance:  # the audio ended while speech was going on
            words += self._decode(b"".join(utterance), start)
        return words


class WhisperRecognizer:
    """faster-whisper or openai-whisper from a local model path, with word timestamps."""

    def __init__(self, model: Path, language: str, device: str) -> None:
        from videobert.device import resolve_device

        self.package = whisper_package()
        self.name = self.package or "whisper"
        self.language = language
        self.device = resolve_device(device)
        if self.package == "faster_whisper":
            from faster_whisper import WhisperModel

            index = self.device.index or 0
            self.model = WhisperModel(str(model), device=self.device.type, device_index=index, compute_type="default")
        elif self.package == "whisper":
            import whisper

            self.model = whisper.load_model(str(model), device=str(self.device))
        else:
            raise ConfigError("backend whisper needs faster-whisper or openai-whisper installed")

    def words(self, chunks: Iterator[bytes]) -> list[Word]:
        audio = np.frombuffer(b"".join(chunks), dtype=np.int16).astype(np.float32) / 32768.0
        words: list[Word] = []
        if audio.size == 0:
            return words
        if self.package == "faster_whisper":
            segments, _ = self.model.transcribe(audio, language=self.language, word_timestamps=True)
            for segment in segments:
                for w in segment.words or []:
                    if w.word.strip():
                        words.append(Word(round(float(w.start), 3), round(float(w.end), 3), w.word.strip()))
        else:
            result = self.model.transcribe(
                audio, language=self.language, word_timestamps=True, fp16=self.device.type == "cuda"
            )
            for segment in result["segments"]:
                for w in segment.get("words", []):
                    if w["word"].strip():
                        words.append(Word(round(float(w["start"]), 3), round(float(w["end"]), 3), w["word"].strip()))
        return words


def make_recognizer(cfg: AsrConfig):
    if cfg.backend == "whisper":
        return WhisperRecognizer(Path(cfg.model).expanduser(), cfg.language, cfg.device)
    return PocketsphinxRecognizer()


def transcribe(path: str | Path, recognizer, cfg: AsrConfig) -> tuple[list[Cue], float]:
    """Sentences spoken in the media file at ``path`` and the seconds of audio it holds.

    Raises :class:`InputError` for a missing or unreadable file, or one without an audio stream.
    """
    if not has_audio_stream(path):
        raise InputError(f"{path}: {NO_AUDIO_REASON}")
    decoded = 0

    def counted(chunks: Iterator[bytes]) -> Iterator[bytes]:
        nonlocal decoded
        for chunk in chunks:
            decoded += len(chunk)
            yield chunk

    words = in_time_order(recognizer.words(counted(audio_pcm(path))))
    return split_sentences(words, cfg.pause, cfg.max_words), decoded / _BYTES_PER_SECOND


def in_time_order(words: list[Word]) -> list[Word]:
    """Words with starts that never go back and ends never before starts (recognisers' word times
    can overlap slightly; WebVTT timestamp tags must not decrease)."""
    ordered: list[Word] = []
    for word in words:
        start = max(word.start, ordered[-1].start) if ordered else word.start
        ordered.append(Word(start, max(start, word.end), word.text))
    return ordered


# ----------------------------------------------------------------------------------------------
# The batch stage


def transcript_path(out_dir: str | Path, video_id: str) -> Path:
    return Path(out_dir) / f"{video_id}.vtt"


def is_done(path: Path) -> bool:
    """Whether ``path`` is a complete, readable transcript from an earlier run."""
    if not path.is_file():
        return False
    try:
        read_transcript(path, "vtt")
    except InputError:
        return False
    return True


@dataclass(frozen=True)
class VideoResult:
    video_id: str
    reason: str | None  # None: transcribed
    audio_seconds: float = 0.0
    words: int = 0


_worker_recognizer = None


def _init_worker(cfg: AsrConfig) -> None:
    global _worker_recognizer
    _worker_recognizer = make_recognizer(cfg)


def _transcribe_one(entry: VideoEntry, out_dir: Path, cfg: AsrConfig) -> VideoResult:
    """Transcribe one video in a worker and write its ``.vtt``; failures become a reason."""
    global _worker_recognizer
    if _worker_recognizer is None:
        _worker_recognizer = make_recognizer(cfg)
    try:
        cues, seconds = transcribe(entry.video, _worker_recognizer, cfg)
    except InputError as exc:
        message = str(exc)
        prefix = f"{entry.video}: "
        return VideoResult(entry.video_id, message[len(prefix):] if message.startswith(prefix) else message)
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop the batch; the reason is recorded
        return VideoResult(entry.video_id, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
    write_webvtt(transcript_path(out_dir, entry.video_id), cues)
    return VideoResult(entry.video_id, None, seconds, sum(len(c.words) for c in cues))


@dataclass(frozen=True)
class AsrSummary:
    transcribed: int
    skipped: int
    failed: int
    audio_seconds: float
    words: int
    seconds: float


def run_asr(
    entries: Sequence[VideoEntry],
    out_dir: str | Path,
    cfg: AsrConfig,
    failures,
    progress=None,
) -> AsrSummary:
    """Transcribe ``entries`` into ``out_dir``, skipping those whose ``.vtt`` is already complete.

    ``failures`` is a :class:`videobert.store.FailureLog`; ``progress`` wraps the iterator of
    finished videos (e.g. a tqdm bar). Raises :class:`StageError` when no video was transcribed
    and some failed for a reason other than having no audio stream.
    """
    check_backend(cfg)
    out_dir = Path(out_dir)
    began = time.perf_counter()
    todo = [e for e in entries if not is_done(transcript_path(out_dir, e.video_id))]
    skipped = len(entries) - len(todo)
    if skipped:
        log.info("%d of %d videos already transcribed in %s; skipping them", skipped, len(entries), out_dir)
    workers = min(cfg.worker_count(), max(1, len(todo)))
    pool = None
    if workers > 1:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(cfg,))
        results = pool.map(_transcribe_one, todo, [out_dir] * len(todo), [cfg] * len(todo))
    else:
        results = (_transcribe_one(entry, out_dir, cfg) for entry in todo)
    transcribed = failed = silent = words = 0
    audio_seconds = 0.0
    try:
        for result in progress(results, total=len(todo)) if progress else results:
            if result.reason is not None:
                failures.record(result.video_id, result.reason)
                failed += 1
                silent += result.reason == NO_AUDIO_REASON
                continue
            transcribed += 1
            words += result.words
            audio_seconds += result.audio_seconds
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if failed > silent and not transcribed and not skipped:
        raise StageError(f"no video could be transcribed ({failed} failed; see {failures.path})")
    return AsrSummary(transcribed, skipped, failed, audio_seconds, words, time.perf_counter() - began)


def word_error_rate(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> float:
    """(substitutions + deletions + insertions) / reference words, by Levenshtein alignment of words
    (strings are lowercased and split on whitespace)."""
    ref = reference.lower().split() if isinstance(reference, str) else list(reference)
    hyp = hypothesis.lower().split() if isinstance(hypothesis, str) else list(hypothesis)
    if not ref:
        return float(len(hyp) > 0)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1] / len(ref)
