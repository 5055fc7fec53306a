"""The demo's pipeline for several seeds: does the learning hold, or was one seed lucky?

    python bench/demo_seeds.py --out runs/seeds                 # seeds 0-4, the packaged demo config
    python bench/demo_seeds.py --out runs/seeds --seeds 0,1 --set pretrain.steps=4000

Each seed S runs ``videobert demo`` with ``synth.seed=S`` (another synthetic corpus: other videos,
narrations and splits) and ``pretrain.seed=S`` (another initialisation, data order and masks) into
OUT/seed-S; a rerun skips the stages that are done, as the demo does. Printed per seed: the
held-out metrics of ``metrics.json`` — alignment accuracy, text→video R@5 against chance, zero-shot
colour, action and shape top-1 — and the stages' wall time; then their mean and minimum, each
beside the demo's bar (alignment >= 0.75, R@5 >= 3x chance, colour >= 0.5, action >= 0.35).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.common import torchrun_launcher  # noqa: E402
from pipelines.demo import DEMO_CONFIG  # noqa: E402
from videobert.logs import setup_logging  # noqa: E402
from videobert.runner import Runner, load_run_config  # noqa: E402
from videobert.runtime import cpu_name  # noqa: E402

# (name, how to read it from metrics.json, the bar it must clear, how the bar is computed)
COLUMNS = [
    ("align", lambda m: m["align_accuracy"], lambda m: 0.75),
    ("R@5/chance", lambda m: m["t2v"]["r5"] / m["t2v"]["chance_r5"], lambda m: 3.0),
    ("colour", lambda m: m["zero_shot"]["colour"]["top1"], lambda m: 0.5),
    ("action", lambda m: m["zero_shot"]["action"]["top1"], lambda m: 0.35),
    ("shape", lambda m: m["zero_shot"]["shape"]["top1"], lambda m: m["zero_shot"]["shape"]["chance_top1"]),
]


def run_seed(seed: int, out: Path, config: Path, assignments: list[str]) -> tuple[dict, dict[str, float]]:
    cfg = load_run_config(config, [f"synth.seed={seed}", f"pretrain.seed={seed}", *assignments])
    runner = Runner(cfg, out / f"seed-{seed}", torchrun_launcher([]))
    results = runner.run()
    metrics = json.loads((runner.folder("evaluate") / "metrics.json").read_text())
    state = json.loads(runner.state_path.read_text())["stages"]
    seconds = {r.name: state[r.name]["seconds"] for r in results if r.name in state}
    return metrics, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the seeds' run folders")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a demo config key")
    args = parser.parse_args()
    setup_logging()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"# demo over seeds {seeds}, {datetime.date.today()}; {cpu_name()}; config {args.config.name} {args.set}")
    rows = []
    for seed in seeds:
        began = time.perf_counter()
        metrics, seconds = run_seed(seed, args.out, args.config, args.set)
        values = [read(metrics) for _, read, _ in COLUMNS]
        bars = [bar(metrics) for _, _, bar in COLUMNS]
        rows.append((seed, values, bars, seconds, time.perf_counter() - began))
    header = f"{'seed':>4}  " + "  ".join(f"{name:>10}" for name, _, _ in COLUMNS) + "  held  stage seconds (extract, pretrain, all)"
    print(header)
    for seed, values, bars, seconds, _ in rows:
        held = all(v >= b for v, b in list(zip(values, bars))[:4])
        total = sum(seconds.values())
        print(f"{seed:>4}  " + "  ".join(f"{v:>10.3f}" for v in values)
              + f"  {'yes' if held else 'NO':>4}  {seconds.get('extract', 0):.0f}, {seconds.get('pretrain', 0):.0f}, {total:.0f}")
    for label, pick in (("mean", lambda column: sum(column) / len(column)), ("min", min)):
        print(f"{label:>4}  " + "  ".join(f"{pick([r[1][i] for r in rows]):>10.3f}" for i in range(len(COLUMNS))))
    print(" bar  " + "  ".join(f"{rows[0][2][i]:>10.3f}" for i in range(len(COLUMNS)))
          + "   (shape: its chance; the bars of alignment, R@5, colour and action are the demo's)")


if __name__ == "__main__":
    main()
