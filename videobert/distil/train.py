"""Distilling the cross-encoder into the dual encoder: batches, the loss, and the optimiser loop.

A batch is ``batch_size`` text-video examples of the train split (a seeded permutation per epoch,
:func:`videobert.training.batch_rows`: a resumed or a distributed run sees the same data; under
torchrun each rank takes its share of the batch, its in-batch pairs its own). The student scores every in-batch pair by a dot product, S = t·vᵀ / τ [B, B];
the teacher — the pretrained VideoBERT, frozen — scores the same B² pairs with its alignment head,
T [B, B]. The loss is

    (1 − w) · contrastive(S)  +  w · τ_d² · KL(softmax(T / τ_d) ‖ softmax(S / τ_d · τ))   (rows and columns)

where ``contrastive`` is the symmetric InfoNCE of the true pairs on the diagonal (text→video over
the rows, video→text over the columns), ``w`` the ``distil_weight`` and τ_d the
``teacher_temperature`` the teacher's logits are softened with (Hinton et al. 2015's τ² keeps the
two terms' gradients on one scale). With ``w = 0`` it is plain contrastive training.

With ``hard_negatives`` H > 0, every ``mine_every`` steps the student ranks the whole train split
(each text against every video, faiss inner product) and keeps, per text, the H videos it ranks
highest among those of other texts (a video whose text is the same words is no negative); each
later batch adds its texts' mined videos as extra columns: S and T become [B, B + E], text→video
over every column, video→text over the B true pairs' columns. The mined table is part of a
checkpoint, so a resumed run trains on the same batches.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from videobert.config import field
from videobert.dual import DualEncoder
from videobert.errors import ConfigError
from videobert.inference import LoadedModel
from videobert.inputs import build_input, collate_inputs, pad_multiple
from videobert.runtime import autocast, dist_env
from videobert.store import load_weights_folder
from videobert.training import (batch_rows, load_training_state, rng_state, save_checkpoint, set_rng_state,
                                warmup_linear_decay)

log = logging.getLogger(__name__)


@dataclass
class DistilOptions:
    """The student, the loss and the optimiser (a section of the distil config)."""

    dim: int = field(128, help="numbers per vector (the index stores one per segment)")
    shared: bool = field(True, help="one encoder for both towers (a projection each); false: an encoder per tower")
    pooling: str = field("mean", help="a tower's vector: mean of its token states (mean) or the [CLS] state (cls)")
    temperature: float = field(0.05, help="τ: the student's dot products are divided by it")
    distil_weight: float = field(0.5, help="w: share of the loss that is the teacher's in-batch scores (0: contrastive only)")
    teacher_temperature: float = field(2.0, help="τ_d: the teacher's and the student's scores are softened by it in the KL term")
    steps: int = field(600, help="optimiser steps")
    batch_size: int = field(32, help="text-video examples per step (the in-batch pairs are its square)")
    lr: float = field(1e-4, help="peak learning rate (AdamW), linear warmup then linear decay")
    warmup: int = field(60, help="steps of linear warmup")
    weight_decay: float = field(0.01, help="AdamW weight decay (not on biases and LayerNorms)")
    hard_negatives: int = field(0, help="videos per text added to each batch: the train videos the student ranks "
                                        "highest for it, other than its own (0: in-batch negatives only)")
    mine_every: int = field(100, help="steps between re-ranking the train split for hard negatives (from this step on)")
    seed: int = field(0, help="seed of the projections' init, the batches and dropout")

    def check(self) -> None:
        if self.pooling not in ("cls", "mean"):
            raise ConfigError("pooling: cls or mean")
        if not 8 <= self.dim <= 4096:
            raise ConfigError("dim: need 8 … 4096")
        if not self.temperature > 0 or not self.teacher_temperature > 0:
            raise ConfigError("temperature, teacher_temperature: need > 0")
        if not 0 <= self.distil_weight <= 1:
            raise ConfigError("distil_weight: need 0 … 1")
        if self.hard_negatives < 0 or self.mine_every < 1:
            raise ConfigError("hard_negatives: need >= 0; mine_every: need >= 1")
        if self.steps < 1 or self.batch_size < 2 or self.lr <= 0 or self.warmup < 0:
            raise ConfigError("steps: need >= 1; batch_size: need >= 2; lr: need > 0; warmup: need >= 0")


def distil_loss(student: torch.Tensor, teacher: torch.Tensor | None, options: DistilOptions) -> tuple[torch.Tensor, dict]:
    """The loss of one batch (module docstring): ``student`` [B, B + E] dot products of unit vectors
    (the true pairs on the diagonal, E mined videos after them), ``teacher`` the same pairs'
    alignment logits (None: contrastive only). Returns (loss, its parts)."""
    logits = student / options.temperature
    square = logits.shape[0]
    target = torch.arange(square, device=logits.device)
    contrastive = (F.cross_entropy(logits, target) + F.cross_entropy(logits[:, :square].T, target)) / 2
    parts = {"contrastive": float(contrastive.detach())}
    if teacher is None or options.distil_weight == 0:
        return contrastive, parts
    soft = options.teacher_temperature
    distil = torch.zeros((), device=logits.device)
    for s, t in ((logits, teacher), (logits[:, :square].T, teacher[:, :square].T)):
        distil = distil + F.kl_div(F.log_softmax(s / soft, dim=-1), F.log_softmax(t.float() / soft, dim=-1),
                                   log_target=True, reduction="batchmean") * soft * soft / 2
    parts["distil"] = float(distil.detach())
    weight = options.distil_weight
    return (1 - weight) * contrastive + weight * distil, parts


class Distiller:
    """The student, the frozen teacher and the optimiser on one rank; one step at a time."""

    def __init__(self, student: DualEncoder, teacher: LoadedModel, options: DistilOptions,
                 texts: Sequence[np.ndarray], videos: Sequence[np.ndarray]):
        self.student, self.teacher, self.options = student, teacher, options
        self.texts, self.videos = texts, videos
        self.device = teacher.device
        self.env = dist_env()
        decay = [p for p in student.parameters() if p.ndim >= 2]
        no_decay = [p for p in student.parameters() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": options.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=options.lr, betas=(0.9, 0.999), eps=1e-6, **({"fused": True} if self.device.type == "cuda" else {"foreach": True}))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, functools.partial(warmup_linear_decay, warmup=options.warmup, total=options.steps))
        self.mined: torch.Tensor | None = None  # [N, H] train rows: each text's hard negatives
        self.step_model = student
        if self.env.is_distributed:
            self.step_model = torch.nn.parallel.DistributedDataParallel(
                student, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _batch(self, sequences: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        batch = collate_inputs(sequences, self.teacher.layout.pad_id, pad_multiple(self.device))
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def local_rows(self, step: int) -> np.ndarray:
        """This rank's share of step ``step``'s batch (:func:`videobert.training.batch_rows`)."""
        rows = batch_rows(step, self.options.batch_size, len(self.texts), self.options.seed)
        return np.array_split(rows, self.env.world_size)[self.env.rank]

    @torch.no_grad()
    def teacher_scores(self, rows: np.ndarray, columns: np.ndarray) -> torch.Tensor:
        """[b, c] the teacher's alignment logits of the rows' texts against the columns' videos."""
        from videobert.retrieval.scoring import score_matrix

        scores = score_matrix(self.teacher, [self.texts[r] for r in rows], [self.videos[c] for c in columns])
        return torch.from_numpy(scores).to(self.device)

    @torch.no_grad()
    def mine(self) -> None:
        """Rank the train split with the current student and keep each text's hard negatives."""
        import faiss

        from videobert.dual import text_vectors, video_vectors

        wanted = self.options.hard_negatives
        self.student.eval()
        texts = text_vectors(self.student, self.teacher, self.texts)
        vectors = faiss.IndexFlatIP(texts.shape[1])
        vectors.add(video_vectors(self.student, self.teacher, self.videos))
        words = [tuple(np.asarray(t).tolist()) for t in self.texts]
        mined = np.empty((len(self.texts), wanted), np.int64)
        for first in range(0, len(self.texts), 4096):
            last = min(first + 4096, len(self.texts))
            depth = min(len(self.texts), 4 * wanted + 16)
            _, found = vectors.search(texts[first:last], depth)
            for row, ranked in zip(range(first, last), found):
                kept = [int(c) for c in ranked if c >= 0 and words[c] != words[row]][:wanted]
                mined[row] = (kept + [row] * wanted)[:wanted]  # too few: padded with itself, dropped in step()
        self.mined = torch.from_numpy(mined)

    def columns(self, rows: np.ndarray) -> np.ndarray:
        """The batch's videos: the rows' own, then their mined hard negatives (each once)."""
        if self.mined is None:
            return rows
        held = set(int(r) for r in rows)
        extra = []
        for c in self.mined[torch.from_numpy(rows)].reshape(-1).tolist():
            if c not in held:
                held.add(c)
                extra.append(c)
        return np.concatenate([rows, np.asarray(extra, np.int64)])

    def step(self, step: int) -> dict[str, float]:
        options = self.options
        if options.hard_negatives and step and step % options.mine_every == 0:
            self.mine()
        rows = self.local_rows(step)
        columns = self.columns(rows)
        layout, max_len = self.teacher.layout, self.teacher.max_len
        teacher = self.teacher_scores(rows, columns) if options.distil_weight > 0 else None
        texts = self._batch([build_input(layout, self.texts[r], None, max_len) for r in rows])
        videos = self._batch([build_input(layout, None, self.videos[c], max_len) for c in columns])
        self.student.train()
        with autocast(self.device, self.teacher.precision):
            t, v = self.step_model(texts, videos)
        loss, parts = distil_loss(t.float() @ v.float().T, teacher, self.options)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.student.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": float(loss.detach()), **parts}

    def save(self, folder: Path, step: int, keep: int) -> None:
        """Checkpoint ``step`` into ``folder/checkpoints`` (collective under torchrun)."""
        states: list = [rng_state()]
        if self.env.is_distributed:
            states = [None] * self.env.world_size
            torch.distributed.all_gather_object(states, rng_state())
        if self.env.is_main:
            state = {"step": step, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "rng": states, "world_size": self.env.world_size, "mined": self.mined}
            save_checkpoint(folder, step, self.student, state, keep)
        if self.env.is_distributed:
            torch.distributed.barrier()

    def restore(self, path: Path) -> int:
        """Load checkpoint folder ``path``; returns its step."""
        state = load_training_state(path)
        weights = load_weights_folder(path, type(self.student.config), DualEncoder, "dual encoder checkpoint")
        self.student.load_state_dict(weights.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        mined = state.get("mined")
        if self.options.hard_negatives and isinstance(mined, torch.Tensor):
            self.mined = mined.long()
        elif self.options.hard_negatives and state["step"] >= self.options.mine_every:
            self.mine()  # a checkpoint without the table: mined again from the restored student
        if state["world_size"] == self.env.world_size:
            set_rng_state(state["rng"][self.env.rank])
        else:
            log.warning("checkpoint was written by %d processes, resuming with %d: data order is unchanged, dropout "
                        "masks differ from an uninterrupted run", state["world_size"], self.env.world_size)
        log.info("resuming from %s (step %d)", path, state["step"])
        return int(state["step"])
