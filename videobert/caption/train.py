"""Training a captioner: teacher forcing with label smoothing, AdamW, linear warmup and decay.

The batches are a function of the step alone — step s takes rows ``s·B … s·B+B-1`` of the
sequence of epochs, epoch e a permutation drawn from ``[seed, e]`` — so a run resumed from a
checkpoint (weights, optimiser, schedule, random-number states) continues with the same batches
and, on CPU, ends with the same weights bit for bit as one that was never stopped.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from videobert.caption.model import Captioner, CaptionerConfig
from videobert.config import field
from videobert.errors import ConfigError
from videobert.inputs import IGNORE
from videobert.training import (batch_rows, list_checkpoints, load_training_state, rng_state, save_checkpoint,
                                set_rng_state, warmup_linear_decay)

log = logging.getLogger(__name__)


@dataclass
class TrainingConfig:
    """How a captioner is trained (a section of ``videobert caption train``'s config)."""

    steps: int = field(2000, help="optimiser steps")
    batch_size: int = field(64, help="captions per step")
    lr: float = field(5e-4, help="peak learning rate (AdamW)")
    warmup: int = field(100, help="steps of linear warmup, then linear decay to 0")
    weight_decay: float = field(0.01, help="AdamW weight decay")
    label_smoothing: float = field(0.1, help="label smoothing of the caption loss")
    seed: int = field(0, help="seed of the initial weights, the batches and dropout")
    save_every: int = field(500, speed_only=True, help="checkpoint every this many steps (0: only at the end)")
    keep_checkpoints: int = field(2, speed_only=True, help="checkpoints kept")
    log_every: int = field(100, speed_only=True, help="log the loss every this many steps")

    def check(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("steps, batch_size: need >= 1")
        if self.lr <= 0 or self.warmup < 0 or self.save_every < 0 or not 0 <= self.label_smoothing < 1:
            raise ConfigError("lr: need > 0; warmup, save_every: need >= 0; label_smoothing: 0 … <1")


def caption_targets(captions: Sequence[Sequence[int]], config: CaptionerConfig) -> list[np.ndarray]:
    """``[CLS] caption [SEP]`` per caption, the caption cut to fit ``max_len``."""
    room = config.max_len - 2
    return [np.array([config.bos_id, *list(c)[:room], config.eos_id], np.int64) for c in captions]


def collate(targets: Sequence[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs (all but the last token) and labels (all but the first; padding ignored), [B, T]."""
    length = max(len(t) for t in targets) - 1
    inputs = np.full((len(targets), length), pad_id, np.int64)
    labels = np.full((len(targets), length), IGNORE, np.int64)
    for row, target in enumerate(targets):
        inputs[row, : len(target) - 1] = target[:-1]
        labels[row, : len(target) - 1] = target[1:]
    return torch.from_numpy(inputs), torch.from_numpy(labels)


def train_captioner(features: np.ndarray, captions: Sequence[Sequence[int]], config: CaptionerConfig,
                    cfg: TrainingConfig, out_dir: str | Path, device: torch.device, resume: bool = False,
                    on_step: Callable[[int, float], None] | None = None) -> Captioner:
    """Train on ``features`` float [n, D] and their WordPiece ``captions``; checkpoints in
    ``out_dir/checkpoints``. ``resume`` continues from the latest one. ``on_step(step, loss)`` is
    called after every step (progress; a test stops a run with it)."""
    torch.manual_seed(cfg.seed)
    model = Captioner(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  foreach=device.type == "cpu" or None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(warmup_linear_decay, warmup=cfg.warmup, total=cfg.steps))
    start = 0
    found = list_checkpoints(out_dir) if resume else []
    if found:
        step, path = found[-1]
        state = load_training_state(path)
        model.load_state_dict(Captioner.from_pretrained(path).state_dict())
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start = int(state["step"])
        log.info("caption: resuming at step %d of %d (%s)", start, cfg.steps, path)
    targets = caption_targets(captions, config)
    table = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    model.train()
    for step in range(start, cfg.steps):
        rows = batch_rows(step, cfg.batch_size, len(targets), cfg.seed)
        inputs, labels = collate([targets[r] for r in rows], config.pad_id)
        logits = model(table[torch.from_numpy(rows)].to(device), inputs.to(device))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.to(device).reshape(-1),
                               ignore_index=IGNORE, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        done = step + 1
        if cfg.log_every and done % cfg.log_every == 0:
            log.info("caption step %d/%d: loss %.3f, lr %.2e", done, cfg.steps, loss.item(), scheduler.get_last_lr()[0])
        if (cfg.save_every and done % cfg.save_every == 0) or done == cfg.steps:
            save_checkpoint(out_dir, done, model, {"step": done, "optimizer": optimizer.state_dict(),
                                                   "scheduler": scheduler.state_dict(), "rng": rng_state()},
                            cfg.keep_checkpoints)
        if on_step is not None:
            on_step(done, float(loss.item()))
    return model.eval()
