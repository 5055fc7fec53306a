"""``videobert pretrain CORPUS --vocab VOCAB -o RUN``: train VideoBERT (also under torchrun)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from pipelines.common import add_config_arguments, new_parser, resolve_config, run_main
from videobert.train import PretrainConfig, load_centroids, pretrain

log = logging.getLogger("pipelines.pretrain")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "videobert pretrain",
        "Pretrain VideoBERT on a corpus folder: text-only masked language modelling, video-only masked\n"
        "visual words and [CLS] text-video alignment. Checkpoints every --save-every steps; --resume\n"
        "continues after an interruption. Multi-GPU / multi-node: torchrun ... -m pipelines.pretrain ...",
    )
    parser.add_argument("corpus", type=Path, metavar="CORPUS", help="corpus folder (videobert corpus)")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="RUN", help="run folder")
    parser.add_argument("--vocab", type=Path, metavar="VOCAB",
                        help="visual vocabulary folder (videobert vocab): its centroids initialise the visual-word "
                             "embeddings (without it they start random)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in RUN")
    add_config_arguments(parser, PretrainConfig)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(PretrainConfig, args)
    centroids = None
    if args.vocab is not None:
        centroids = load_centroids(args.vocab)
    else:
        log.warning("no --vocab: visual-word embeddings start random instead of from the codebook centroids")
    summary = pretrain(args.corpus, args.out, cfg, centroids=centroids,
                       visual_vocab=str(args.vocab) if args.vocab else None, resume=args.resume)
    if summary.get("val"):
        log.info("validation: %s", ", ".join(f"{k} {v:.3f}" for k, v in summary["val"].items()))
    print(args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("videobert pretrain", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
