"""``videobert extract MANIFEST -o FEATURES``: S3D features of 1.5 s clips, one .npy per video.

Decode each video (ffmpeg, or torchcodec: --decoder) at --fps, cut it into non-overlapping clips of --clip-frames frames
(clip i covers [i*clip_frames/fps, (i+1)*clip_frames/fps); a trailing partial clip is dropped) and
write the 1024-d S3D feature of every clip to FEATURES/<video_id>.npy (float16 [n_clips, 1024]).
Rerunning skips finished videos; failed videos are listed in FEATURES/failures.jsonl.
Multi-GPU: torchrun --nproc-per-node G -m pipelines.extract MANIFEST -o FEATURES
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, add_output, add_shard, command, new_parser, report_message, resolve_config
from videobert.features import stage
from videobert.runtime import parse_shard
from videobert.store import StageCall


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert extract", __doc__)
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="manifest JSONL, or a folder of videos")
    add_output(parser, "FEATURES")
    add_shard(parser, "the videos")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the folder's features first and extract everything again (needed to change fps, "
                             "clip-frames, size, weights or precision of an existing folder)")
    add_config_arguments(parser, stage.ExtractConfig)
    return parser


def argv(call: StageCall) -> list[str]:
    """The command line of videobert run's extract stage."""
    return [str(call.inputs["manifest"]), "-o", str(call.out_dir), "--config", str(call.config_file)]


def run(args: argparse.Namespace) -> None:
    cfg = resolve_config(stage.ExtractConfig, args)
    report(stage.run(args.manifest, args.out, cfg, shard=parse_shard(args.shard), overwrite=args.overwrite))


report = report_message

main = command("videobert extract", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
