"""The demo's pipeline on several seeds, read on the test split once: the figures the demo reports.

    python bench/demo_seeds.py --out runs/seeds --seeds 11,23,37,41,53     # the seeds BENCHMARKS.md names
    python bench/demo_seeds.py --out runs/seeds --seeds 0,1 --set pretrain.steps=4000

Each seed S runs the demo's pipeline (``videobert demo``'s config) with ``synth.seed=S`` (another
synthetic corpus: other videos, narrations and splits) and ``pretrain.seed=S`` (another
initialisation, data order and masks) into OUT/seed-S; a rerun skips the stages that are done, as
the demo does. The settings are chosen on the val split beforehand (``bench/demo_choices.py``);
the seeds that report are named before any of them is run, and their test figures are what
BENCHMARKS.md publishes — not a table to choose from.

Printed, as Markdown tables to paste: the machine (lscpu's model name, cores), the date and the load
average around the runs (a shared machine says so); per seed every bar of the config's ``bars:``
section (alignment, text→video R@5 / chance, zero-shot top-1 per attribute, the captioner against
its baselines on CIDEr, forecasting log-loss against the bigram's) with held or MISSED, zero-shot
shape beside its chance; the captioners' CIDEr and BLEU-4 beside the nearest-neighbour and consensus
captions of the same features; forecasting top-1, top-5 and log-loss with the margins over the
bigram and their 95 % intervals; and the wall time of each seed's run with its extract and pretrain
stages. A JSON copy of everything goes to OUT/seeds.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.common import torchrun_launcher  # noqa: E402
from pipelines.demo import DEMO_CONFIG  # noqa: E402
from videobert.logs import setup_logging  # noqa: E402
from videobert.runner import Runner, load_run_config  # noqa: E402
from videobert.runtime import cpu_name  # noqa: E402


def read_metrics(runner: Runner, stage: str) -> dict | None:
    path = runner.folder(stage) / "metrics.json"
    return json.loads(path.read_text()) if runner.enabled(stage) and path.is_file() else None


def run_seed(seed: int, out: Path, config: Path, assignments: list[str]) -> dict:
    """Run (or finish) one seed's demo; its figures, bars and times."""
    cfg = load_run_config(config, [f"synth.seed={seed}", f"pretrain.seed={seed}", *assignments])
    runner = Runner(cfg, out / f"seed-{seed}", torchrun_launcher([]))
    load_before = os.getloadavg()
    began = time.perf_counter()
    results = runner.run()
    wall = time.perf_counter() - began
    state = json.loads(runner.state_path.read_text())["stages"]
    seconds = {r.name: state[r.name]["seconds"] for r in results if r.name in state}
    ran = [r.name for r in results if r.status == "ran"]
    return {
        "seed": seed, "wall_s": round(wall, 1), "stage_seconds": seconds, "stages_run": ran,
        "load_before": load_before, "load_after": os.getloadavg(),
        "bars": [vars(b) for b in runner.bar_results()],
        "evaluate": read_metrics(runner, "evaluate"), "caption": read_metrics(runner, "caption"),
        "forecast": read_metrics(runner, "forecast"),
    }


def interval(margin: dict) -> str:
    return f"{margin['difference']:+.3f} ({margin['low']:+.3f}, {margin['high']:+.3f})"


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def tables(rows: list[dict]) -> list[str]:
    lines = []
    names = [b["name"] for b in rows[0]["bars"]]
    lines += ["Bars (test split; **MISSED** where a bar is not reached):", "",
              "| seed | " + " | ".join(f"{n} ({b['bar']})" for n, b in zip(names, rows[0]["bars"]))
              + " | zero-shot shape (chance) | all held |",
              "| --- " * (len(names) + 3) + "|"]
    for row in rows:
        by_name = {b["name"]: b for b in row["bars"]}
        cells = []
        for name in names:
            bar = by_name.get(name)
            if bar is None or bar["value"] is None:
                cells.append("**not measured**")
            else:
                cells.append(f"{bar['value']:.3f}" + ("" if bar["held"] else " **MISSED**"))
        shape = ((row["evaluate"] or {}).get("zero_shot") or {}).get("shape")
        cells.append(f"{shape['top1']:.3f} ({shape['chance_top1']:.3f})" if shape else "—")
        cells.append("yes" if all(b["held"] for b in row["bars"]) else "**no**")
        lines.append(f"| {row['seed']} | " + " | ".join(cells) + " |")
    lines += ["", "Captioning (test split; CIDEr / BLEU-4 of the captioner, the nearest-neighbour caption and the "
              "consensus caption of the same features):", ""]
    choices = list(((rows[0]["caption"] or {}).get("by_features") or {}))
    lines += ["| seed | " + " | ".join(f"{w}: captioner / NN / consensus" for w in choices) + " |",
              "| --- " * (len(choices) + 1) + "|"]
    for row in rows:
        cells = []
        for which in choices:
            m = ((row["caption"] or {}).get("by_features") or {}).get(which)
            if not m:
                cells.append("—")
                continue
            cells.append(" · ".join(f"{m[k]['cider']:.2f} / {m[k]['bleu4']:.3f}"
                                    for k in ("captioner", "nearest_neighbour", "consensus") if k in m))
        lines.append(f"| {row['seed']} | " + " | ".join(cells) + " |")
    lines += ["", "Forecasting (test split, context 8; model (bigram); margins model − bigram with 95 % intervals "
              "over videos):", "",
              "| seed | top-1 | top-5 | log-loss | top-1 − bigram | top-5 − bigram | log-loss − bigram | top-1 − repeat |",
              "| --- " * 8 + "|"]
    for row in rows:
        f = row["forecast"]
        if f is None:
            lines.append(f"| {row['seed']} | " + " | ".join(["—"] * 7) + " |")
            continue
        margin = f["model_minus_bigram"]
        lines.append(f"| {row['seed']} | {f['model']['top1']:.3f} ({f['bigram']['top1']:.3f}) | "
                     f"{f['model']['top5']:.3f} ({f['bigram']['top5']:.3f}) | "
                     f"{f['log_loss']['model']:.3f} ({f['log_loss']['bigram']:.3f}) | {interval(margin['top1'])} | "
                     f"{interval(margin['top5'])} | {interval(margin['log_loss'])} | "
                     f"{interval(f['model_minus_repeat']['top1'])} |")
    lines += ["", "Time (seconds; the whole pipeline of a seed as `videobert demo` runs it):", "",
              "| seed | wall | extract | pretrain | distil | caption | load average before → after |",
              "| --- " * 7 + "|"]
    for row in rows:
        s = row["stage_seconds"]
        note = "" if len(row["stages_run"]) == len(s) else f" (skipped, done before: {len(s) - len(row['stages_run'])})"
        lines.append(f"| {row['seed']} | {row['wall_s']:.0f}{note} | {s.get('extract', 0):.0f} | {s.get('pretrain', 0):.0f} | "
                     f"{s.get('distil', 0):.0f} | {s.get('caption', 0):.0f} | "
                     f"{row['load_before'][0]:.1f} → {row['load_after'][0]:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the seeds' run folders")
    parser.add_argument("--seeds", required=True, help="comma-separated seeds, e.g. 11,23,37,41,53")
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a demo config key")
    args = parser.parse_args()
    setup_logging()
    seeds = [int(s) for s in args.seeds.split(",")]
    started = datetime.datetime.now().isoformat(timespec="minutes")
    rows = [run_seed(seed, args.out, args.config, args.set) for seed in seeds]
    header = [f"# `python bench/demo_seeds.py --seeds {args.seeds}`{' --set ' + ' --set '.join(args.set) if args.set else ''}"
              f" — config {args.config.name}; started {started}, finished "
              f"{datetime.datetime.now().isoformat(timespec='minutes')}; {machine()}", ""]
    lines = header + tables(rows)
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seeds.json").write_text(json.dumps({"machine": machine(), "started": started, "seeds": rows,
                                                     "assignments": args.set}, indent=1))


if __name__ == "__main__":
    main()
