"""``videobert prepare {youcook2,msrvtt} ROOT -o DATA``: a benchmark as distributed, ready for the pipeline.

Read the benchmark's annotation files and videos as they are distributed (nothing is downloaded):

  youcook2  ROOT/youcookii_annotations_trainval.json and ROOT/raw_videos/<subset>/<recipe_type>/<id>.{mp4,mkv,webm}
            (training -> train, validation -> test)
  msrvtt    ROOT/MSRVTT_data.json, ROOT/MSRVTT_JSFUSION_test.csv and ROOT/videos/all/<video_id>.mp4
            (--videos DIR for another folder; the 1 000 JSFusion 1k-A pairs -> test, the other videos with
            their 20 captions -> train)

and write DATA/manifest.jsonl, DATA/segments.jsonl, DATA/missing.jsonl (videos missing, unreadable or
shorter than their segments, with the reason) and DATA/benchmark.json; for YouCook II also the zero-shot
inputs of the paper's protocol, DATA/labels.jsonl (verb and object of each test segment) and
DATA/zeroshot.yaml. Then extract and tokenize DATA/manifest.jsonl, and evaluate a model with
videobert evaluate MODEL --segments DATA/segments.jsonl --tokens TOKENS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, add_output, command, new_parser, resolve_config, say
from videobert.benchmarks import stage


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert prepare", __doc__)
    parser.add_argument("benchmark", choices=["youcook2", "msrvtt"], help="which benchmark ROOT holds")
    parser.add_argument("root", type=Path, metavar="ROOT", help="the benchmark's files, as distributed")
    add_output(parser, "DATA")
    parser.add_argument("--verbs", type=Path, metavar="FILE",
                        help="YouCook II: verb list (one a line) replacing the part-of-speech tagger (with --objects)")
    parser.add_argument("--objects", type=Path, metavar="FILE", help="YouCook II: object list (with --verbs)")
    parser.add_argument("--videos", type=Path, metavar="DIR", help="MSR-VTT: the videos' folder (default ROOT/videos/all)")
    add_config_arguments(parser, stage.PrepareConfig)
    return parser


def run(args: argparse.Namespace) -> None:
    cfg = resolve_config(stage.PrepareConfig, args)
    summary = stage.run(args.benchmark, args.root, args.out, cfg, verbs=args.verbs, objects=args.objects,
                        videos_dir=args.videos)
    say(summary.message)


main = command("videobert prepare", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
