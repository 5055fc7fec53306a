"""``videobert synth OUT --videos N --seed S [--audio]``: the synthetic narrated-video corpus.

Generate a deterministic synthetic 'how-to' corpus: H.264 videos of coloured shapes performing
actions, ASR-style WebVTT narration, manifest.jsonl (with train/val/test splits), labels.jsonl and the zeroshot.yaml that classifies them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, command, new_parser, note, resolve_config, say
from videobert.store import StageCall, StageSummary
from videobert.synthetic import stage


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert synth", __doc__)
    parser.add_argument("out", type=Path, metavar="OUT", help="output folder")
    add_config_arguments(parser, stage.SynthConfig)
    return parser


def argv(call: StageCall) -> list[str]:
    """The command line of videobert run's synth stage."""
    return [str(call.out_dir), "--config", str(call.config_file)]


def run(args: argparse.Namespace) -> None:
    report(stage.run(args.out, resolve_config(stage.SynthConfig, args)))


def report(summary: StageSummary) -> None:
    note("%s -> %s", summary.message, summary.out_dir)
    say(summary.details["manifest"])


main = command("videobert synth", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
