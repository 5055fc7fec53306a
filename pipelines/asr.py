"""``videobert asr MANIFEST -o TRANSCRIPTS``: speech recognition for videos without a transcript."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
from pathlib import Path
from typing import Sequence

from pipelines.common import add_config_arguments, new_parser, resolve_config, run_main
from videobert import config as cfgmod
from videobert.asr import SAMPLE_RATE, AsrConfig, check_backend, run_asr, whisper_package
from videobert.distributed import combined_shard, parse_shard
from videobert.logs import progress
from videobert.manifest import read_manifest
from videobert.store import FailureLog, atomic_write_json, failures_name, library_versions, prepare_output_dir

log = logging.getLogger("pipelines.asr")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "videobert asr",
        "Transcribe the speech of each video (ffmpeg audio -> pocketsphinx or whisper -> sentences with\n"
        "word timings) into TRANSCRIPTS/<video_id>.vtt. Videos already transcribed are skipped; videos\n"
        "without an audio stream are recorded in failures.jsonl. Use the folder as 'videobert corpus\n"
        "--transcripts TRANSCRIPTS'.",
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="manifest.jsonl or a folder of videos")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="TRANSCRIPTS", help="output folder")
    parser.add_argument(
        "--shard", metavar="I/N", default=None,
        help="transcribe only share I of N (0-based) of the videos, e.g. for a job array; combined with torchrun ranks",
    )
    parser.add_argument(
        "--all", action="store_true",
        help="also transcribe videos that the manifest gives a transcript (by default they are left out)",
    )
    add_config_arguments(parser, AsrConfig)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(AsrConfig, args)
    check_backend(cfg)
    shard = combined_shard(parse_shard(args.shard))
    entries = read_manifest(args.manifest)
    wanted = entries if args.all else [e for e in entries if e.transcript is None]
    if len(wanted) < len(entries):
        log.info("%d of %d videos have a transcript in the manifest; leaving them out (--all to include them)",
                 len(entries) - len(wanted), len(entries))
    mine = shard.take(wanted, key=lambda e: e.video_id)
    out = prepare_output_dir(args.out)
    cfgmod.save(cfg, out / "config.yaml")
    backend = cfg.backend if cfg.backend == "pocketsphinx" else whisper_package()
    versions = library_versions()
    for package in ("pocketsphinx", "faster-whisper", "openai-whisper"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    atomic_write_json(out / "asr.json", {
        "backend": backend, "model": str(cfg.model) if cfg.model else "bundled en-us",
        "sample_rate": SAMPLE_RATE, "versions": versions,
    })
    with FailureLog(out / failures_name(shard.index, shard.count)) as failures:
        summary = run_asr(
            mine, out, cfg, failures,
            progress=lambda it, total: progress(it, total=total, desc="asr", unit="video"),
        )
    speed = summary.audio_seconds / summary.seconds if summary.seconds > 0 else 0.0
    log.info(
        "asr (shard %s): %d transcribed (%.0f s of audio, %d words, %.1fx real time), %d already done, "
        "%d failed, in %.1f s -> %s",
        shard, summary.transcribed, summary.audio_seconds, summary.words, speed, summary.skipped,
        summary.failed, summary.seconds, out,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("videobert asr", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
