"""Shared fixtures: a small synthetic corpus generated once per test session, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m pipelines.cli ARGS`` as a user would run ``videobert ARGS``."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "VIDEOBERT_PROGRESS": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *map(str, args)],
        cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout, env=full_env,
    )


def run_config(root: Path, config: dict) -> tuple[Path, subprocess.CompletedProcess]:
    """``videobert run`` of ``config`` (a dict, written as ROOT/run.yaml) into ROOT/run; fails the
    test unless it exits 0."""
    import yaml

    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_cli("run", path, "-o", root / "run", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run", result


@pytest.fixture(autouse=True)
def _loggers_given_back():
    """A command run in-process (in a test or a module's fixture) routes the videobert and pipelines
    loggers to stderr (videobert.logs.setup_logging); every test starts and ends with them as Python
    makes them — no handler of their own, records passed up to the root, where caplog sees them."""
    import logging

    def reset():
        for name in ("videobert", "pipelines"):
            logger = logging.getLogger(name)
            logger.handlers[:] = []
            logger.propagate = True
            logger.setLevel(logging.NOTSET)

    reset()
    yield
    reset()


@pytest.fixture(scope="module")
def one_thread():
    """torch on one CPU thread for the module's tests."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# the longest file (a third of the suite on 2 cores) starts first, so that under ``pytest -n 2`` the
# process that runs it is not the last to finish (pyproject: --no-loadscope-reorder keeps this order)
SLOW_FILES = ("test_demo.py",)


def pytest_collection_modifyitems(config, items):
    import torch

    items.sort(key=lambda item: SLOW_FILES.index(item.path.name) if item.path.name in SLOW_FILES else len(SLOW_FILES))

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    """Six synthetic videos (seed 1): 4 train, 1 val, 1 test."""
    from videobert.synthetic import SynthConfig, run

    out = tmp_path_factory.mktemp("synth6")
    run(out, SynthConfig(videos=6, seed=1))
    return out


@pytest.fixture(scope="session")
def pretrain_corpus(tmp_path_factory) -> Path:
    """A corpus folder for pretraining, built by the corpus stage from the synthetic plans of 48
    videos without rendering them (visual words are a noisy function of colour and action; see
    tests/pretrain_corpus.py)."""
    from tests.pretrain_corpus import make_pretrain_corpus

    return make_pretrain_corpus(tmp_path_factory.mktemp("pretrain_corpus"), videos=48, seed=0)


@pytest.fixture(scope="session")
def eval_demo_run(synth_corpus, tmp_path_factory) -> dict:
    """A small run over the rendered synth_corpus videos made by the stage commands (vocab,
    tokenize, corpus, pretrain; planted clip features until extraction is merged), for the
    evaluate/retrieve commands and the notebook: ``run``, ``corpus``, ``labels``, ``vocab``
    (with exemplars); see tests/eval_data.py."""
    from tests.eval_data import make_demo_run

    return make_demo_run(synth_corpus, tmp_path_factory.mktemp("eval_demo"))


# A model folder that must work on its own (tests/test_model_folder.py, tests/test_notebook.py).
PORTABLE_RUN = {
    "synth": {"videos": 8, "seed": 3},
    "extract": {"size": 112, "fps": 10, "clip_frames": 15, "device": "cpu", "precision": "fp32"},
    "vocab": {"k": 4, "depth": 2, "min_points_per_centroid": 2, "device": "cpu", "exemplar_size": 32, "niter": 5},
    "tokenize": {"device": "cpu"},
    "pretrain": {"preset": "tiny", "steps": 40, "batch_size": 8, "max_len": 64, "device": "cpu", "eval_every": 0,
                 "save_every": 0, "log_every": 20, "lr": 1.0e-3, "warmup": 5},
    "distil": {"steps": 30, "batch_size": 8, "warmup": 5, "device": "cpu", "save_every": 0, "log_every": 0},
    "evaluate": {"device": "cpu"},
}


@pytest.fixture(scope="session")
def portable_model(tmp_path_factory):
    """A small pipeline run (videobert run: synthetic videos, extract, vocab, tokenize, corpus,
    pretrain, evaluate) whose model folder was copied elsewhere, and the run's other folders
    deleted (only the videos stay): what the copy must reproduce, and where it is."""
    import json
    import shutil

    import numpy as np

    from videobert.manifest import read_manifest

    root = tmp_path_factory.mktemp("portable")
    run, _ = run_config(root, PORTABLE_RUN)
    manifest = read_manifest(run / "synth" / "manifest.jsonl")
    tokens = {e.video_id: np.load(run / "tokens" / f"{e.video_id}.npy") for e in manifest}
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    copy = root / "elsewhere" / "my-model"
    shutil.copytree(run / "model", copy)
    for folder in ("features", "vocab", "tokens", "corpus", "model", "eval"):
        shutil.rmtree(run / folder)
    return {"copy": copy, "manifest": manifest, "tokens": tokens, "metrics": metrics, "run": run, "root": root}
