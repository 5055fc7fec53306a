"""``videobert index MODEL VIDEOS -o INDEX``: segments of any videos, searchable with a model.

Decode, encode (S3D) and tokenize every video of a manifest or a folder exactly as the model's own
videos were (the settings come from the model folder), cut it into segments — the rows of
--segments for it, else its transcript's sentences, else windows of --window clips every --stride —
and give each segment its vector from the model's
dual encoder (videobert distil), in a faiss index: exact while the index is small, inverted lists
beyond --flat-limit segments. Run it again with more videos and only those are added; killed, it
resumes. --shard I/N for job arrays; under torchrun each rank takes its share.
--remove ID ... takes videos out. Search it with videobert retrieve MODEL "query" --index INDEX.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, add_output, add_shard, command, new_parser, report_message, resolve_config
from videobert.errors import ConfigError
from videobert.index import stage
from videobert.runtime import parse_shard


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert index", __doc__)
    parser.add_argument("model", type=Path, nargs="?", metavar="MODEL", help="model folder (videobert pretrain + distil)")
    parser.add_argument("videos", type=Path, nargs="?", metavar="VIDEOS", help="manifest JSONL, or a folder of videos")
    add_output(parser, "INDEX")
    parser.add_argument("--segments", type=Path, metavar="SEGMENTS",
                        help="segments.jsonl (video_id, start, end, sentence): the segments of the videos it lists")
    parser.add_argument("--remove", nargs="+", metavar="VIDEO_ID", help="take these videos out of INDEX (no MODEL, VIDEOS)")
    parser.add_argument("--s3d-weights", type=Path, metavar="PTH",
                        help="the S3D state dict the model's features were extracted with (checked by its sha256)")
    add_shard(parser, "the videos")
    add_config_arguments(parser, stage.IndexConfig)
    return parser


def run(args: argparse.Namespace) -> None:
    if args.remove:
        if args.model is not None or args.videos is not None:
            raise ConfigError("--remove takes video ids and -o INDEX, not MODEL and VIDEOS")
        report(stage.run_remove(args.out, args.remove))
        return
    if args.model is None or args.videos is None:
        raise ConfigError("give MODEL and VIDEOS (or --remove VIDEO_ID ...)")
    cfg = resolve_config(stage.IndexConfig, args)
    report(stage.run(args.model, args.videos, args.out, cfg, shard=parse_shard(args.shard), s3d_weights=args.s3d_weights,
                     segments=args.segments))


report = report_message

main = command("videobert index", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
