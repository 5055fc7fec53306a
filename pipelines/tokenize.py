"""``videobert tokenize FEATURES --vocab VOCAB -o TOKENS``: every clip -> its visual word.

Assign every clip its visual word by descending the vocabulary's tree; writes TOKENS/<video_id>.npy
(int32 [n_clips]) and tokens.json. Resumable (valid outputs are skipped) and shardable: --shard I/N
for job arrays, and under torchrun each rank takes its share.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, add_output, add_shard, command, new_parser, report_folder, resolve_config
from videobert.runtime import parse_shard
from videobert.store import StageCall
from videobert.vocab import stage


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert tokenize", __doc__)
    parser.add_argument("features", type=Path, metavar="FEATURES", help="features folder written by 'videobert extract'")
    parser.add_argument("--vocab", type=Path, required=True, metavar="VOCAB", help="vocabulary folder written by 'videobert vocab'")
    add_output(parser, "TOKENS")
    add_shard(parser, "the videos")
    parser.add_argument("--overwrite", action="store_true",
                        help="retokenize every video, also when TOKENS holds tokens of another vocabulary")
    add_config_arguments(parser, stage.TokenizeConfig)
    return parser


def argv(call: StageCall) -> list[str]:
    """The command line of videobert run's tokenize stage."""
    return [str(call.inputs["features_dir"]), "--vocab", str(call.inputs["vocab_dir"]), "-o", str(call.out_dir),
            "--config", str(call.config_file)]


def run(args: argparse.Namespace) -> None:
    cfg = resolve_config(stage.TokenizeConfig, args)
    report(stage.run_tokenize(args.features, args.vocab, args.out, cfg, shard=parse_shard(args.shard),
                              overwrite=args.overwrite))


report = report_folder

main = command("videobert tokenize", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
