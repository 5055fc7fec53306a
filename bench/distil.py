"""Distillation settings compared on the val split: what each choice of ``videobert distil`` buys.

    python bench/distil.py --model runs/demo/model --corpus runs/demo/corpus \\
        --try "distil_weight=0" --try "distil_weight=0.5" --try "distil_weight=0.5,shared=false"

Each ``--try`` is a comma-separated list of ``videobert distil`` settings (over ``--base``), trained
into a folder of its own under ``--out`` (the model folder is not touched). Printed per setting,
all on the ``val_split`` (default val) — the split the settings are chosen on; the test split is
never read here: the dual encoder's own text→video R@1/5/10, the first stage's recall of the true
segment at K = 16, two-stage text→video R@5 at K = 16 beside the cross-encoder's exhaustive R@5,
the K the rule picks, and the seconds it trained; chance beside them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videobert import config as cfgmod  # noqa: E402
from videobert.distil.stage import DistilConfig, run  # noqa: E402
from videobert.logs import set_progress, setup_logging  # noqa: E402
from videobert.runtime import cpu_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model folder (videobert pretrain)")
    parser.add_argument("--corpus", type=Path, required=True, help="the corpus it was trained on")
    parser.add_argument("--base", default="", help="settings every try starts from, e.g. steps=300,batch_size=16")
    parser.add_argument("--try", dest="tries", action="append", default=[], help="settings of one try (repeatable)")
    parser.add_argument("--out", type=Path, help="where the tries' dual encoders go (default: a temporary folder)")
    args = parser.parse_args()
    setup_logging()
    set_progress(False)
    out = args.out or Path(tempfile.mkdtemp(prefix="distil-bench-"))
    print(f"machine: {cpu_name()}; model {args.model}; corpus {args.corpus}; base: {args.base or '(defaults)'}")
    print(f"{'settings':<44}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'rec@16':>8}{'2st R@5':>9}{'exh R@5':>9}{'K':>5}{'s':>7}")
    for number, setting in enumerate(args.tries or [""]):
        assignments = [a for a in (args.base + "," + setting).split(",") if a.strip()]
        cfg = cfgmod.load(DistilConfig, assignments=assignments)
        began = time.perf_counter()
        summary = run(args.model, args.corpus, cfg, out_dir=out / f"try-{number}").details
        seconds = time.perf_counter() - began
        dual, chosen = summary["dual"]["t2v"], summary["two_stage"].get("16") or summary["two_stage"][str(summary["k"])]
        print(f"{setting or '(base)':<44}{dual['r1']:>7.3f}{dual['r5']:>7.3f}{dual['r10']:>7.3f}"
              f"{chosen['first_stage_recall']['t2v']:>8.3f}{chosen['t2v']['r5']:>9.3f}"
              f"{summary['exhaustive']['t2v']['r5']:>9.3f}{summary['k']:>5}{seconds:>7.0f}", flush=True)
    print(f"chance ({summary['split']} split, {summary['gallery']} segments): R@1 {dual['chance_r1']:.3f}, "
          f"R@5 {dual['chance_r5']:.3f}, R@10 {dual['chance_r10']:.3f}, recall@16 {min(16, summary['gallery']) / summary['gallery']:.3f}")


if __name__ == "__main__":
    main()
