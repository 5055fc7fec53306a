"""What every training loop shares (pretraining, captioning, distillation): the learning-rate
schedule, seeded batches by step, and checkpoints that resume bit for bit and never execute code
from a file.

A checkpoint is a folder ``RUN/checkpoints/step-NNNNNNNN/`` with

* ``model.safetensors`` + ``config.json`` — the weights (loadable with ``VideoBERT.from_pretrained``);
* ``training_state.pt`` — optimizer, scheduler and gradient-scaler state, the random-number
  generator states of every rank, and the data position. It holds only tensors, numbers,
  strings, lists and dicts, and is read with ``torch.load(weights_only=True)``, which refuses
  anything else — a file carrying a pickled object (which could run code) is an error.

The folder is written under a temporary name and renamed into place, so a crash mid-write
leaves the previous checkpoint as the latest complete one.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videobert import config as cfgmod
from videobert.errors import ConfigError, InputError, StageError
from videobert.readers import read_json
from videobert.store import fsync_folder, safe_torch_load, temp_path_for

log = logging.getLogger(__name__)

STATE_FILE = "training_state.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_state() -> dict[str, Any]:
    """This process's torch, CUDA, NumPy and Python generator states, as tensors and plain data."""
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
        "numpy_pos": int(numpy_state[2]),
        "numpy_gauss": [int(numpy_state[3]), float(numpy_state[4])],
        "python": [python_state[0], list(python_state[1]), python_state[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(
        ("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], *state["numpy_gauss"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(train_dir: str | Path, step: int) -> Path:
    return Path(train_dir) / "checkpoints" / f"step-{step:08d}"


def list_checkpoints(train_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(train_dir) / "checkpoints"
    found = []
    for path in folder.glob("step-*") if folder.is_dir() else []:
        match = _STEP_DIR.match(path.name)
        if match and (path / STATE_FILE).exists() and (path / "model.safetensors").exists():
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(train_dir: str | Path, step: int, model, training_state: dict[str, Any], keep: int) -> Path:
    """Write checkpoint ``step`` atomically and keep only the ``keep`` most recent ones."""
    final = checkpoint_dir(train_dir, step)
    tmp = temp_path_for(final)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        torch.save(training_state, tmp / STATE_FILE)
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)
        full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or shutil.disk_usage(final.parent).free < (64 << 20)
        if full:
            raise StageError(f"{final.parent}: no space left on device while writing checkpoint {step}; the earlier "
                             "checkpoints are intact: free some space and resume") from None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise StageError(f"{final}: cannot write the checkpoint ({reason}); the earlier checkpoints are intact") from None
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_folder(final.parent)
    for _, old in list_checkpoints(train_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in final.parent.glob(".step-*.tmp.*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_training_state(path: str | Path) -> dict[str, Any]:
    """The ``training_state.pt`` of checkpoint folder ``path`` (safe load)."""
    state = safe_torch_load(Path(path) / STATE_FILE, "training state")
    if not isinstance(state, dict) or "step" not in state or "optimizer" not in state:
        raise InputError(f"{Path(path) / STATE_FILE}: not a VideoBERT training state")
    return state


def warmup_linear_decay(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: 0 → 1 over ``warmup`` steps, then linearly to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def batch_rows(step: int, batch_size: int, count: int, seed: int) -> np.ndarray:
    """Row indices of step ``step``'s batch of ``batch_size`` among ``count`` rows: the steps read
    one seeded permutation of the rows per epoch (epoch e: ``default_rng([seed, e])``), one after
    the other, so that a batch is a pure function of (seed, step) — a resumed run reads the same."""
    positions = np.arange(step * batch_size, (step + 1) * batch_size)
    epochs, offsets = np.divmod(positions, count)
    rows = np.empty(batch_size, np.int64)
    for epoch in np.unique(epochs):
        order = np.random.default_rng([seed, int(epoch)]).permutation(count)
        where = epochs == epoch
        rows[where] = order[offsets[where]]
    return rows


def resume_point(folder: Path, cfg: Any, steps: int, summary_file: str) -> tuple[list[Path] | None, dict | None]:
    """Where a ``--resume`` of the training run in ``folder`` starts: (its checkpoints, newest first,
    or None to start at step 0; or the summary ``summary_file`` of a run of ``steps`` steps already
    finished). Refuses a run whose saved ``config.yaml`` differs from ``cfg`` in anything but speed
    (:func:`videobert.config.settings`), naming each setting that changed."""
    saved_path = folder / "config.yaml"
    if saved_path.exists():
        saved, current = cfgmod.read_yaml(saved_path), cfgmod.settings(cfg)
        changed = sorted(k for k in current if saved.get(k) != current[k])
        if changed:
            differences = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
            raise ConfigError(f"{saved_path}: --resume with a different config ({differences}); "
                              "resume with the same settings or start a new run folder")
    finished = folder / summary_file
    if finished.exists():
        try:
            summary = read_json(finished, "run summary")
        except InputError as exc:
            log.warning("%s; resuming from the checkpoints instead", exc)
            summary = {}
        if isinstance(summary, dict) and summary.get("steps") == steps and (folder / "model.safetensors").exists():
            return None, summary
    checkpoints = list_checkpoints(folder)
    if not checkpoints:
        log.info("%s: no checkpoint to resume from; starting at step 0", folder)
        return None, None
    return [path for _, path in reversed(checkpoints)], None
