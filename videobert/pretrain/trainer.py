"""The optimiser step on one rank: AdamW (decoupled weight decay, none on biases and LayerNorms),
linear warmup then linear decay to 0, gradient clipping, gradient accumulation, mixed precision
and DistributedDataParallel — and checkpoints out and back in.

Under ``torchrun`` ``batch_size`` is the global batch, split over ranks and accumulation steps, so
a run's data and curves do not depend on the number of processes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videobert.config import field
from videobert.errors import ConfigError
from videobert.model import VideoBERT
from videobert.readers import load_safetensors
from videobert.training import load_training_state, rng_state, save_checkpoint, set_rng_state, warmup_linear_decay
from videobert.pretrain.data import to_device
from videobert.pretrain.losses import LossWeights, pretraining_losses
from videobert.runtime import autocast, dist_env

log = logging.getLogger(__name__)


@dataclass
class OptimConfig:
    """The optimiser and its schedule (a section of the pretraining config)."""

    batch_size: int = field(128, help="global batch (sequences per optimiser step, over all ranks)")
    grad_accum: int = field(1, help="micro-batches accumulated per optimiser step")
    lr: float = field(1e-5, help="peak learning rate (paper: 1e-5 from BERT-large; ~1e-4 from scratch)")
    warmup: int = field(10_000, help="linear warmup steps, then linear decay to 0 at 'steps'")
    steps: int = field(500_000, help="optimiser steps")
    weight_decay: float = field(0.01, help="AdamW weight decay (not on biases and LayerNorms)")
    clip: float = field(1.0, help="gradient-norm clipping (0: off)")

    def check(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1 or self.batch_size % self.grad_accum:
            raise ConfigError(f"batch_size {self.batch_size} must be a positive multiple of grad_accum {self.grad_accum}")
        if self.steps < 1 or self.warmup < 0 or self.lr <= 0:
            raise ConfigError("steps, warmup, lr: need steps >= 1, warmup >= 0, lr > 0")


def make_optimizer(model: VideoBERT, cfg: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused kernels on CUDA; elsewhere the multi-tensor path, which gives the one-tensor-at-a-time
    # loop's results bit for bit with a fraction of its Python overhead
    speed = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-6, **speed)


def parameter_digest(model: VideoBERT) -> str:
    """sha256 of every parameter's bytes, in order: equal digests mean bitwise-equal weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Trainer:
    """The model and its optimiser, schedule and gradient scaler on one rank: one optimiser step
    at a time, checkpoints out and back in."""

    def __init__(self, model: VideoBERT, optim: OptimConfig, weights: LossWeights, device: torch.device,
                 precision: str, compile: bool = False):
        self.model, self.optim, self.weights, self.device, self.precision = model, optim, weights, device, precision
        self.env = dist_env()
        self.optimizer = make_optimizer(model, optim, device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, functools.partial(warmup_linear_decay, warmup=optim.warmup, total=optim.steps))
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.step_model = model
        if self.env.is_distributed:
            self.step_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if compile:
            self.step_model = torch.compile(self.step_model, dynamic=True)

    def step(self, micro_batches: list[dict[str, Any]]) -> torch.Tensor:
        """One optimiser step over this rank's micro-batches; returns the loss parts [5] (total, then
        ``text_mlm, video_mlm, video_text_mlm, align``), detached, averaged over the micro-batches."""
        sums = torch.zeros(5, device=self.device)
        for index, batch in enumerate(micro_batches):
            batch = to_device(batch, self.device)
            accumulating = index < len(micro_batches) - 1 and hasattr(self.step_model, "no_sync")
            with self.step_model.no_sync() if accumulating else contextlib.nullcontext():
                with autocast(self.device, self.precision):
                    outputs = self.step_model(batch["input_ids"], batch["token_type_ids"],
                                              batch["attention_mask"] if batch["padded"] else None, batch["mlm_positions"])
                loss, parts = pretraining_losses(outputs, batch, self.weights)
                self.scaler.scale(loss / len(micro_batches)).backward()
            sums += torch.stack([loss.detach(), *parts.values()]) / len(micro_batches)
        if self.optim.clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return sums

    def save(self, model_dir: Path, step: int, data_position: dict[str, int], keep: int) -> None:
        """Checkpoint ``step``, keeping the ``keep`` most recent (collective under torchrun: every
        rank's RNG states go in)."""
        states: list = [rng_state()]
        if self.env.is_distributed:
            states = [None] * self.env.world_size
            torch.distributed.all_gather_object(states, rng_state())
        if self.env.is_main:
            state = {
                "step": step,
                "data_position": data_position,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": states,
                "world_size": self.env.world_size,
            }
            save_checkpoint(model_dir, step, self.model, state, keep)
        if self.env.is_distributed:
            torch.distributed.barrier()

    def restore(self, path: Path) -> int:
        """Load checkpoint folder ``path``; returns its step."""
        state = load_training_state(path)
        weights = load_safetensors(path / "model.safetensors", "checkpoint weights")
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if state["world_size"] == self.env.world_size:
            set_rng_state(state["rng"][self.env.rank])
        else:
            log.warning("checkpoint was written by %d processes, resuming with %d: data order is unchanged, "
                        "dropout masks differ from an uninterrupted run", state["world_size"], self.env.world_size)
        log.info("resuming from %s (step %d)", path, state["step"])
        return int(state["step"])

    def replicas_identical(self) -> tuple[str, bool]:
        """This rank's parameter digest, and whether every rank holds the same one."""
        digest = parameter_digest(self.model)
        if not self.env.is_distributed:
            return digest, True
        mine = torch.tensor(list(bytes.fromhex(digest)), dtype=torch.int64, device=self.device)
        gathered = [torch.empty_like(mine) for _ in range(self.env.world_size)]
        torch.distributed.all_gather(gathered, mine)
        return digest, all(torch.equal(g, gathered[0]) for g in gathered)
