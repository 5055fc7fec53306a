"""``videobert vocab FEATURES -o VOCAB``: hierarchical k-means visual vocabulary over clip features."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from pipelines.common import add_config_arguments, new_parser, resolve_config, run_main
from videobert.vocab import VocabConfig
from videobert.vocab_stage import build_vocab

log = logging.getLogger("pipelines.vocab")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "videobert vocab",
        "Build the visual vocabulary: normalise clip features, grow a hierarchical k-means tree with faiss\n"
        "(k children per node, depth levels; the leaves are the visual words) and write codebook.npz,\n"
        "vocab.json (with the quantisation error against flat k-means) and exemplar thumbnails.",
    )
    parser.add_argument("features", type=Path, metavar="FEATURES", help="features folder written by 'videobert extract'")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="VOCAB", help="output folder")
    parser.add_argument(
        "--manifest", type=Path, metavar="MANIFEST",
        help="where the videos are, for exemplar frames (default: the manifest recorded in FEATURES/extract.json)",
    )
    add_config_arguments(parser, VocabConfig)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(VocabConfig, args)
    summary = build_vocab(args.features, args.out, cfg, manifest=args.manifest)
    log.info(
        "%d visual words (per level %s) from %d clips of %d videos -> %s",
        summary["vocab_size"], summary["words_per_level"], summary["sample"]["clips"], summary["sample"]["videos"], args.out,
    )
    print(args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("videobert vocab", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
