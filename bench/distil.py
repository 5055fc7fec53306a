"""Distillation settings compared on the val split: what each choice of ``videobert distil`` buys.

    python bench/distil.py --model runs/demo/model --corpus runs/demo/corpus \\
        --try "distil_weight=0" --try "distil_weight=0.5" --try "distil_weight=0.5,shared=false"

Each ``--try`` is a comma-separated list of ``videobert distil`` settings (over ``--base``), trained
once per ``--seeds`` seed (the seed of the projections, the batches and dropout) into a folder of
its own under ``--out`` (the model folder is not touched). Printed per setting, the mean over seeds
(± their standard deviation where there are several),
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

import numpy as np

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
    parser.add_argument("--seeds", default="0", help="distil seeds each try is trained with, e.g. 0,1,2")
    args = parser.parse_args()
    setup_logging()
    set_progress(False)
    out = args.out or Path(tempfile.mkdtemp(prefix="distil-bench-"))
    print(f"machine: {cpu_name()}; model {args.model}; corpus {args.corpus}; base: {args.base or '(defaults)'}")
    seeds = [int(x) for x in args.seeds.split(",")]
    print(f"seeds {seeds}")
    print(f"{'settings':<40}{'R@1':>13}{'R@5':>13}{'R@10':>13}{'rec@16':>13}{'2st R@5':>13}{'exh R@5':>8}{'K':>7}{'s':>6}")

    def cell(values) -> str:
        values = np.asarray(values, float)
        return f"{values.mean():.3f}" + (f"±{values.std(ddof=1):.3f}" if values.size > 1 else "      ")

    for number, setting in enumerate(args.tries or [""]):
        rows = []
        for seed in seeds:
            assignments = [a for a in (args.base + "," + setting).split(",") if a.strip()] + [f"seed={seed}"]
            cfg = cfgmod.load(DistilConfig, assignments=assignments)
            began = time.perf_counter()
            summary = run(args.model, args.corpus, cfg, out_dir=out / f"try-{number}-seed-{seed}").details
            dual = summary["dual"]["t2v"]
            chosen = summary["two_stage"].get("16") or summary["two_stage"][str(summary["k"])]
            rows.append([dual["r1"], dual["r5"], dual["r10"], chosen["first_stage_recall"]["t2v"], chosen["t2v"]["r5"],
                         summary["exhaustive"]["t2v"]["r5"], summary["k"], time.perf_counter() - began])
        rows = np.array(rows)
        print(f"{setting or '(base)':<40}" + "".join(f"{cell(rows[:, i]):>13}" for i in range(5))
              + f"{rows[0, 5]:>8.3f}{'/'.join(str(int(k)) for k in rows[:, 6]):>7}{rows[:, 7].mean():>6.0f}", flush=True)
    print(f"chance ({summary['split']} split, {summary['gallery']} segments): R@1 {dual['chance_r1']:.3f}, "
          f"R@5 {dual['chance_r5']:.3f}, R@10 {dual['chance_r10']:.3f}, recall@16 {min(16, summary['gallery']) / summary['gallery']:.3f}")


if __name__ == "__main__":
    main()
