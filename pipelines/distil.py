"""``videobert distil MODEL --corpus CORPUS``: a dual encoder for fast search, distilled from the model.

Train a text tower and a video tower (each a copy of the model's encoder, each giving one unit
vector) on the corpus's train split so that a dot product ranks as the model's alignment head does:
a contrastive loss over the in-batch pairs plus the KL to the model's own scores of those pairs.
Writes MODEL/dual (the towers, dual.json with the val figures and the first-stage K chosen there)
and MODEL/test_index (the corpus's test segments, searchable). Checkpoints every --save-every
steps; --resume continues after an interruption. Multi-GPU: torchrun ... -m pipelines.distil ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, command, errors_only, new_parser, report_message, resolve_config
from videobert.distil import stage
from videobert.runtime import dist_env
from videobert.store import StageCall


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert distil", __doc__)
    parser.add_argument("model", type=Path, metavar="MODEL", help="model folder (videobert pretrain)")
    parser.add_argument("--corpus", type=Path, required=True, metavar="CORPUS",
                        help="corpus folder the model was trained on (videobert corpus): its train, val and test splits")
    parser.add_argument("-o", "--out", type=Path, metavar="DUAL", help="output folder (default: MODEL/dual)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the output folder")
    add_config_arguments(parser, stage.DistilConfig)
    return parser


def argv(call: StageCall) -> list[str]:
    """The command line of videobert run's distil stage."""
    return [str(call.inputs["model_dir"]), "--corpus", str(call.inputs["corpus_dir"]), "-o", str(call.out_dir),
            "--config", str(call.config_file), *(["--resume"] if call.options.get("resume") else [])]


def run(args: argparse.Namespace) -> None:
    cfg = resolve_config(stage.DistilConfig, args)
    if not dist_env().is_main:  # under torchrun, rank 0 speaks for all
        errors_only()
    report(stage.run(args.model, args.corpus, cfg, resume=args.resume, out_dir=args.out))


report = report_message

main = command("videobert distil", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
