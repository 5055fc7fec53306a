"""The demo's choices, made on the val split: a finished demo run rerun with other settings, each
scored on val beside the run as it is.

    python bench/demo_choices.py --base runs/demo --out runs/choices \\
        --variant "no attention dropout: pretrain.attention_dropout=0" \\
        --variant "8 000 steps: pretrain.steps=8000" --variant "mask 15 %: pretrain.mask_prob=0.15"

Each variant (``NAME: KEY=VALUE[, KEY=VALUE ...]``) copies the base run folder to OUT/<its settings> and
runs the demo's pipeline in it with its settings and with ``evaluate.split``, ``caption.split`` and
``forecast.split`` set to ``val``: the runner reruns only the stage whose settings changed and what
follows it (features, and the vocabulary when it is not changed, are reused). The base itself is
copied to OUT/base and rescored on val the same way. Printed per run, all on the val split: alignment
accuracy, text→video R@5 against chance, zero-shot top-1 per attribute, forecasting top-1 and
log-loss beside the bigram's, and the VideoBERT + S3D captioner's CIDEr beside its nearest-neighbour
and consensus baselines. Nothing here reads the test split: the demo's settings are chosen on these
figures, and the test split is read once, by the runs that report (``bench/demo_seeds.py``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.common import torchrun_launcher  # noqa: E402
from pipelines.demo import DEMO_CONFIG  # noqa: E402
from videobert.logs import setup_logging  # noqa: E402
from videobert.runner import Runner, load_run_config  # noqa: E402
from videobert.runtime import cpu_name  # noqa: E402

ON_VAL = ["evaluate.split=val", "caption.split=val", "forecast.split=val"]


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, settings = text.partition(":")
    assignments = [part.strip() for part in settings.split(",") if part.strip()]
    if not assignments or not all("=" in a for a in assignments):
        raise SystemExit(f"--variant {text!r}: expected 'NAME: KEY=VALUE[, KEY=VALUE ...]'")
    return name.strip(), assignments


def val_figures(runner: Runner) -> dict:
    """The val figures of a finished run (each None where its stage is off)."""
    def read(stage: str) -> dict | None:
        path = runner.folder(stage) / "metrics.json"
        return json.loads(path.read_text()) if runner.enabled(stage) and path.is_file() else None

    evaluate, caption, forecast = read("evaluate"), read("caption"), read("forecast")
    assert evaluate["split"] == "val", "evaluated on another split than val"
    figures = {"align": evaluate["align_accuracy"], "r5_chance": evaluate["t2v"]["r5"] / evaluate["t2v"]["chance_r5"],
               "zero_shot": {a: z["top1"] for a, z in evaluate.get("zero_shot", {}).items()}}
    if forecast is not None:
        figures["forecast"] = {"top1": forecast["model"]["top1"], "bigram_top1": forecast["bigram"]["top1"],
                               "top5": forecast["model"]["top5"], "bigram_top5": forecast["bigram"]["top5"],
                               "log_loss": forecast["log_loss"]["model"], "bigram_log_loss": forecast["log_loss"]["bigram"]}
    if caption is not None:
        figures["caption"] = {which: {kind: m[kind]["cider"] for kind in ("captioner", "nearest_neighbour", "consensus")
                                      if kind in m}
                              for which, m in caption["by_features"].items()}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="a finished demo run folder")
    parser.add_argument("--out", type=Path, required=True, help="folder of the variants' run folders")
    parser.add_argument("--variant", action="append", default=[], metavar="'NAME: KEY=VALUE, ...'")
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of every run, the base's included (e.g. what the base was made with)")
    parser.add_argument("--no-base", action="store_true", help="do not rescore the base (another run of this script "
                                                                 "does)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); on a shared "
                                                               "machine 1 thread is often faster")
    args = parser.parse_args()
    setup_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = ([] if args.no_base else [("as it is", [])]) + [parse_variant(v) for v in args.variant]
    print(f"# demo choices on the val split, {datetime.date.today()}; {cpu_name()}; base {args.base}; "
          f"config {args.config.name} {args.set}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, assignments in runs:
        folder = args.out / ("base" if not assignments else "-".join(a.replace("=", "_") for a in assignments))
        if not folder.exists():
            shutil.copytree(args.base, folder, symlinks=True, ignore=shutil.ignore_patterns(".previous", ".run.lock"))
        began = time.perf_counter()
        cfg = load_run_config(args.config, [*args.set, *ON_VAL, *assignments])
        runner = Runner(cfg, folder, torchrun_launcher([]))
        runner.run()
        figures = val_figures(runner)
        rows.append((name, assignments, figures, time.perf_counter() - began))
        print(f"{folder.name}: {name} {assignments}: {json.dumps(figures)} ({time.perf_counter() - began:.0f} s)", flush=True)
    if not rows:
        return
    attributes = list(rows[0][2]["zero_shot"])
    print()
    print("| run | settings | alignment | t2v R@5 / chance | " + " | ".join(attributes)
          + " | forecast top-1 (bigram) | log-loss (bigram) | both: captioner CIDEr (NN, consensus) |")
    print("| --- " * (6 + len(attributes)) + "|")
    for name, assignments, f, _ in rows:
        cells = [name, ", ".join(assignments) or "—", f"{f['align']:.3f}", f"{f['r5_chance']:.1f}×"]
        cells += [f"{f['zero_shot'][a]:.3f}" for a in attributes]
        fc = f.get("forecast")
        cells += [f"{fc['top1']:.3f} ({fc['bigram_top1']:.3f})", f"{fc['log_loss']:.3f} ({fc['bigram_log_loss']:.3f})"] \
            if fc else ["—", "—"]
        both = (f.get("caption") or {}).get("both")
        cells.append(f"{both['captioner']:.2f} ({both['nearest_neighbour']:.2f}, {both.get('consensus', float('nan')):.2f})"
                     if both else "—")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
