"""How many CPU threads a process computes with, and how they wait — decided before torch loads.

* :func:`cpu_budget`: the CPUs this process may use — its affinity mask (``taskset``, Slurm's
  ``--cpus-per-task``, a container's ``--cpuset-cpus``) and the cgroup's CPU quota
  (``/sys/fs/cgroup/cpu.max`` under cgroup v2, ``cpu.cfs_quota_us`` under v1: a container's
  ``--cpus``, Kubernetes' CPU limit), whichever is smaller. ``os.cpu_count()`` counts the
  machine's CPUs, which a job on a shared node is not given.
* :func:`configure` (called when ``videobert`` is imported, before anything imports torch) sets,
  only where the user has not: ``OMP_NUM_THREADS`` to that budget, and OpenMP's wait policy to
  ``PASSIVE`` — a thread that finishes its share of a parallel region sleeps instead of spinning
  for the next one. libgomp's default spins for a while, and beside other busy processes (two
  demos on one machine, a neighbour's job) the spinning threads take the cores the other
  threads of the same region need; every region then waits for a descheduled thread, and
  pretraining ran 11–13× slower beside two copies of itself where a fair share is 3×. Measured
  choices, alone and beside one and two competing jobs: ``python bench/threads.py``, BENCHMARKS.md.
  ``VIDEOBERT_THREADS=off`` leaves both to torch and OpenMP.
* :func:`training_threads`: a training loop of a small model (hidden size up to 256: the demo's,
  the tiny preset) on the CPU runs on one thread — its products are too small to share, and with
  PASSIVE two threads pay a wake-up per product (1.7× alone, where one thread is 1.2×; beside two
  competing jobs one thread is 1.6–1.7× its time alone, two spinning threads 22×). S3D's long
  convolutions keep every thread (one thread: 1.8× its time).

libgomp reads its environment once, when torch's library loads; after that only the thread
count can still change (``torch.set_num_threads``), so :func:`configure` lowers it to the budget
when torch was imported first, and leaves the wait policy as it is.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import MutableMapping

WAIT_POLICY = "PASSIVE"
# A transformer this narrow or narrower trains faster on one CPU thread than on two that wait for
# each other in every small matrix product (bench/threads.py; BENCHMARKS.md).
SMALL_HIDDEN = 256
_chose_threads = False  # OMP_NUM_THREADS was set by configure(), not by the user
CHOSEN_MARK = "VIDEOBERT_THREADS_CHOSEN"  # in a launched process's environment: its OMP_NUM_THREADS is videobert's


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (all of the machine's where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup"), own: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (``1.5``: one and a half CPUs' time per
    period), the smallest along its path up to ``root`` (a parent's limit binds its children), or
    None without one (``max``, no cgroup, or files that cannot be read)."""
    quotas = []
    for folder in _cgroup_folders(root, own):
        try:
            if (folder / "cpu.max").is_file():  # v2: "max 100000" or "<quota> <period>", microseconds
                quota, period = (folder / "cpu.max").read_text().split()[:2]
                if quota != "max":
                    quotas.append(int(quota) / int(period))
            elif (folder / "cpu.cfs_quota_us").is_file():  # v1
                quota_us = int((folder / "cpu.cfs_quota_us").read_text())
                period_us = int((folder / "cpu.cfs_period_us").read_text())
                if quota_us > 0 and period_us > 0:
                    quotas.append(quota_us / period_us)
        except (OSError, ValueError, ZeroDivisionError):
            continue
    return min(quotas) if quotas else None


def _cgroup_folders(root: Path, own: Path) -> list[Path]:
    """The folders of this process's cgroup and its parents (v2 under ``root``, v1 under
    ``root/cpu``), leaf first; ``root`` and ``root/cpu`` themselves last."""
    paths = []
    try:
        for line in own.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                paths.append(root / path.lstrip("/"))
            elif "cpu" in controllers.split(","):
                paths.append(root / "cpu" / path.lstrip("/"))
    except (OSError, ValueError):
        pass
    folders = []
    for leaf in paths:
        folder = leaf
        while folder not in (root, root / "cpu") and root in folder.parents:
            folders.append(folder)
            folder = folder.parent
    return folders + [root, root / "cpu"]


def cpu_budget() -> int:
    """CPUs this process may compute on: its affinity, capped by the cgroup's quota (rounded up:
    a quota of 1.5 CPUs runs two threads), at least 1."""
    cpus = affinity_cpus()
    quota = cgroup_cpu_quota()
    if quota is not None and quota > 0:
        cpus = min(cpus, math.ceil(quota - 1e-9))
    return max(1, cpus)


def configure(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set ``OMP_NUM_THREADS`` (the budget) and ``OMP_WAIT_POLICY`` (``PASSIVE``) where they are
    unset, before torch loads; once it has, only lower torch's thread count to the budget.
    ``VIDEOBERT_THREADS=off`` does nothing."""
    if environ.get("VIDEOBERT_THREADS", "").lower() in ("off", "0", "no", "false"):
        return
    budget = cpu_budget()
    global _chose_threads
    if environ is os.environ and ("OMP_NUM_THREADS" not in environ or environ.get(CHOSEN_MARK) == "1"):
        _chose_threads = True
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if "OMP_NUM_THREADS" not in environ and hasattr(torch, "get_num_threads") and torch.get_num_threads() > budget:
            torch.set_num_threads(budget)
        return
    environ.setdefault("OMP_NUM_THREADS", str(budget))
    environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)


def child_env(procs: int) -> dict[str, str]:
    """The environment for ``procs`` processes launched together on this machine (torchrun's
    ranks): where videobert chose the thread count, each gets its share of the budget, and knows
    the count as videobert's choice (not the user's)."""
    env = dict(os.environ)
    if _chose_threads:
        env["OMP_NUM_THREADS"] = str(max(1, cpu_budget() // max(1, procs)))
        env[CHOSEN_MARK] = "1"
    return env


def training_threads(hidden_size: int, device) -> int | None:
    """Lower torch's CPU threads to one for a training loop of a small model (hidden size up to
    :data:`SMALL_HIDDEN`) on the CPU, where the thread count is videobert's choice (neither
    ``OMP_NUM_THREADS`` nor ``VIDEOBERT_THREADS=off`` set by the user). Returns the count to
    restore afterwards (:func:`restore_threads`), or None when nothing changed. Its products are
    too small to share between threads: one thread is about as fast alone and stays fast beside
    other busy processes, where two slow down several-fold."""
    import torch

    if not _chose_threads or getattr(device, "type", str(device)) != "cpu" or hidden_size > SMALL_HIDDEN:
        return None
    before = torch.get_num_threads()
    if before <= 1:
        return None
    torch.set_num_threads(1)
    return before


def restore_threads(before: int | None) -> None:
    """Undo :func:`training_threads` (None: nothing to undo)."""
    if before is not None:
        import torch

        torch.set_num_threads(before)
