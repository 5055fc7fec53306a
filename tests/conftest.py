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


@pytest.fixture(scope="module")
def one_thread():
    """torch on one CPU thread for the module's tests."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    import torch

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
