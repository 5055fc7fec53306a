"""``videobert pretrain CORPUS --vocab VOCAB -o RUN``: train VideoBERT (also under torchrun)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from pipelines.common import add_config_arguments, new_parser, resolve_config, run_main
from videobert.distributed import dist_env
from videobert.train import PretrainConfig, load_centroids, pretrain
from videobert.vocabulary import JointVocabulary

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
                             "embeddings (default: the one the corpus was built with, if it is still there; "
                             "without any they start random)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in RUN")
    add_config_arguments(parser, PretrainConfig)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(PretrainConfig, args)
    main_process = dist_env().is_main
    if not main_process:  # under torchrun, rank 0 speaks for all
        for name in ("videobert", "pipelines"):
            logging.getLogger(name).setLevel(logging.ERROR)
    vocab_dir = args.vocab
    if vocab_dir is None:
        recorded = JointVocabulary.load(args.corpus).visual_vocab
        if recorded and (Path(recorded) / "codebook.npz").exists():
            vocab_dir = Path(recorded)
            log.info("visual-word embeddings from %s, the vocabulary the corpus was built with", vocab_dir)
        else:
            log.warning("no --vocab: visual-word embeddings start random instead of from the codebook centroids")
    centroids = load_centroids(vocab_dir) if vocab_dir is not None else None
    summary = pretrain(args.corpus, args.out, cfg, centroids=centroids,
                       visual_vocab=str(vocab_dir) if vocab_dir else None, resume=args.resume)
    if summary.get("val"):
        log.info("validation: %s", ", ".join(f"{k} {v:.3f}" for k, v in summary["val"].items()))
    if main_process:
        print(args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("videobert pretrain", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
