"""``videobert corpus MANIFEST --tokens TOKENS [--transcripts DIR] -o CORPUS``: the aligned training corpus.

Pair each transcript sentence with the visual words of the clips its time span overlaps, and
write train/val/test examples (splits from the manifest) as memory-mapped columnar shards, the
WordPiece tokenizer, the joint text+video vocabulary and summary.json into CORPUS. Videos without
speech give video-only examples of 16 consecutive visual words.

Shards of --videos-per-shard videos are written whole: an interrupted run resumes at the first
shard it had not finished. Several workers build disjoint shards of one folder (--shard I/N for
job arrays, or torchrun ranks); the last one to finish writes summary.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, add_output, add_shard, command, new_parser, note, resolve_config
from videobert.corpus import stage
from videobert.runtime import dist_env, parse_shard
from videobert.store import StageCall, StageSummary


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert corpus", __doc__)
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="manifest.jsonl or a folder of videos")
    parser.add_argument("--tokens", type=Path, required=True, metavar="TOKENS", help="output folder of 'videobert tokenize'")
    parser.add_argument("--transcripts", type=Path, default=None, metavar="DIR",
                        help="transcripts (<video_id>.vtt, e.g. from 'videobert asr') for videos the manifest gives none")
    add_output(parser, "CORPUS")
    add_shard(parser, "the shards")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete what the folder holds of an earlier corpus and build it afresh")
    add_config_arguments(parser, stage.CorpusConfig)
    return parser


def argv(call: StageCall) -> list[str]:
    """The command line of videobert run's corpus stage."""
    transcripts = call.options.get("transcripts_dir")
    return [str(call.inputs["manifest"]), "--tokens", str(call.inputs["tokens_dir"]), "-o", str(call.out_dir),
            "--config", str(call.config_file), *(["--transcripts", str(transcripts)] if transcripts else [])]


def run(args: argparse.Namespace) -> None:
    cfg = resolve_config(stage.CorpusConfig, args)
    report(stage.run(args.manifest, args.tokens, args.out, cfg, transcripts_dir=args.transcripts,
                     shard=parse_shard(args.shard), overwrite=args.overwrite))


def report(summary: StageSummary) -> None:
    env = dist_env()
    if env.is_main or not env.has_rendezvous:  # under torchrun, rank 0 speaks for all
        note("%s -> %s", summary.message, summary.out_dir)


main = command("videobert corpus", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
