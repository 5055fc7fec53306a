"""Memory, time and reads of the corpus-size stages as the corpus grows, beside the code of another
git revision measured in the same run.

    python bench/scale.py --examples 50000 500000 2000000 --baseline REV --out runs/scale
    python bench/scale.py --examples 50000 500000 --stages pretrain --ranks 2 --workers 4

For each size it fabricates, in the documented formats (docs/formats.md), a manifest of
``examples / sentences_per_video`` videos with a WebVTT transcript and TOKENS/ per video, and
FEATURES/ for vocab; files are hard links of a few dozen distinct ones, so a corpus of millions
of sentences takes little disk (the test split's videos are distinct, so that evaluation has as
many distinct pairs as a real gallery). Then it runs each stage's command as a user would
(``python -m pipelines.cli STAGE ...``) with this tree and, with ``--baseline REV``, with a
checkout of that revision, and prints per stage and size: wall seconds, peak RSS and peak
proportional set size (PSS) of the process tree, the files the main process opened, the bytes it
read through read() and the file pages it had mapped, and the growth exponent between sizes
(log ratio of the figure over log ratio of the size: 0 flat, 1 linear).

Stages: ``corpus`` (build the corpus), ``pretrain`` (``--steps`` steps of a small model;
``--ranks R --workers W`` adds a run with R torchrun ranks of W data-loader workers each),
``evaluate`` (exhaustive ranking of a test split of ``--eval-examples`` examples, at the first
size only; ``--eval-seconds`` stops a run early and reports the peak so far), ``vocab`` (a
codebook on a ``--vocab-sample`` sample of the clips) and ``fingerprint`` (the check
``videobert run`` makes of the inputs). Timings depend on the machine and its load; memory and
growth exponents are what to compare.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORDS = ("now cut fry stir bake boil slice chop add mix pour season the onion garlic pan oil butter sauce salt "
         "pepper slowly until golden then again a little more of it with some water into bowl").split()

PROBE = r"""
import atexit, json, os, sys
opened = set()
def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        opened.add(os.fsdecode(args[0]))
sys.addaudithook(hook)
main_pid = os.getpid()
def report():
    if os.getpid() == main_pid:
        with open(os.environ["SCALE_PROBE_OUT"], "w") as handle:
            json.dump({"files": len(opened)}, handle)
atexit.register(report)
import runpy
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


# ------------------------------------------------------------------------------------------ inputs
def fabricate(root: Path, examples: int, per_video: int, test_examples: int, templates: int = 32) -> dict:
    """Manifest, transcripts, TOKENS/ and FEATURES/ of ``examples`` train sentences (plus a test
    split of ``test_examples``) under ``root``; returns the paths."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    base = root / "templates"
    base.mkdir(exist_ok=True)
    clips = 2 * per_video
    video = base / "video.mp4"
    video.write_bytes(b"\0" * 1024)  # the corpus stage never decodes it; the runner's check stats it

    def transcript(path: Path, seed: int) -> None:
        local = np.random.default_rng(seed)
        cues = []
        for k in range(per_video):
            text = " ".join(local.choice(WORDS, size=int(local.integers(5, 12))))
            cues.append(f"{_stamp(3.0 * k + 0.1)} --> {_stamp(3.0 * k + 2.9)}\n{text}\n")
        path.write_text("WEBVTT\n\n" + "\n".join(cues), encoding="utf-8")

    for t in range(templates):
        transcript(base / f"t{t}.vtt", t)
        np.save(base / f"t{t}.npy", rng.integers(0, 1000, size=clips).astype(np.int32))
        np.save(base / f"f{t}.npy", rng.standard_normal((clips, 1024)).astype(np.float16))
    folders = {name: root / name for name in ("videos", "transcripts", "tokens", "features")}
    for folder in folders.values():
        folder.mkdir(exist_ok=True)
    train_videos = math.ceil(examples / per_video)
    test_videos = math.ceil(test_examples / per_video)
    lines = []
    for v in range(train_videos + test_videos):
        video_id = f"v{v:07d}"
        test = v >= train_videos
        _link(video, folders["videos"] / f"{video_id}.mp4")
        if test:  # distinct content: a real gallery's pairs
            transcript(folders["transcripts"] / f"{video_id}.vtt", 10_000 + v)
            np.save(folders["tokens"] / f"{video_id}.npy", rng.integers(0, 1000, size=clips).astype(np.int32))
        else:
            _link(base / f"t{v % templates}.vtt", folders["transcripts"] / f"{video_id}.vtt")
            _link(base / f"t{(v * 7) % templates}.npy", folders["tokens"] / f"{video_id}.npy")
        _link(base / f"f{v % templates}.npy", folders["features"] / f"{video_id}.npy")
        lines.append(json.dumps({"video_id": video_id, "video": f"videos/{video_id}.mp4",
                                 "transcript": f"transcripts/{video_id}.vtt", "split": "test" if test else "train"}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (folders["tokens"] / "tokens.json").write_text(json.dumps(
        {"vocab": None, "vocab_size": 1000, "fps": 20, "clip_frames": 30, "clip_seconds": 1.5}))
    (folders["features"] / "extract.json").write_text(json.dumps(
        {"fps": 20, "clip_frames": 30, "clip_seconds": 1.5, "size": 224, "model": "fabricated", "weights": "none"}))
    return {"manifest": root / "manifest.jsonl", **folders, "videos_count": train_videos + test_videos}


def _stamp(seconds: float) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours):02d}:{int(minutes):02d}:{secs:06.3f}"


def _link(source: Path, target: Path) -> None:
    if not target.exists():
        os.link(source, target)


# ------------------------------------------------------------------------------------------ measuring
def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _rollup(pid: int) -> dict[str, int]:
    """kB figures of /proc/PID/smaps_rollup (Rss, Pss, Rss_File …)."""
    values = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 3 and parts[-1] == "kB":
                    values[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return values


def measure(command: list[str], env: dict, timeout: float | None = None) -> dict:
    """Run ``command`` (a Python module command line) under the probe; its wall seconds, peak RSS
    and PSS of its process tree (MiB), files opened, bytes read and peak file-backed pages."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as probe_out:
        probe_path = probe_out.name
    full_env = {**os.environ, **env, "SCALE_PROBE_OUT": probe_path, "VIDEOBERT_PROGRESS": "0"}
    began = time.perf_counter()
    # run from the tree's root: ``python -c`` puts the working folder first on sys.path, before PYTHONPATH
    process = subprocess.Popen([sys.executable, "-c", PROBE, *command], env=full_env, cwd=env["PYTHONPATH"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"rss": 0, "pss": 0, "file": 0, "rchar": 0}
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            pids = _tree(process.pid)
            rollups = [_rollup(p) for p in pids]
            peak["rss"] = max(peak["rss"], sum(r.get("Rss", 0) for r in rollups))
            peak["pss"] = max(peak["pss"], sum(r.get("Pss", 0) for r in rollups))
            peak["file"] = max(peak["file"], sum(r.get("Pss_File", 0) for r in rollups))
            try:
                with open(f"/proc/{process.pid}/io") as handle:
                    io = dict(line.split(": ") for line in handle.read().splitlines())
                peak["rchar"] = max(peak["rchar"], int(io["rchar"]))
            except (OSError, KeyError, ValueError):
                pass
            stop.wait(0.2)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    stopped_early = False
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stopped_early = True
        process.terminate()
        output, _ = process.communicate()
    stop.set()
    watcher.join()
    seconds = time.perf_counter() - began
    files = None
    try:
        files = json.loads(Path(probe_path).read_text())["files"]
    except (OSError, ValueError, KeyError):
        pass
    Path(probe_path).unlink(missing_ok=True)
    if process.returncode != 0 and not stopped_early:
        tail = "\n".join(output.strip().splitlines()[-5:])
        raise SystemExit(f"{' '.join(command[:3])} failed (exit {process.returncode}):\n{tail}")
    return {"seconds": seconds, "rss_mib": peak["rss"] / 1024, "pss_mib": peak["pss"] / 1024,
            "file_mib": peak["file"] / 1024, "read_mib": peak["rchar"] / 2**20, "files": files,
            "stopped_early": stopped_early, "output": output}


# ------------------------------------------------------------------------------------------ stages
def tree_env(tree: Path) -> dict:
    return {"PYTHONPATH": str(tree)}


def stage_commands(stage: str, data: dict, work: Path, args, tree: Path, ranks: int = 1, workers: int = 0) -> list[str]:
    corpus = work / "corpus"
    if stage == "corpus":
        return ["pipelines.cli", "corpus", str(data["manifest"]), "--tokens", str(data["tokens"]), "-o", str(corpus), "-q"]
    if stage == "pretrain":
        run = work / f"model-{ranks}x{workers}"
        shutil.rmtree(run, ignore_errors=True)
        base = ["pipelines.pretrain", str(corpus), "-o", str(run), "--preset", "tiny", "--steps", str(args.steps),
                "--batch-size", "32", "--max-len", "64", "--device", "cpu", "--save-every", "0", "--eval-every", "0",
                "--eval-sentences", "200", "--log-every", str(args.steps), "--set", f"num_workers={workers}", "-q"]
        if ranks > 1:
            return ["torch.distributed.run", f"--nproc-per-node={ranks}", "-m", *base]
        return base
    if stage == "evaluate":
        model = work / "model-1x0"
        return ["pipelines.cli", "evaluate", str(model), "--corpus", str(corpus), "--split", "test", "--device", "cpu",
                "-o", str(work / "eval"), "-q", *(["--exhaustive"] if _has_option(tree, "exhaustive_limit") else [])]
    if stage == "vocab":
        out = work / "vocab"
        shutil.rmtree(out, ignore_errors=True)
        return ["pipelines.cli", "vocab", str(data["features"]), "-o", str(out), "--k", "12", "--depth", "2",
                "--sample", str(args.vocab_sample), "--set", "exemplars=false", "--set", "flat_compare_max_words=0",
                "--device", "cpu", "-q"]
    raise ValueError(stage)


def _has_option(tree: Path, name: str) -> bool:
    return name in (tree / "videobert" / "retrieval" / "stage.py").read_text()


def fingerprint_seconds(tree: Path, manifest: Path) -> dict:
    code = ("import sys, time; from pathlib import Path; from videobert.runner import _fingerprint_inputs; "
            "t = time.perf_counter(); _fingerprint_inputs(Path(sys.argv[1]), []); print(time.perf_counter() - t)")
    env = {**os.environ, **tree_env(tree)}
    began = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, str(manifest)], env=env, cwd=tree, capture_output=True, text=True,
                         check=True)
    return {"seconds": float(out.stdout.strip()), "wall": time.perf_counter() - began}


def exponent(small: float, large: float, size_small: int, size_large: int) -> str:
    if not small or not large or small <= 0 or large <= 0:
        return "-"
    return f"{math.log(large / small) / math.log(size_large / size_small):.2f}"


def checkout(revision: str, where: Path) -> Path:
    if not where.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), revision], check=True,
                       capture_output=True)
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, nargs="+", default=[50_000, 500_000], help="train sentences per size")
    parser.add_argument("--sentences-per-video", type=int, default=32)
    parser.add_argument("--stages", default="corpus,pretrain,evaluate,vocab,fingerprint")
    parser.add_argument("--steps", type=int, default=1000, help="pretraining steps")
    parser.add_argument("--ranks", type=int, default=0, help="also pretrain with this many torchrun ranks (0: no)")
    parser.add_argument("--workers", type=int, default=4, help="data-loader workers per rank of that run")
    parser.add_argument("--ranks-up-to", type=int, default=500_000,
                        help="that run only at sizes up to this (the earlier code's copies per worker fill 24 GB beyond)")
    parser.add_argument("--eval-examples", type=int, default=8000, help="test split: examples (the evaluation gallery)")
    parser.add_argument("--eval-seconds", type=float, default=0, help="stop evaluation after this long (0: never)")
    parser.add_argument("--baseline-eval-seconds", type=float, default=0,
                        help="the same for the baseline revision only (its peak comes before the first batch)")
    parser.add_argument("--vocab-sample", type=int, default=200_000)
    parser.add_argument("--baseline", metavar="REV", help="also measure this git revision (a worktree beside the repo)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "scale")
    args = parser.parse_args()
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    trees = {"this tree": REPO}
    if args.baseline:
        trees[f"baseline {args.baseline}"] = checkout(args.baseline, args.out / "baseline-tree")
    from videobert.runtime import cpu_name  # noqa: E402

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; stages {', '.join(stages)}; sizes {args.examples}")
    results: dict[tuple[str, str, int], dict] = {}
    for size in args.examples:
        data = fabricate(args.out / f"data-{size}", size, args.sentences_per_video,
                         args.eval_examples if size == args.examples[0] else 32)
        print(f"\n## {size} train sentences, {data['videos_count']} videos", flush=True)
        for label, tree in trees.items():
            work = args.out / f"work-{size}-{label.replace(' ', '_')}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            for stage in stages:
                if stage == "fingerprint":
                    figures = fingerprint_seconds(tree, data["manifest"])
                    results[(label, stage, size)] = figures
                    print(f"{label:<28}{stage:<22}{figures['seconds']:>9.1f} s", flush=True)
                    continue
                runs = [(stage, 1, 0)]
                if stage == "pretrain" and args.ranks and size <= args.ranks_up_to:
                    runs.append((stage, args.ranks, args.workers))
                if stage == "evaluate" and size != args.examples[0]:
                    continue
                for name, ranks, workers in runs:
                    command = stage_commands(name, data, work, args, tree, ranks, workers)
                    limit = args.baseline_eval_seconds if label != "this tree" and args.baseline_eval_seconds else args.eval_seconds
                    timeout = (limit or None) if name == "evaluate" else None
                    figures = measure(command, tree_env(tree), timeout)
                    key = name if ranks == 1 else f"{name} {ranks}x{workers} workers"
                    results[(label, key, size)] = figures
                    early = " (stopped early: peak so far)" if figures["stopped_early"] else ""
                    print(f"{label:<28}{key:<22}{figures['seconds']:>9.1f} s {figures['rss_mib']:>9.0f} MiB RSS "
                          f"{figures['pss_mib']:>9.0f} MiB PSS {figures['files'] or 0:>8} files "
                          f"{figures['read_mib']:>9.0f} MiB read {figures['file_mib']:>8.0f} MiB mapped{early}", flush=True)
    if len(args.examples) > 1:
        print("\ngrowth exponents between sizes (0: flat, 1: linear in the corpus)")
        keys = sorted({(label, stage) for label, stage, _ in results})
        for label, stage in keys:
            cells = []
            for small, large in zip(args.examples, args.examples[1:]):
                a, b = results.get((label, stage, small)), results.get((label, stage, large))
                if not a or not b:
                    continue
                cells.append(f"{small}->{large}: time {exponent(a['seconds'], b['seconds'], small, large)}"
                             + (f", RSS {exponent(a['rss_mib'], b['rss_mib'], small, large)} "
                                f"(+{b['rss_mib'] - a['rss_mib']:.0f} MiB)" if "rss_mib" in a else ""))
            if cells:
                print(f"{label:<28}{stage:<22}" + "; ".join(cells))
    (args.out / "results.json").write_text(json.dumps(
        {f"{label}|{stage}|{size}": {k: v for k, v in r.items() if k != "output"} for (label, stage, size), r in results.items()},
        indent=2))


if __name__ == "__main__":
    main()
