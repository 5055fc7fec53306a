"""Pretraining: the loop, optimiser and schedule, losses, validation, checkpoints, DDP.

The loss is the weighted sum of the objectives of the paper (§3.2), each switched off by a
weight of 0 and logged on its own:

* ``text_mlm`` — masked WordPieces of text-only sequences;
* ``video_mlm`` — masked visual words of video-only sequences;
* ``video_text_mlm`` — masked tokens of both sides of aligned video-text sequences;
* ``align`` — the [CLS] classifier on aligned vs. misaligned video-text sequences (binary
  cross-entropy).

Every masked-token loss is the mean cross-entropy over that objective's targets in the
micro-batch. Runs under ``torchrun`` use DistributedDataParallel: ``batch_size`` is the global
batch, split over ranks and accumulation steps, so a run's data and curves do not depend on
the number of processes. AdamW (decoupled weight decay, none on biases and LayerNorms), linear
warmup then linear decay to 0, gradient clipping, bf16 autocast on GPU and fp32 on CPU.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from videobert import config as cfgmod
from videobert.checkpoint import list_checkpoints, load_training_state, rng_state, save_checkpoint, set_rng_state
from videobert.config import field
from videobert.corpus import load_corpus, split_path
from videobert.data import (
    GROUP_NAMES, GROUP_PAIR_TEXT, GROUP_PAIR_VIDEO, GROUP_TEXT, GROUP_VIDEO, PAIR, TEXT, VIDEO, DataOptions,
    PretrainExamples, StepBatches, TokenLayout, validation_batches,
)
from videobert.device import autocast, resolve_device, resolve_precision
from videobert.distributed import dist_env
from videobert.errors import ConfigError, InputError, StageError
from videobert.logs import progress, progress_enabled
from videobert.model import ModelConfig, VideoBERT, bert_config, init_visual_embeddings, load_bert_weights
from videobert.store import atomic_write_json, atomic_write_text, prepare_output_dir
from videobert.vocabulary import JointVocabulary

log = logging.getLogger(__name__)

# Keys that may change when a run is resumed (they do not change what is computed).
RESUMABLE_CHANGES = {"eval_every", "eval_sentences", "save_every", "keep_checkpoints", "log_every", "num_workers", "device"}


@dataclass
class PretrainConfig:
    """Configuration of ``videobert pretrain`` (defaults: the paper's run, from scratch)."""

    preset: Literal["tiny", "base", "large"] = field("large", help="model size: tiny (tests), base, large (paper)")
    hidden_size: int | None = field(None, help="override the preset's hidden size")
    layers: int | None = field(None, help="override the preset's number of layers")
    heads: int | None = field(None, help="override the preset's number of attention heads")
    intermediate_size: int | None = field(None, help="override the preset's feed-forward size")
    dropout: float = field(0.1, help="dropout on embeddings, attention and blocks")
    initializer_range: float = field(0.02, help="std of the normal initialisation of weights trained from scratch "
                                     "(BERT: 0.02; small models learn alignment faster with ~0.1)")
    init: str = field("scratch", help="'scratch', or a local Hugging Face BERT folder whose encoder and text "
                      "embeddings start the model (paper: BERT-large); its sizes replace the preset's")
    freeze_embeddings: bool = field(False, help="keep the word-embedding table (and the tied output projection) fixed")
    text_mlm: float = field(1.0, help="weight of text-only masked language modelling (0: off)")
    video_mlm: float = field(1.0, help="weight of video-only masked visual words (0: off)")
    video_text_mlm: float = field(1.0, help="weight of masked tokens in aligned video-text pairs (0: off)")
    align: float = field(1.0, help="weight of the [CLS] text-video alignment classifier (0: off)")
    mask_prob: float = field(0.15, help="fraction of tokens of each modality that are masking targets")
    pair_share: float = field(0.5, help="share of sentences with text and video that become video-text sequences "
                              "(the rest: text-only or video-only, evenly)")
    batch_size: int = field(128, help="global batch (sequences per optimiser step, over all ranks)")
    grad_accum: int = field(1, help="micro-batches accumulated per optimiser step")
    lr: float = field(1e-5, help="peak learning rate (paper: 1e-5 from BERT-large; ~1e-4 from scratch)")
    warmup: int = field(10_000, help="linear warmup steps, then linear decay to 0 at 'steps'")
    steps: int = field(500_000, help="optimiser steps")
    weight_decay: float = field(0.01, help="AdamW weight decay (not on biases and LayerNorms)")
    clip: float = field(1.0, help="gradient-norm clipping (0: off)")
    max_len: int = field(256, help="longest sequence in tokens (video is cut first, then whole sentences)")
    negatives: Literal["other_video", "same_video_distant", "mixed"] = field(
        "other_video", help="where misaligned pairs take their video: another video, a distant part of the same one, or either")
    negative_min_distance: int = field(2, help="same_video_distant: sentences between a negative and its positive")
    concat_prob: float = field(0.3, help="probability of joining a sentence with the following ones")
    concat_max: int = field(3, help="most sentences joined into one sequence")
    subsample_max: int = field(5, help="video tokens are subsampled at a rate drawn from 1 … this")
    eval_every: int = field(5000, help="validate every N steps (0: only at the end)")
    eval_sentences: int = field(2000, help="validation sentences (each used once per objective it can feed)")
    save_every: int = field(5000, help="checkpoint every N steps (and always at the end)")
    keep_checkpoints: int = field(2, help="most recent checkpoints kept")
    log_every: int = field(100, help="log training losses every N steps")
    seed: int = field(0, help="seed of initialisation, data order, masks and dropout")
    device: Literal["auto", "cpu", "cuda"] = field("auto", help="auto: the GPU of this rank if there is one")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = field("auto", help="auto: bf16 autocast on GPU, fp32 on CPU")
    num_workers: int | None = field(None, help="data-loader processes (default: 0 on CPU, 4 on GPU)")
    compile: bool = field(False, help="torch.compile the model (GPU)")

    def check(self) -> None:
        weights = (self.text_mlm, self.video_mlm, self.video_text_mlm, self.align)
        if min(weights) < 0 or max(weights) == 0:
            raise ConfigError("text_mlm/video_mlm/video_text_mlm/align: weights must be >= 0 and one must be > 0")
        if self.batch_size < 1 or self.grad_accum < 1 or self.batch_size % self.grad_accum:
            raise ConfigError(f"batch_size {self.batch_size} must be a positive multiple of grad_accum {self.grad_accum}")
        if not 0 < self.mask_prob < 1:
            raise ConfigError("mask_prob: need 0 < mask_prob < 1")
        if self.steps < 1 or self.warmup < 0 or self.lr <= 0:
            raise ConfigError("steps, warmup, lr: need steps >= 1, warmup >= 0, lr > 0")
        if self.max_len < 8:
            raise ConfigError("max_len: need at least 8 tokens")
        if self.concat_max < 1 or self.subsample_max < 1 or self.negative_min_distance < 1:
            raise ConfigError("concat_max, subsample_max, negative_min_distance: need >= 1")
        if self.initializer_range <= 0:
            raise ConfigError("initializer_range: need > 0")
        if not 0 <= self.concat_prob <= 1 or not 0 <= self.pair_share <= 1 or not 0 <= self.dropout < 1:
            raise ConfigError("concat_prob, pair_share: need 0..1; dropout: need 0 <= dropout < 1")
        if min(self.save_every, self.eval_every, self.log_every, self.keep_checkpoints) < 0:
            raise ConfigError("save_every, eval_every, log_every, keep_checkpoints: need >= 0")
        if self.init != "scratch" and any(v is not None for v in (self.hidden_size, self.layers, self.heads, self.intermediate_size)):
            raise ConfigError("hidden_size/layers/heads/intermediate_size come from the BERT folder when init is one")

    def data_options(self, pad_to_multiple: int) -> DataOptions:
        kinds = [kind for kind, on in ((TEXT, self.text_mlm), (VIDEO, self.video_mlm),
                                       (PAIR, self.video_text_mlm + self.align)) if on > 0]
        return DataOptions(
            kinds=tuple(kinds), pair_share=self.pair_share, max_len=self.max_len, mask_prob=self.mask_prob,
            concat_prob=self.concat_prob, concat_max=self.concat_max, subsample_max=self.subsample_max,
            negatives=self.negatives, negative_min_distance=self.negative_min_distance, pad_to_multiple=pad_to_multiple,
        )


# ------------------------------------------------------------------------ model, optimiser, losses
def build_model(cfg: PretrainConfig, layout: TokenLayout, centroids: np.ndarray | None = None) -> VideoBERT:
    """A VideoBERT for ``layout``: from scratch (seeded) or from a BERT folder; visual-word rows
    from ``centroids`` [V, D] when given (random otherwise)."""
    torch.manual_seed(cfg.seed)
    if cfg.init == "scratch":
        config = ModelConfig.preset(
            cfg.preset, layout.text_vocab_size, layout.visual_vocab_size, hidden_size=cfg.hidden_size,
            layers=cfg.layers, heads=cfg.heads, intermediate_size=cfg.intermediate_size,
            dropout=cfg.dropout, attention_dropout=cfg.dropout, initializer_range=cfg.initializer_range,
        )
    else:
        sizes = bert_config(cfg.init)
        if sizes["text_vocab_size"] != layout.text_vocab_size:
            raise ConfigError(
                f"{cfg.init}: BERT vocabulary has {sizes['text_vocab_size']} entries but the corpus tokenizer has "
                f"{layout.text_vocab_size}; build the corpus with this BERT's tokenizer"
            )
        config = ModelConfig(**{**sizes, "visual_vocab_size": layout.visual_vocab_size,
                                "dropout": cfg.dropout, "attention_dropout": cfg.dropout})
    if cfg.max_len > config.max_positions:
        raise ConfigError(f"max_len {cfg.max_len} exceeds the model's {config.max_positions} positions")
    model = VideoBERT(config)
    if cfg.init != "scratch":
        load_bert_weights(model, cfg.init)
    if centroids is not None:
        init_visual_embeddings(model, centroids, seed=cfg.seed)
    if cfg.freeze_embeddings:
        model.freeze_embeddings()
    return model


def make_optimizer(model: VideoBERT, cfg: PretrainConfig, device: torch.device) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-6, fused=device.type == "cuda")


def warmup_linear_decay(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: 0 → 1 over ``warmup`` steps, then linearly to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def pretraining_losses(outputs, batch: dict[str, Any], cfg: PretrainConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted total and each objective's loss (detached) for one micro-batch from
    :func:`videobert.data.collate_training`. Objectives absent from the batch count 0 but keep
    their parameters in the graph (DistributedDataParallel expects every gradient)."""
    per_target = F.cross_entropy(outputs.mlm_logits.float(), batch["mlm_labels"], reduction="none")
    sums = torch.zeros(len(GROUP_NAMES), device=per_target.device).index_add(0, batch["mlm_groups"], per_target)
    counts = batch["group_counts"]
    pair_targets = counts[GROUP_PAIR_TEXT] + counts[GROUP_PAIR_VIDEO]
    parts = {
        "text_mlm": sums[GROUP_TEXT] / max(counts[GROUP_TEXT], 1),
        "video_mlm": sums[GROUP_VIDEO] / max(counts[GROUP_VIDEO], 1),
        "video_text_mlm": (sums[GROUP_PAIR_TEXT] + sums[GROUP_PAIR_VIDEO]) / max(pair_targets, 1),
    }
    rows = batch["align_rows"]
    if rows.numel():
        parts["align"] = F.binary_cross_entropy_with_logits(outputs.align_logits.float()[rows], batch["align_labels"])
    else:
        parts["align"] = outputs.align_logits.sum() * 0.0
    total = sum(getattr(cfg, name) * loss for name, loss in parts.items())
    if per_target.numel() == 0:
        total = total + outputs.mlm_logits.sum() * 0.0
    return total, {name: loss.detach() for name, loss in parts.items()}


@torch.no_grad()
def evaluate(model, batches: list[dict[str, Any]], device: torch.device, precision: str) -> dict[str, float]:
    """Masked-token accuracy per objective and modality, alignment accuracy, and losses, over the
    validation batches (summed over ranks)."""
    was_training = model.training
    model.eval()
    groups = len(GROUP_NAMES)
    # correct per group, targets per group, loss sum per group, align correct, align count, align loss sum
    totals = torch.zeros(3 * groups + 3, dtype=torch.float64, device=device)
    for batch in batches:
        batch = to_device(batch, device)
        with autocast(device, precision):
            out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["mlm_positions"])
        logits = out.mlm_logits.float()
        correct = (logits.argmax(-1) == batch["mlm_labels"]).double()
        loss = F.cross_entropy(logits, batch["mlm_labels"], reduction="none").double()
        totals[:groups] += torch.bincount(batch["mlm_groups"], weights=correct, minlength=groups)
        totals[groups : 2 * groups] += torch.bincount(batch["mlm_groups"], minlength=groups).double()
        totals[2 * groups : 3 * groups] += torch.bincount(batch["mlm_groups"], weights=loss, minlength=groups)
        align = out.align_logits.float()[batch["align_rows"]]
        totals[-3] += ((align > 0).float() == batch["align_labels"]).sum()
        totals[-2] += batch["align_rows"].numel()
        totals[-1] += F.binary_cross_entropy_with_logits(align, batch["align_labels"], reduction="sum")
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(totals)
    totals = totals.tolist()
    metrics: dict[str, float] = {}
    for g, name in enumerate(GROUP_NAMES):
        if totals[groups + g]:
            metrics[f"{name}_acc"] = totals[g] / totals[groups + g]
            metrics[f"{name}_loss"] = totals[2 * groups + g] / totals[groups + g]
    if totals[-2]:
        metrics["align_acc"] = totals[-3] / totals[-2]
        metrics["align_loss"] = totals[-1] / totals[-2]
    model.train(was_training)
    return metrics


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def parameter_digest(model: VideoBERT) -> str:
    """sha256 of every parameter's bytes, in order: equal digests mean bitwise-equal weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _identity(item):
    return item


# ------------------------------------------------------------------------ the run
class Trainer:
    """The model and its optimiser, schedule and gradient scaler on one rank: one optimiser step
    at a time, checkpoints out and back in."""

    def __init__(self, model: VideoBERT, cfg: PretrainConfig, device: torch.device, precision: str):
        self.model, self.cfg, self.device, self.precision = model, cfg, device, precision
        self.env = dist_env()
        self.optimizer = make_optimizer(model, cfg, device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, functools.partial(warmup_linear_decay, warmup=cfg.warmup, total=cfg.steps))
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.step_model = model
        if self.env.is_distributed:
            self.step_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
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
                loss, parts = pretraining_losses(outputs, batch, self.cfg)
                self.scaler.scale(loss / len(micro_batches)).backward()
            sums += torch.stack([loss.detach(), *parts.values()]) / len(micro_batches)
        if self.cfg.clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return sums

    def save(self, run_dir: Path, step: int, data_position: dict[str, int]) -> None:
        """Checkpoint ``step`` (collective under torchrun: every rank's RNG states go in)."""
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
            save_checkpoint(run_dir, step, self.model, state, self.cfg.keep_checkpoints)
        if self.env.is_distributed:
            torch.distributed.barrier()

    def restore(self, path: Path) -> int:
        """Load checkpoint folder ``path``; returns its step."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        state = load_training_state(path)
        try:
            weights = load_file(str(path / "model.safetensors"))
        except (SafetensorError, OSError) as exc:
            raise InputError(f"{path / 'model.safetensors'}: unreadable checkpoint weights ({exc})") from None
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


class _Curves:
    """log.jsonl and TensorBoard (rank 0 only); a resumed run continues the curve from its checkpoint."""

    def __init__(self, run_dir: Path, is_main: bool, start_step: int):
        self.is_main = is_main
        if not is_main:
            return
        log_path = run_dir / "log.jsonl"
        kept = []
        if log_path.exists():
            kept = [line for line in log_path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line)["step"] <= start_step]
        atomic_write_text(log_path, "".join(line + "\n" for line in kept))
        self._log = open(log_path, "a", encoding="utf-8")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)

    def record(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.is_main:
            return
        self._log.write(json.dumps({"step": step, "split": split, **{k: round(v, 6) for k, v in metrics.items()}}) + "\n")
        self._log.flush()
        for name, value in metrics.items():
            self.writer.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        if self.is_main:
            self._log.close()
            self.writer.close()


class _Window:
    """Training losses and tokens since the last log line."""

    def __init__(self):
        self.sums: torch.Tensor | None = None
        self.steps = self.tokens = 0
        self.began = time.perf_counter()

    def add(self, parts: torch.Tensor, tokens: int) -> None:
        self.sums = parts if self.sums is None else self.sums + parts
        self.steps += 1
        self.tokens += tokens

    def metrics(self, lr: float) -> dict[str, float]:
        """Mean losses over the window and all ranks (collective under torchrun), lr, tokens/s."""
        means = self.sums / self.steps
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(means)
            means /= torch.distributed.get_world_size()
        metrics = dict(zip(("loss", "text_mlm", "video_mlm", "video_text_mlm", "align"), means.tolist()))
        metrics.update(lr=lr, tokens_per_s=self.tokens / max(time.perf_counter() - self.began, 1e-9))
        return metrics


def _existing_run(run_dir: Path, cfg: PretrainConfig, resume: bool) -> tuple[Path | None, dict | None]:
    """(the checkpoint to resume from, or the summary of a run already finished); refuses to
    overwrite a run without ``resume`` and to resume one with a different config."""
    checkpoints = list_checkpoints(run_dir)
    finished = run_dir / "summary.json"
    if not resume:
        if finished.exists():
            raise ConfigError(f"{run_dir} already holds a trained model; choose another folder")
        if checkpoints:
            raise ConfigError(f"{run_dir} holds checkpoints (last: step {checkpoints[-1][0]}); "
                              "pass --resume to continue that run or choose another folder")
        return None, None
    saved_path = run_dir / "config.yaml"
    if saved_path.exists():
        saved, current = cfgmod.read_yaml(saved_path), cfgmod.to_dict(cfg)
        changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
        if changed:
            differences = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
            raise ConfigError(f"{saved_path}: --resume with a different config ({differences}); "
                              "resume with the same settings or start a new run folder")
    if finished.exists():
        summary = json.loads(finished.read_text(encoding="utf-8"))
        if summary.get("steps") == cfg.steps:
            return None, summary
    if not checkpoints:
        log.info("%s: no checkpoint to resume from; starting at step 0", run_dir)
        return None, None
    return checkpoints[-1][1], None


def pretrain(
    corpus_dir: str | Path,
    run_dir: str | Path,
    cfg: PretrainConfig,
    centroids: np.ndarray | None = None,
    visual_vocab: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train a VideoBERT on ``corpus_dir`` into ``run_dir``; returns the summary (``summary.json``).

    ``centroids`` [V, D]: the visual vocabulary's word vectors for the visual embeddings
    (``visual_vocab`` is its folder, recorded in the run's ``vocabulary.json``). ``resume``
    continues from the latest checkpoint in ``run_dir``. Under torchrun every rank calls this.
    """
    corpus_dir, run_dir = Path(corpus_dir), Path(run_dir)
    env = dist_env()
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    if cfg.batch_size % (cfg.grad_accum * env.world_size):
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by grad_accum × processes "
                          f"({cfg.grad_accum} × {env.world_size})")
    resume_from, finished = _existing_run(run_dir, cfg, resume)
    if finished is not None:
        log.info("%s: already trained for %d steps; nothing to do", run_dir, cfg.steps)
        return finished
    if env.is_distributed and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")

    vocab = JointVocabulary.load(corpus_dir)
    if visual_vocab is not None:
        vocab.visual_vocab = str(visual_vocab)
    layout = TokenLayout.from_vocabulary(vocab)
    options = cfg.data_options(pad_to_multiple=8 if device.type == "cuda" else 1)
    train_examples = PretrainExamples(load_corpus(corpus_dir, "train"), layout, options)
    val_examples = None
    if split_path(corpus_dir, "val").exists():
        val_examples = PretrainExamples(load_corpus(corpus_dir, "val"), layout, options)
    else:
        log.warning("%s: no val split; validation is skipped", corpus_dir)

    model = build_model(cfg, layout, centroids).to(device)
    trainer = Trainer(model, cfg, device, precision)
    torch.manual_seed(cfg.seed + 1 + env.rank)  # dropout streams differ by rank
    start_step = trainer.restore(resume_from) if resume_from is not None else 0
    if env.is_main:
        prepare_output_dir(run_dir)
        cfgmod.save(cfg, run_dir / "config.yaml")
        vocab.save(run_dir)

    batches = StepBatches(train_examples, cfg.batch_size, cfg.grad_accum, cfg.seed, env.rank, env.world_size)
    workers = cfg.num_workers if cfg.num_workers is not None else (4 if device.type == "cuda" else 0)
    loader = torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=range(start_step, cfg.steps), num_workers=workers,
        collate_fn=_identity, pin_memory=device.type == "cuda",
        # its own generator: creating the loader must not draw from the global RNG (bitwise resume)
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    val_batches = []
    if val_examples is not None:
        val_batches = validation_batches(val_examples, batches.micro_batch, cfg.seed, cfg.eval_sentences,
                                         env.rank, env.world_size)
    if env.is_main:
        log.info("pretrain: %d layers x %d hidden (%s), %.1f M parameters, %d train / %d val sentences, %s %s, "
                 "%d process(es), steps %d -> %d", model.config.layers, model.config.hidden_size,
                 cfg.preset if cfg.init == "scratch" else cfg.init, sum(p.numel() for p in model.parameters()) / 1e6,
                 len(train_examples), len(val_examples or []), device, precision, env.world_size, start_step, cfg.steps)

    curves = _Curves(run_dir, env.is_main, start_step)
    bar = progress(total=cfg.steps, initial=start_step, desc="pretrain", unit="step",
                   disable=not (env.is_main and progress_enabled()))
    val_metrics: dict[str, float] = {}
    window = _Window()
    model.train()
    try:
        for step, micro_batches in enumerate(loader, start=start_step + 1):
            window.add(trainer.step(micro_batches), sum(b["tokens"] for b in micro_batches) * env.world_size)
            bar.update(1)
            last = step == cfg.steps
            if cfg.log_every and (step % cfg.log_every == 0 or last):
                metrics = window.metrics(trainer.scheduler.get_last_lr()[0])
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", tok_s=f"{metrics['tokens_per_s']:.0f}")
                curves.record(step, "train", metrics)
                window = _Window()
            # decided by val_examples, never by this rank's share of batches: evaluate() is collective
            if val_examples is not None and ((cfg.eval_every and step % cfg.eval_every == 0) or last):
                val_metrics = evaluate(model, val_batches, device, precision)
                curves.record(step, "val", val_metrics)
                log.info("step %d validation: %s", step, ", ".join(f"{k} {v:.3f}" for k, v in val_metrics.items()))
            if (cfg.save_every and step % cfg.save_every == 0) or last:
                trainer.save(run_dir, step, batches.position(step))
    finally:
        bar.close()
        curves.close()

    digest, identical = trainer.replicas_identical()
    if not identical:
        raise StageError("the ranks' weights diverged (DistributedDataParallel desynchronised); the run is invalid")
    summary = {
        "steps": cfg.steps,
        "world_size": env.world_size,
        "device": str(device),
        "precision": precision,
        "parameters": sum(p.numel() for p in model.parameters()),
        "parameter_sha256": digest,
        "replicas_identical": identical,
        "val": val_metrics,
        "chance": {"text_acc": 1 / layout.text_vocab_size, "video_acc": 1 / layout.visual_vocab_size, "align_acc": 0.5},
    }
    if env.is_main:
        model.save_pretrained(run_dir)
        atomic_write_json(run_dir / "summary.json", summary)
    if env.is_distributed:
        torch.distributed.barrier()
    return summary


def load_centroids(vocab_dir: str | Path) -> np.ndarray:
    """Word vectors [V, D] of a visual vocabulary folder (``videobert.vocab.load(VOCAB).word_vectors()``)."""
    from videobert import vocab as vocabmod

    return np.asarray(vocabmod.load(vocab_dir).word_vectors(), dtype=np.float32)

