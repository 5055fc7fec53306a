"""``videobert index MODEL VIDEOS -o INDEX``: the visual words of any videos, for search.

Decode, encode (S3D) and tokenize every video of a manifest or a folder exactly as the model's own
videos were — the settings come from the model folder (features.json, visual_vocab/) — and write
INDEX/words/<video_id>.npy and index.json. Resumable (finished videos are skipped) and shardable
like extract: --shard I/N for job arrays; under torchrun each rank takes its share. Search it with
videobert retrieve MODEL "query" --index INDEX.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, add_output, add_shard, command, new_parser, report_message, resolve_config
from videobert.index import stage
from videobert.runtime import parse_shard


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert index", __doc__)
    parser.add_argument("model", type=Path, metavar="MODEL", help="model folder (videobert pretrain)")
    parser.add_argument("videos", type=Path, metavar="VIDEOS", help="manifest JSONL, or a folder of videos")
    add_output(parser, "INDEX")
    parser.add_argument("--s3d-weights", type=Path, metavar="PTH",
                        help="the S3D state dict the model's features were extracted with (checked by its sha256)")
    add_shard(parser, "the videos")
    add_config_arguments(parser, stage.IndexConfig)
    return parser


def run(args: argparse.Namespace) -> None:
    cfg = resolve_config(stage.IndexConfig, args)
    report(stage.run(args.model, args.videos, args.out, cfg, shard=parse_shard(args.shard), s3d_weights=args.s3d_weights))


report = report_message

main = command("videobert index", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
