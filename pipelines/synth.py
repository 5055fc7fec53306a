"""``videobert synth OUT --videos N --seed S [--audio]``: the synthetic narrated-video corpus."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from pipelines.common import add_config_arguments, new_parser, resolve_config, run_main
from videobert import config as cfgmod
from videobert.logs import progress
from videobert.store import prepare_output_dir
from videobert.synthetic import SynthConfig, generate

log = logging.getLogger("pipelines.synth")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "videobert synth",
        "Generate a deterministic synthetic 'how-to' corpus: H.264 videos of coloured shapes performing\n"
        "actions, ASR-style WebVTT narration, manifest.jsonl (with train/val/test splits) and labels.jsonl.",
    )
    parser.add_argument("out", type=Path, metavar="OUT", help="output folder")
    add_config_arguments(parser, SynthConfig)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(SynthConfig, args)
    out = prepare_output_dir(args.out)
    cfgmod.save(cfg, out / "config.yaml")
    began = time.perf_counter()
    plans = generate(cfg, out, progress=lambda it, total: progress(it, total=total, desc="synth", unit="video"))
    seconds = sum(p.duration for p in plans)
    log.info(
        "%d videos (%.0f s of video, %d segments) in %.1f s -> %s",
        len(plans), seconds, sum(len(p.segments) for p in plans), time.perf_counter() - began, out,
    )
    print(out / "manifest.jsonl")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("videobert synth", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
