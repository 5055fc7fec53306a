"""``videobert vocab FEATURES -o VOCAB``: hierarchical k-means visual vocabulary over clip features.

Build the visual vocabulary: normalise clip features, grow a hierarchical k-means tree with faiss
(k children per node, depth levels; the leaves are the visual words) and write codebook.npz,
vocab.json (with the quantisation error against flat k-means) and exemplar thumbnails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, add_output, command, new_parser, report_folder, resolve_config
from videobert.store import StageCall
from videobert.vocab import stage


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert vocab", __doc__)
    parser.add_argument("features", type=Path, metavar="FEATURES", help="features folder written by 'videobert extract'")
    add_output(parser, "VOCAB")
    parser.add_argument("--manifest", type=Path, metavar="MANIFEST",
                        help="where the videos are, for exemplar frames (default: the manifest recorded in "
                             "FEATURES/extract.json)")
    add_config_arguments(parser, stage.VocabConfig)
    return parser


def argv(call: StageCall) -> list[str]:
    """The command line of videobert run's vocab stage."""
    return [str(call.inputs["features_dir"]), "-o", str(call.out_dir), "--manifest", str(call.options["manifest"]),
            "--config", str(call.config_file)]


def run(args: argparse.Namespace) -> None:
    report(stage.run(args.features, args.out, resolve_config(stage.VocabConfig, args), manifest=args.manifest))


report = report_folder

main = command("videobert vocab", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
