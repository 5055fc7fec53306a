"""Pretraining speed on a shared machine: torch's threads and OpenMP's wait policy, alone and
beside competing jobs.

    python bench/threads.py                                   # the table below, 600 steps each
    python bench/threads.py --steps 300 --competitors 0,2 --try threads=1 --try threads=2,wait=passive

Each row is one setting: ``threads`` (torch's CPU threads, ``OMP_NUM_THREADS``), ``wait`` (OpenMP's
wait policy, ``OMP_WAIT_POLICY``: ``active`` spins, ``passive`` sleeps at once, ``default`` leaves
libgomp's own — spin a while, then sleep) and optionally ``spin`` (``GOMP_SPINCOUNT``); ``shipped``
is what ``videobert`` itself chooses when nothing is set (:mod:`videobert.threads`). For each
setting, ``--steps`` steps of the tiny preset (batch 32, at most 64 tokens, on a corpus built from
the synthetic generator's plans, tests/pretrain_corpus.py) are timed alone and beside 1 and 2
competitors: the same pretraining with the same setting, started first and running until the timed
job ends, as two demos on one machine would. Every job is its own process; the time is the timed
job's training steps (from the end of its first step to the end of its last, scaled to all of
them; its setup — corpus, model — is printed apart). Prints seconds and the slowdown against the
same setting alone and against the first setting alone.

A timing is only meaningful on an otherwise idle machine: the load average is printed before each
row; rerun when other work was running.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_TRIES = ["threads=2,wait=default", "threads=2,wait=active", "threads=2,wait=passive", "threads=1,wait=default",
                 "shipped"]
OMP_KEYS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "VIDEOBERT_THREADS")


def setting_env(text: str) -> dict[str, str]:
    """The environment of one setting (``threads=2,wait=passive,spin=10000``, with videobert's own
    choices off: ``VIDEOBERT_THREADS=off``), or ``shipped`` (none of them set: videobert chooses)."""
    env = {key: value for key, value in os.environ.items() if key not in OMP_KEYS}
    if text == "shipped":
        return env
    env["VIDEOBERT_THREADS"] = "off"  # videobert leaves torch's threads and OpenMP's settings alone
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key == "threads":
            env["OMP_NUM_THREADS"] = value
        elif key == "wait":
            if value != "default":
                env["OMP_WAIT_POLICY"] = value.upper()
        elif key == "spin":
            env["GOMP_SPINCOUNT"] = value
        else:
            raise SystemExit(f"unknown key {key!r} in --try {text!r} (threads, wait, spin)")
    return env


def worker(corpus: Path, out: Path, steps: int) -> None:
    """One pretraining job: prints as JSON the seconds of its training steps (from the end of the
    first to the end of the last, scaled to all of them) and of ``videobert.pretrain.run`` whole."""
    from videobert import config as cfgmod  # first: videobert sets OpenMP's environment before torch loads
    from videobert.pretrain import PretrainConfig
    from videobert.pretrain import run as pretrain
    from videobert.pretrain import stage as pretrain_stage

    import torch

    stamps: list[float] = []
    during: list[int] = []

    class Stamps:  # stands in for the progress bar: the time of every step
        def __init__(self, *args, **kwargs):
            pass

        def update(self, count=1):
            stamps.append(time.perf_counter())
            during.append(torch.get_num_threads())  # the loop's own count (videobert may lower it for a small model)

        def set_postfix(self, *args, **kwargs):
            pass

        def close(self):
            pass

    pretrain_stage.progress = Stamps

    cfg = cfgmod.load(PretrainConfig, overrides={
        "preset": "tiny", "steps": steps, "batch_size": 32, "max_len": 64, "lr": 1e-3, "warmup": 10, "eval_every": 0,
        "save_every": 0, "log_every": 0, "device": "cpu", "val_share": 0})
    began = time.perf_counter()
    pretrain(corpus, out, cfg)
    whole = time.perf_counter() - began
    steps_seconds = (stamps[-1] - stamps[0]) * steps / max(1, steps - 1) if len(stamps) > 1 else whole
    print(json.dumps({"seconds": steps_seconds, "whole": whole, "threads": during[-1] if during else torch.get_num_threads(),
                      "wait": os.environ.get("OMP_WAIT_POLICY", "")}), flush=True)


def timed(corpus: Path, tmp: Path, steps: int, env: dict[str, str], competitors: int) -> dict:
    """Seconds of one job of ``steps`` steps beside ``competitors`` endless ones (same env)."""
    command = [sys.executable, __file__, "--worker", str(corpus)]
    others = []
    for index in range(competitors):
        out = tmp / f"other-{time.monotonic_ns()}-{index}"
        others.append(subprocess.Popen([*command, str(out), "--steps", "10000000"], env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL))
    try:
        if others:
            time.sleep(3.0)  # they are past their imports and training
        out = tmp / f"timed-{time.monotonic_ns()}"
        result = subprocess.run([*command, str(out), "--steps", str(steps)], env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"the timed job failed:\n{result.stderr[-2000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        for process in others:
            process.terminate()
        for process in others:
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--competitors", default="0,1,2", help="numbers of competing jobs, comma-separated")
    parser.add_argument("--try", dest="tries", action="append", metavar="SETTING",
                        help="threads=N,wait=default|active|passive[,spin=N], or shipped (repeatable; default: "
                             + "; ".join(DEFAULT_TRIES) + ")")
    parser.add_argument("--worker", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]), args.steps)
        return

    from tests.pretrain_corpus import make_pretrain_corpus
    from videobert.runtime import cpu_cores, cpu_name

    tries = args.tries or DEFAULT_TRIES
    counts = [int(c) for c in args.competitors.split(",")]
    print(f"{cpu_name()}; {os.cpu_count()} CPUs, {cpu_cores()} this process may use; {args.steps} steps of the tiny "
          f"preset (batch 32, max_len 64) per timed job; competitors run the same setting")
    with tempfile.TemporaryDirectory(prefix="videobert-threads-") as name:
        tmp = Path(name)
        corpus = make_pretrain_corpus(tmp / "data", videos=48, seed=0)
        rows = []
        for text in tries:
            env = setting_env(text)
            row = {"setting": text}
            for count in counts:
                load = os.getloadavg()[0]
                result = timed(corpus, tmp, args.steps, env, count)
                row[count] = result["seconds"]
                row[f"load{count}"] = load
                row["threads"] = result["threads"]
                print(f"  {text} beside {count}: {result['seconds']:.1f} s of steps, {result['whole']:.1f} s in all "
                      f"({result['threads']} threads, wait {result['wait'] or 'default'}; load average before "
                      f"{load:.2f})", flush=True)
            rows.append(row)
    base = rows[0].get(0)
    header = "| setting | torch threads | " + " | ".join(
        f"beside {c}: s (× alone{', × first alone' if base else ''})" for c in counts) + " |"
    print()
    print(header)
    print("|" + " --- |" * (2 + len(counts)))
    for row in rows:
        cells = []
        for count in counts:
            seconds = row[count]
            alone = row.get(0)
            parts = [f"{seconds:.1f}"]
            if alone:
                parts.append(f"{seconds / alone:.1f}×")
            if base:
                parts.append(f"{seconds / base:.1f}×")
            cells.append(f"{parts[0]} ({', '.join(parts[1:])})" if len(parts) > 1 else parts[0])
        print(f"| {row['setting']} | {row['threads']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
