"""``videobert asr MANIFEST -o TRANSCRIPTS``: speech recognition for videos without a transcript.

Transcribe the speech of each video (ffmpeg audio -> pocketsphinx or whisper -> sentences with
word timings) into TRANSCRIPTS/<video_id>.vtt. Videos already transcribed are skipped; videos
without an audio stream are recorded in failures.jsonl. Use the folder as 'videobert corpus
--transcripts TRANSCRIPTS'.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, add_output, add_shard, command, new_parser, note, resolve_config
from videobert.runtime import parse_shard
from videobert.store import StageCall, StageSummary
from videobert.text import stage


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert asr", __doc__)
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="manifest.jsonl or a folder of videos")
    add_output(parser, "TRANSCRIPTS")
    add_shard(parser, "the videos")
    parser.add_argument("--all", action="store_true",
                        help="also transcribe videos that the manifest gives a transcript (by default they are left out)")
    add_config_arguments(parser, stage.AsrConfig)
    return parser


def argv(call: StageCall) -> list[str]:
    """The command line of videobert run's asr stage."""
    return [str(call.inputs["manifest"]), "-o", str(call.out_dir), "--config", str(call.config_file)]


def run(args: argparse.Namespace) -> None:
    report(stage.run(args.manifest, args.out, resolve_config(stage.AsrConfig, args), shard=parse_shard(args.shard),
                     all_videos=args.all))


def report(summary: StageSummary) -> None:
    note("%s -> %s", summary.message, summary.out_dir)


main = command("videobert asr", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
