"""The asr stage: MANIFEST -> TRANSCRIPTS (docs/formats.md), for videos without a transcript.

``run`` creates the folder, writes ``config.yaml`` and ``asr.json`` (backend, model, versions),
owns the failure log (one per shard), transcribes this worker's share of the videos in worker
processes and writes ``<video_id>.vtt`` — one cue per sentence, every word's time as a WebVTT
timestamp tag — so that everything downstream reads one format. A video whose ``.vtt`` is already
complete is skipped. A video without an audio stream is recorded with the kind ``no_audio``, which
the corpus stage reads as "no speech"; any other failure stays a failure.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from videobert import config as cfgmod
from videobert.config import field
from videobert.errors import ConfigError, InputError, StageError
from videobert.logs import progress
from videobert.manifest import read_manifest
from videobert.media import SAMPLE_RATE
from videobert.runtime import Shard, combined_shard, cpu_cores
from videobert.store import FailureLog, StageSummary, atomic_write_json, failures_name, library_versions, prepare_output_dir, read_failures
from videobert.text.asr import RecognizerConfig, check_backend, transcribe_videos, whisper_package
from videobert.text.sentences import SentenceConfig
from videobert.text.transcripts import read_transcript, write_webvtt

log = logging.getLogger(__name__)


@dataclass
class AsrConfig(RecognizerConfig, SentenceConfig):
    """Configuration of ``videobert asr``: the recogniser, how words become sentences, and processes."""

    workers: int = field(0, speed_only=True, help="parallel processes (0: one per CPU core for pocketsphinx, 1 for whisper)")

    def check(self) -> None:
        RecognizerConfig.check(self)
        SentenceConfig.check(self)
        if self.workers < 0:
            raise ConfigError("workers: must be 0 (automatic) or more")

    def worker_count(self) -> int:
        if self.workers:
            return self.workers
        return cpu_cores() if self.backend == "pocketsphinx" else 1


def run(manifest: str | Path, out_dir: str | Path, cfg: AsrConfig, shard: Shard = Shard(),
        all_videos: bool = False) -> StageSummary:
    """Transcribe this worker's share (``shard``, combined with torchrun ranks) of the manifest's
    videos that have no transcript (``all_videos``: every video) into ``out_dir``."""
    check_backend(cfg)
    worker = combined_shard(shard)
    entries = read_manifest(manifest)
    wanted = entries if all_videos else [e for e in entries if e.transcript is None]
    if len(wanted) < len(entries):
        log.info("%d of %d videos have a transcript in the manifest; leaving them out (--all to include them)",
                 len(entries) - len(wanted), len(entries))
    mine = worker.take(wanted, key=lambda e: e.video_id)
    out = prepare_output_dir(out_dir)
    cfgmod.save(cfg, out / "config.yaml")
    backend = cfg.backend if cfg.backend == "pocketsphinx" else whisper_package()
    atomic_write_json(out / "asr.json", {
        "backend": backend, "model": str(cfg.model) if cfg.model else "bundled en-us",
        "sample_rate": SAMPLE_RATE, "versions": library_versions("pocketsphinx", "faster-whisper", "openai-whisper"),
    })
    began = time.perf_counter()
    todo = [e for e in mine if not is_done(transcript_path(out, e.video_id))]
    skipped = len(mine) - len(todo)
    if skipped:
        log.info("%d of %d videos already transcribed in %s; skipping them", skipped, len(mine), out)
    transcribed = failed = no_audio = words = 0
    audio_seconds = 0.0
    failures_file = out / failures_name(worker.index, worker.count)
    with FailureLog(failures_file) as failures:
        results = transcribe_videos(
            todo, cfg, cfg.pause, cfg.max_words, cfg.worker_count(),
            progress=lambda it, total: progress(it, total=total, desc="asr", unit="video"),
        )
        for result in results:
            if result.cues is None:
                failures.record(result.entry.video_id, result.reason, result.kind)
                failed += 1
                no_audio += result.kind == "no_audio"
                continue
            write_webvtt(transcript_path(out, result.entry.video_id), result.cues)
            transcribed += 1
            words += sum(len(c.words) for c in result.cues)
            audio_seconds += result.audio_seconds
    seconds = time.perf_counter() - began
    if failed > no_audio and not transcribed and not skipped:
        raise StageError(f"no video could be transcribed ({failed} failed; see {failures_file})")
    speed = audio_seconds / seconds if seconds > 0 else 0.0
    message = (f"asr (shard {worker}): {transcribed} transcribed ({audio_seconds:.0f} s of audio, {words} words, "
               f"{speed:.1f}x real time), {skipped} already done, {failed} failed, in {seconds:.1f} s")
    return StageSummary("asr", out, transcribed, skipped, failed, seconds, message,
                        {"audio_seconds": audio_seconds, "words": words})


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


def asr_failures(transcripts_dir: str | Path) -> dict[str, dict]:
    """``{video_id: failure record}`` of a TRANSCRIPTS folder (every shard's)."""
    return {record["id"]: record for record in read_failures(transcripts_dir)}
