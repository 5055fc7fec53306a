"""``videobert embed RUN --segments SEGMENTS --tokens TOKENS [--features FEATURES] -o EMB``: VideoBERT features per segment.

The paper's features for downstream tasks (§4.3): each annotated segment's visual words are run
through the model behind a fill-in-the-blank sentence ("now let's [MASK] the [MASK] to the [MASK],
and then [MASK] the [MASK]"), and the final states of the video tokens and of the masked text tokens
are averaged; with --features the segment's mean S3D feature is appended. Writes, per split,
EMB/<split>.npy (float16, one row per segment) and EMB/<split>.jsonl (video_id, start, end,
sentence of each row), and EMB/embed.json (the parts of a row, the model, the template).

Resumable (finished chunks of segments are kept) and shardable: --shard I/N for job arrays, and
under torchrun each rank takes its share; the worker that finds every chunk done merges them.
Segments whose video has no visual words, or that cover no clip, are left out and listed in
EMB/failures.jsonl with their line of SEGMENTS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, add_output, add_shard, command, new_parser, report_message, resolve_config
from videobert.embed import stage
from videobert.runtime import parse_shard
from videobert.store import StageCall


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert embed", __doc__)
    parser.add_argument("run", type=Path, metavar="RUN", help="model folder (videobert pretrain)")
    parser.add_argument("--segments", type=Path, required=True, metavar="SEGMENTS",
                        help="segments.jsonl (video_id, start, end, sentence, split): videobert prepare or synth")
    parser.add_argument("--tokens", type=Path, required=True, metavar="TOKENS",
                        help="the visual words of the segments' videos (videobert tokenize with the model's vocabulary)")
    parser.add_argument("--features", type=Path, metavar="FEATURES",
                        help="the S3D features TOKENS was made from: appends each segment's mean feature")
    add_output(parser, "EMB")
    add_shard(parser, "the chunks")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in an EMB folder that holds embeddings made otherwise")
    add_config_arguments(parser, stage.EmbedConfig)
    return parser


def argv(call: StageCall) -> list[str]:
    """The command line of videobert run's embed stage (run under torchrun)."""
    features = call.options.get("features")
    return [str(call.inputs["model_dir"]), "--segments", str(call.inputs["segments"]), "--tokens",
            str(call.inputs["tokens"]), "-o", str(call.out_dir), "--config", str(call.config_file),
            *(["--features", str(features)] if features else [])]


def run(args: argparse.Namespace) -> None:
    cfg = resolve_config(stage.EmbedConfig, args)
    report(stage.run(args.run, args.segments, args.tokens, args.out, cfg, features=args.features,
                     overwrite=args.overwrite, shard=parse_shard(args.shard)))


report = report_message

main = command("videobert embed", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
