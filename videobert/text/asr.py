"""Speech recognition for videos that have no transcript: audio → timed words → sentences.

ffmpeg decodes the first audio stream to 16 kHz mono 16-bit PCM through a pipe
(:func:`videobert.media.audio_pcm`); a backend turns it into words with start and end times;
:func:`videobert.text.sentences.split_sentences` groups the words into sentences (pauses and
``max_words``; ASR has no punctuation). The asr stage writes each video's sentences as WebVTT.

Backends:

* ``pocketsphinx`` (default): CMU PocketSphinx 5 with its bundled US-English model, offline.
  Speech regions are found with its voice-activity endpointer and each region (in pieces of at
  most 30 s) is decoded as one utterance; word times come from the decoder's segmentation (10 ms frames). Fillers and silences
  (``<s>``, ``<sil>``, ``[NOISE]``, ``++BREATH++``) are dropped and alternate-pronunciation marks
  (``the(2)``) removed. Dither is on (with a fixed seed), which keeps the features finite on
  digitally silent audio such as synthesized narration.
* ``whisper``: faster-whisper (a CTranslate2 model folder) or openai-whisper (a ``.pt`` file),
  whichever is installed, from a local ``model`` path; neither is a dependency of this package.
"""

from __future__ import annotations

import importlib.util
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

import numpy as np

from videobert.config import field
from videobert.errors import ConfigError, InputError
from videobert.manifest import VideoEntry
from videobert.media import SAMPLE_RATE, audio_pcm, has_audio_stream
from videobert.runtime import DeviceName, resolve_device
from videobert.text.sentences import DEFAULT_MAX_WORDS, DEFAULT_PAUSE, split_sentences
from videobert.text.transcripts import Cue, Word

_BYTES_PER_SECOND = 2 * SAMPLE_RATE
# Speech that never pauses (talk over music) is decoded in pieces of at most this length, which
# bounds the decoder's memory; a word may be cut at a piece boundary.
MAX_UTTERANCE_SECONDS = 30.0
_ALTERNATE_PRONUNCIATION = re.compile(r"\(\d+\)$")
NO_AUDIO_REASON = "no audio stream"


@dataclass
class RecognizerConfig:
    """Which recogniser transcribes, and with what model."""

    backend: Literal["pocketsphinx", "whisper"] = field(
        "pocketsphinx", help="recogniser: pocketsphinx (offline, bundled English model) or whisper (needs --model)"
    )
    model: Path | None = field(
        None, help="whisper only: local model, a faster-whisper (CTranslate2) folder or an openai-whisper .pt file"
    )
    language: str = field("en", help="whisper only: spoken language code (pocketsphinx's bundled model is US English)")
    device: DeviceName = field("auto", help="whisper only: where the model runs")

    def check(self) -> None:
        if self.backend == "whisper" and self.model is None:
            raise ConfigError("backend whisper needs --model PATH (a local faster-whisper folder or whisper .pt file)")
        if self.backend == "pocketsphinx" and self.model is not None:
            raise ConfigError("model: only the whisper backend takes a model path (pocketsphinx uses its bundled model)")


def whisper_package() -> str | None:
    """``faster_whisper`` or ``whisper``, whichever is importable (faster-whisper first), else None."""
    for name in ("faster_whisper", "whisper"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def check_backend(cfg: RecognizerConfig) -> None:
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



def make_recognizer(cfg: RecognizerConfig):
    if cfg.backend == "whisper":
        return WhisperRecognizer(Path(cfg.model).expanduser(), cfg.language, cfg.device)
    return PocketsphinxRecognizer()


def transcribe(path: str | Path, recognizer, pause: float = DEFAULT_PAUSE,
               max_words: int = DEFAULT_MAX_WORDS) -> tuple[list[Cue], float]:
    """Sentences spoken in the media file at ``path`` and the seconds of audio it holds.

    Raises :class:`InputError` for a missing or unreadable file, or one without an audio stream.
    """
    if not has_audio_stream(path):
        raise InputError(f"{path}: {NO_AUDIO_REASON}", "no_audio")
    decoded = 0

    def counted(chunks: Iterator[bytes]) -> Iterator[bytes]:
        nonlocal decoded
        for chunk in chunks:
            decoded += len(chunk)
            yield chunk

    words = in_time_order(recognizer.words(counted(audio_pcm(path))))
    return split_sentences(words, pause, max_words), decoded / _BYTES_PER_SECOND


def in_time_order(words: list[Word]) -> list[Word]:
    """Words with starts that never go back and ends never before starts (recognisers' word times
    can overlap slightly; WebVTT timestamp tags must not decrease)."""
    ordered: list[Word] = []
    for word in words:
        start = max(word.start, ordered[-1].start) if ordered else word.start
        ordered.append(Word(start, max(start, word.end), word.text))
    return ordered


# ----------------------------------------------------------------------------------------------
# Many videos


@dataclass(frozen=True)
class VideoResult:
    """One video's sentences, or why it has none (``reason`` and ``kind``)."""

    entry: VideoEntry
    cues: list[Cue] | None
    reason: str = ""
    kind: str = ""
    audio_seconds: float = 0.0


_worker_recognizer = None


def _init_worker(cfg: RecognizerConfig) -> None:
    global _worker_recognizer
    _worker_recognizer = make_recognizer(cfg)


def _transcribe_one(entry: VideoEntry, cfg: RecognizerConfig, pause: float, max_words: int) -> VideoResult:
    """Transcribe one video (in a worker process); failures become a reason, without the path."""
    global _worker_recognizer
    if _worker_recognizer is None:
        _worker_recognizer = make_recognizer(cfg)
    try:
        cues, seconds = transcribe(entry.video, _worker_recognizer, pause, max_words)
    except InputError as exc:
        message = str(exc)
        prefix = f"{entry.video}: "
        return VideoResult(entry, None, message[len(prefix):] if message.startswith(prefix) else message, exc.kind)
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop the batch; the reason is recorded
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return VideoResult(entry, None, f"{type(exc).__name__}: {first}", "error")
    return VideoResult(entry, cues, audio_seconds=seconds)


def transcribe_videos(
    entries: Sequence[VideoEntry], cfg: RecognizerConfig, pause: float, max_words: int, workers: int,
    progress: Callable | None = None,
) -> Iterator[VideoResult]:
    """Each entry's sentences, transcribed by ``workers`` processes (1: in this one), as they finish
    in order. ``progress`` wraps the iterator (a tqdm-like factory taking ``total``)."""
    workers = min(workers, max(1, len(entries)))
    pool = None
    if workers > 1:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(cfg,))
        results = pool.map(_transcribe_one, entries, [cfg] * len(entries), [pause] * len(entries),
                           [max_words] * len(entries))
    else:
        results = (_transcribe_one(entry, cfg, pause, max_words) for entry in entries)
    try:
        yield from progress(results, total=len(entries)) if progress else results
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


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
