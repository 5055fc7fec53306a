"""Threads from the CPUs a process may use, and OpenMP's wait policy, set before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO
from videobert import threads


def test_the_cgroup_quota_caps_the_affinity(tmp_path, monkeypatch):
    own = tmp_path / "self-cgroup"
    own.write_text("0::/\n")
    root = tmp_path / "fs"
    root.mkdir()
    (root / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_quota(root, own) is None
    (root / "cpu.max").write_text("150000 100000\n")  # a container's --cpus 1.5
    assert threads.cgroup_cpu_quota(root, own) == 1.5
    job = root / "system.slice" / "job_42"  # a job's cgroup below the root (Slurm, systemd), the tighter limit wins
    job.mkdir(parents=True)
    (job / "cpu.max").write_text("100000 100000\n")
    own.write_text("0::/system.slice/job_42\n")
    assert threads.cgroup_cpu_quota(root, own) == 1.0
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    own.write_text("4:cpu,cpuacct:/\n")
    assert threads.cgroup_cpu_quota(v1, own) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    assert threads.cgroup_cpu_quota(v1, own) == 3.0
    assert threads.cgroup_cpu_quota(tmp_path / "none", tmp_path / "no-such-file") is None
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 8)
    for quota, budget in ((None, 8), (1.5, 2), (0.5, 1), (3.0, 3), (16.0, 8)):
        monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda quota=quota: quota)
        assert threads.cpu_budget() == budget


def test_configure_sets_only_what_is_unset_and_off_leaves_everything():
    environ: dict[str, str] = {}
    loaded = sys.modules.pop("torch", None)
    try:
        threads.configure(environ)
        assert environ == {"OMP_NUM_THREADS": str(threads.cpu_budget()), "OMP_WAIT_POLICY": threads.WAIT_POLICY}
        mine = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"}
        threads.configure(mine)
        assert mine == {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"}
        off = {"VIDEOBERT_THREADS": "off"}
        threads.configure(off)
        assert off == {"VIDEOBERT_THREADS": "off"}
    finally:
        if loaded is not None:
            sys.modules["torch"] = loaded


def test_importing_videobert_before_torch_sets_them_for_torch():
    probe = ("import os, videobert, torch; "
             "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], os.environ['OMP_WAIT_POLICY'])")
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    result = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                            env={**env, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1", threads.WAIT_POLICY]  # one CPU allowed: one thread


def test_a_small_model_trains_on_one_thread_only_where_videobert_chose_the_threads(monkeypatch):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(threads, "_chose_threads", True)
        assert threads.training_threads(threads.SMALL_HIDDEN * 2, torch.device("cpu")) is None  # wide: left as it is
        assert threads.training_threads(128, torch.device("cuda")) is None
        assert torch.get_num_threads() == 2
        saved = threads.training_threads(128, torch.device("cpu"))
        assert saved == 2 and torch.get_num_threads() == 1
        threads.restore_threads(saved)
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(threads, "_chose_threads", False)  # the user's OMP_NUM_THREADS (or off) is kept
        assert threads.training_threads(128, torch.device("cpu")) is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_launched_ranks_share_the_budget_and_know_it_as_videoberts_choice(monkeypatch):
    monkeypatch.setattr(threads, "cpu_budget", lambda: 8)
    monkeypatch.setattr(threads, "_chose_threads", True)
    env = threads.child_env(4)
    assert env["OMP_NUM_THREADS"] == "2" and env[threads.CHOSEN_MARK] == "1"
    assert threads.child_env(16)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setattr(threads, "_chose_threads", False)  # the user's own count goes to every rank as it is
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv(threads.CHOSEN_MARK, raising=False)
    assert threads.child_env(4)["OMP_NUM_THREADS"] == "3" and threads.CHOSEN_MARK not in threads.child_env(4)


def test_the_plans_step_is_timed_on_the_threads_pretraining_uses_and_gives_them_back(monkeypatch):
    import torch

    from videobert.pretrain import probe
    from videobert.pretrain.stage import PretrainConfig

    seen = []
    real = probe.Trainer.step

    def step(self, batch):
        seen.append(torch.get_num_threads())
        return real(self, batch)

    monkeypatch.setattr(probe.Trainer, "step", step)
    monkeypatch.setattr(threads, "_chose_threads", True)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = PretrainConfig(preset="tiny", batch_size=4, device="cpu")
        timed = probe.measure_step(cfg, 40, 12, warmup=1, steps=1)
        assert timed["step_seconds"] > 0 and seen and set(seen) == {1}  # tiny: one thread, as pretrain gives it
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
