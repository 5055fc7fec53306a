"""``videobert tokenize FEATURES --vocab VOCAB -o TOKENS``: every clip -> its visual word."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from pipelines.common import add_config_arguments, new_parser, resolve_config, run_main
from videobert.distributed import parse_shard
from videobert.vocab import TokenizeConfig
from videobert.vocab_stage import tokenize_folder

log = logging.getLogger("pipelines.tokenize")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "videobert tokenize",
        "Assign every clip its visual word by descending the vocabulary's tree; writes TOKENS/<video_id>.npy\n"
        "(int32 [n_clips]) and tokens.json. Resumable (valid outputs are skipped) and shardable: --shard I/N\n"
        "for job arrays, and under torchrun each rank takes its share.",
    )
    parser.add_argument("features", type=Path, metavar="FEATURES", help="features folder written by 'videobert extract'")
    parser.add_argument("--vocab", type=Path, required=True, metavar="VOCAB", help="vocabulary folder written by 'videobert vocab'")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="TOKENS", help="output folder")
    parser.add_argument("--shard", metavar="I/N", help="process only share I of N (0-based) of the videos")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="retokenize every video, also when TOKENS holds tokens of another vocabulary",
    )
    add_config_arguments(parser, TokenizeConfig)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(TokenizeConfig, args)
    shard = parse_shard(args.shard)
    summary = tokenize_folder(args.features, args.vocab, args.out, cfg, shard=shard, overwrite=args.overwrite)
    rate = summary["clips"] / summary["seconds"] if summary["seconds"] > 0 else 0.0
    log.info(
        "%d videos: %d tokenized (%d clips, %.0f clips/s), %d already done, %d failed in %.1f s -> %s",
        summary["videos"], summary["tokenized"], summary["clips"], rate, summary["skipped"],
        summary["failed"], summary["seconds"], args.out,
    )
    print(args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("videobert tokenize", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
