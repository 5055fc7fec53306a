"""``videobert pretrain CORPUS --vocab VOCAB -o RUN``: train VideoBERT (also under torchrun).

Pretrain VideoBERT on a corpus folder: text-only masked language modelling, video-only masked
visual words and [CLS] text-video alignment. Checkpoints every --save-every steps; --resume
continues after an interruption. Multi-GPU / multi-node: torchrun ... -m pipelines.pretrain ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, add_output, command, errors_only, new_parser, note, resolve_config, say
from videobert.pretrain import stage
from videobert.runtime import dist_env
from videobert.store import StageCall, StageSummary


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert pretrain", __doc__)
    parser.add_argument("corpus", type=Path, metavar="CORPUS", help="corpus folder (videobert corpus)")
    add_output(parser, "RUN", "run folder")
    parser.add_argument("--vocab", type=Path, metavar="VOCAB",
                        help="visual vocabulary folder (videobert vocab): its centroids initialise the visual-word "
                             "embeddings (default: the one the corpus was built with, if it is still there; "
                             "without any they start random)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in RUN")
    add_config_arguments(parser, stage.PretrainConfig)
    return parser


def argv(call: StageCall) -> list[str]:
    """The command line of videobert run's pretrain stage."""
    return [str(call.inputs["corpus_dir"]), "--vocab", str(call.options["vocab_dir"]), "-o", str(call.out_dir),
            "--config", str(call.config_file), *(["--resume"] if call.options.get("resume") else [])]


def run(args: argparse.Namespace) -> None:
    cfg = resolve_config(stage.PretrainConfig, args)
    if not dist_env().is_main:  # under torchrun, rank 0 speaks for all
        errors_only()
    report(stage.run(args.corpus, args.out, cfg, vocab_dir=args.vocab, resume=args.resume))


def report(summary: StageSummary) -> None:
    if summary.details.get("val"):
        note("%s", summary.message)
    if dist_env().is_main:
        say(summary.out_dir)


main = command("videobert pretrain", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
