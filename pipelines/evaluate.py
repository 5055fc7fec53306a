"""``videobert evaluate RUN --corpus CORPUS [--split test]``: retrieval, alignment and zero-shot
metrics of a trained run, printed as a table and written to ``metrics.json``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from pipelines.common import add_config_arguments, new_parser, resolve_config, run_main
from videobert import config as cfgmod
from videobert.evaluation import EvaluateConfig, default_labels, evaluate, format_report
from videobert.logs import progress
from videobert.store import atomic_write_json, prepare_output_dir

log = logging.getLogger("pipelines.evaluate")

SYNTHETIC_SPEC = Path(__file__).resolve().parent / "configs" / "zeroshot_synthetic.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "videobert evaluate",
        "Evaluate a trained run on a corpus split: text→video and video→text retrieval (R@1/5/10,\n"
        "median and mean rank) over the split's text-video segments, [CLS] alignment accuracy and\n"
        "zero-shot attribute classification, each beside its chance level. Writes metrics.json.",
    )
    parser.add_argument("run", type=Path, metavar="RUN", help="run folder (videobert pretrain)")
    parser.add_argument("--corpus", type=Path, required=True, metavar="CORPUS", help="corpus folder (videobert corpus)")
    parser.add_argument("-o", "--out", type=Path, metavar="OUT", help="output folder (default: RUN/eval-<split>)")
    parser.add_argument("--labels", type=Path, metavar="LABELS",
                        help="labels.jsonl for zero-shot classification (default: labels.jsonl beside the corpus's "
                             "manifest, as videobert synth writes it)")
    parser.add_argument("--zero-shot", type=Path, metavar="SPEC",
                        help=f"zero-shot spec YAML: template, slot and candidate words per attribute "
                             f"(default: {SYNTHETIC_SPEC.name})")
    add_config_arguments(parser, EvaluateConfig)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(EvaluateConfig, args)
    labels = args.labels
    if labels is None:
        labels = default_labels(args.corpus)
        if labels is not None:
            log.info("zero-shot labels: %s", labels)
        else:
            log.info("no labels (--labels): zero-shot classification is skipped")
    spec = args.zero_shot or SYNTHETIC_SPEC
    out = prepare_output_dir(args.out or args.run / f"eval-{cfg.split}")
    cfgmod.save(cfg, out / "config.yaml")
    metrics = evaluate(args.run, args.corpus, cfg, labels=labels, zero_shot_spec=spec,
                       progress=lambda batches: progress(batches, desc="scoring pairs", unit="batch"))
    atomic_write_json(out / "metrics.json", metrics)
    print(format_report(metrics))
    print(f"\nmetrics: {out / 'metrics.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("videobert evaluate", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
