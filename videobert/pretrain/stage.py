"""The pretrain stage: CORPUS (+ VOCAB) -> RUN (docs/formats.md).

``run`` checks what the RUN folder already holds (a finished run is kept; checkpoints need
``resume``, and resuming needs the same settings, less those that only change speed), creates
the folder, writes ``config.yaml`` and the joint vocabulary, trains with the
:class:`~videobert.pretrain.trainer.Trainer`, writes ``log.jsonl`` and TensorBoard curves (rank 0),
checkpoints every ``save_every`` steps, and at the end the model (``model.safetensors`` +
``config.json``), the rest of a self-contained model folder (:mod:`videobert.pretrain.package`: the
visual vocabulary, feature settings) and ``summary.json``, then the model card. Under ``torchrun`` every rank calls it
(DistributedDataParallel).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from videobert import config as cfgmod
from videobert.bert_import import bert_config, init_visual_embeddings, load_bert_weights
from videobert.config import field
from videobert.corpus.joint_vocab import JointVocabulary
from videobert.corpus.reader import CorpusSplit, check_complete, corpus_summary, corpus_tokens_dir
from videobert.errors import ConfigError, InputError, StageError
from videobert.logs import progress, progress_enabled
from videobert.threads import restore_threads, training_threads
from videobert.model import ModelConfig, VideoBERT
from videobert.model_card import write_model_card
from videobert.pretrain.package import package
from videobert.training import list_checkpoints, resume_point
from videobert.inputs import TokenLayout, pad_multiple
from videobert.pretrain.data import DataConfig, PretrainExamples, StepBatches, VideoClips, validation_batches
from videobert.pretrain.losses import LOSS_NAMES, LossWeights, validation_metrics
from videobert.pretrain.trainer import OptimConfig, Trainer
from videobert.runtime import DeviceName, Precision, dist_env, process_group, resolve_device, resolve_precision
from videobert.store import (
    FolderLock, StageSummary, atomic_write_json, atomic_write_text, prepare_output_dir, read_jsonl,
    UnsafeFileError,
)
from videobert.vocab.stage import load_centroids

log = logging.getLogger(__name__)


@dataclass
class ModelOptions:
    """The network trained (a section of the pretraining config)."""

    preset: Literal["tiny", "base", "large"] = field("large", help="model size: tiny (tests), base, large (paper)")
    hidden_size: int | None = field(None, help="override the preset's hidden size")
    layers: int | None = field(None, help="override the preset's number of layers")
    heads: int | None = field(None, help="override the preset's number of attention heads")
    intermediate_size: int | None = field(None, help="override the preset's feed-forward size")
    dropout: float = field(0.1, help="dropout on embeddings, blocks and (unless attention_dropout) attention")
    attention_dropout: float | None = field(None, help="dropout on the attention probabilities (none: dropout); on a CPU "
                                            "it is most of the cost of attention")
    initializer_range: float = field(0.02, help="std of the normal initialisation of weights trained from scratch "
                                     "(BERT: 0.02; small models learn alignment faster with ~0.1)")
    init: str = field("scratch", help="'scratch', or a local Hugging Face BERT folder whose encoder and text "
                      "embeddings start the model (paper: BERT-large); its sizes replace the preset's")
    freeze_embeddings: bool = field(False, help="keep the word-embedding table (and the tied output projection) fixed")

    @property
    def attention_probability_dropout(self) -> float:
        return self.dropout if self.attention_dropout is None else self.attention_dropout

    def check(self) -> None:
        if self.initializer_range <= 0:
            raise ConfigError("initializer_range: need > 0")
        if not 0 <= self.dropout < 1 or not 0 <= self.attention_probability_dropout < 1:
            raise ConfigError("dropout, attention_dropout: need 0 <= dropout < 1")
        if self.init != "scratch" and any(v is not None for v in (self.hidden_size, self.layers, self.heads, self.intermediate_size)):
            raise ConfigError("hidden_size/layers/heads/intermediate_size come from the BERT folder when init is one")


@dataclass
class PretrainConfig(OptimConfig, DataConfig, LossWeights, ModelOptions):
    """Configuration of ``videobert pretrain`` (defaults: the paper's run, from scratch): the model,
    the loss weights, how sequences are built, the optimiser, then validation, checkpoints and
    where it runs. The sections are passed on as they are: this config *is* the
    :class:`~videobert.pretrain.data.DataConfig` the data path reads, and so on."""

    eval_every: int = field(5000, speed_only=True, help="validate every N steps (0: only at the end)")
    eval_sentences: int = field(2000, help="validation sentences (each used once per objective it can feed)")
    val_share: float = field(0.05, help="without val examples in the corpus: share of the train videos held out "
                                        "for validation, chosen by seed (0: train without validation)")
    save_every: int = field(5000, speed_only=True, help="checkpoint every N steps (and always at the end)")
    keep_checkpoints: int = field(2, speed_only=True, help="most recent checkpoints kept")
    log_every: int = field(100, speed_only=True, help="log training losses every N steps")
    seed: int = field(0, help="seed of initialisation, data order, masks and dropout")
    device: DeviceName = field("auto", help="auto: the GPU of this rank if there is one")
    precision: Precision = field("auto", help="auto: bf16 autocast on GPU, fp32 on CPU")
    num_workers: int | None = field(None, speed_only=True, help="data-loader processes (default: 0 on CPU, 4 on GPU)")
    compile: bool = field(False, help="torch.compile the model (GPU)")

    def check(self) -> None:
        for section in (ModelOptions, LossWeights, DataConfig, OptimConfig):
            section.check(self)
        if min(self.save_every, self.eval_every, self.log_every, self.keep_checkpoints) < 0:
            raise ConfigError("save_every, eval_every, log_every, keep_checkpoints: need >= 0")
        if not 0 <= self.val_share < 1:
            raise ConfigError("val_share: need 0 <= val_share < 1")


def build_model(cfg: PretrainConfig, layout: TokenLayout, centroids: np.ndarray | None = None) -> VideoBERT:
    """A VideoBERT for ``layout``: from scratch (seeded) or from a BERT folder; visual-word rows
    from ``centroids`` [V, D] when given (random otherwise)."""
    torch.manual_seed(cfg.seed)
    if cfg.init == "scratch":
        config = ModelConfig.preset(
            cfg.preset, layout.text_vocab_size, layout.visual_vocab_size, hidden_size=cfg.hidden_size,
            layers=cfg.layers, heads=cfg.heads, intermediate_size=cfg.intermediate_size,
            dropout=cfg.dropout, attention_dropout=cfg.attention_probability_dropout, initializer_range=cfg.initializer_range,
        )
    else:
        sizes = bert_config(cfg.init)
        if sizes["text_vocab_size"] != layout.text_vocab_size:
            raise ConfigError(
                f"{cfg.init}: BERT vocabulary has {sizes['text_vocab_size']} entries but the corpus tokenizer has "
                f"{layout.text_vocab_size}; build the corpus with this BERT's tokenizer"
            )
        config = ModelConfig(**{**sizes, "visual_vocab_size": layout.visual_vocab_size,
                                "dropout": cfg.dropout, "attention_dropout": cfg.attention_probability_dropout})
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


def run(corpus_dir: str | Path, out_dir: str | Path, cfg: PretrainConfig, vocab_dir: str | Path | None = None,
        resume: bool = False) -> StageSummary:
    """Train a VideoBERT on ``corpus_dir`` into ``out_dir``; the summary's ``details`` is
    ``summary.json``.

    ``vocab_dir``: the visual vocabulary whose centroids start the visual-word embeddings
    (default: the one the corpus was built with, if it is still there; without any they start
    random). ``resume`` continues from the latest checkpoint in ``out_dir``.
    """
    began = time.perf_counter()
    corpus_dir, model_dir = Path(corpus_dir), Path(out_dir)
    env = dist_env()
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    if cfg.batch_size % (cfg.grad_accum * env.world_size):
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by grad_accum × processes "
                          f"({cfg.grad_accum} × {env.world_size})")
    check_complete(corpus_dir)
    vocab = JointVocabulary.load(corpus_dir)
    if vocab_dir is None:
        recorded = vocab.visual_vocab
        if recorded and (Path(recorded) / "codebook.npz").exists():
            vocab_dir = Path(recorded)
            log.info("visual-word embeddings from %s, the vocabulary the corpus was built with", vocab_dir)
        else:
            log.warning("no --vocab: visual-word embeddings start random instead of from the codebook centroids")
    centroids = load_centroids(vocab_dir) if vocab_dir is not None else None
    resume_from, finished = _existing_run(model_dir, cfg, resume)
    if finished is not None:
        log.info("%s: already trained for %d steps; nothing to do", model_dir, cfg.steps)
        return StageSummary("pretrain", model_dir, 0, cfg.steps, 0, time.perf_counter() - began, _message(finished), finished)
    if env.is_distributed and device.type == "cuda":
        torch.cuda.set_device(device)
    lock = contextlib.nullcontext()
    if env.is_main:  # a second run writing into this folder is refused
        lock = FolderLock(prepare_output_dir(model_dir) / ".pretrain.lock")
    with lock, process_group(env.is_distributed, "nccl" if device.type == "cuda" else "gloo"):
        summary, start_step = _train(corpus_dir, model_dir, cfg, vocab, centroids, vocab_dir, resume_from, device, precision)
    return StageSummary("pretrain", model_dir, cfg.steps - start_step, start_step, 0, time.perf_counter() - began,
                        _message(summary), summary)


def _message(summary: dict[str, Any]) -> str:
    val = summary.get("val") or {}
    if not val:
        return f"{summary['steps']} steps, no validation split"
    return "validation: " + ", ".join(f"{k} {v:.3f}" for k, v in val.items())


def forecast_clips(corpus_dir: Path, split: CorpusSplit, layout: TokenLayout, report: bool) -> VideoClips | None:
    """Every clip's visual word of ``split``'s videos, for forecasting sequences: from the TOKENS
    folder the corpus records it was built from. None (logged) where that folder is gone; videos
    it lacks or whose words differ from the corpus's are logged and read from their sentences."""
    tokens = corpus_tokens_dir(corpus_dir)
    if tokens is None:
        if report:
            log.warning("%s: the tokens folder the corpus was built from is gone: forecasting sequences read the "
                        "sentences' clips only, without the pauses between them", corpus_dir)
        return None
    clips, unusable = VideoClips.read(split, tokens, layout.visual_vocab_size)
    if unusable and report:
        log.warning("%s: %d videos of the %s split have no visual words there, or other ones than the corpus's "
                    "(re-tokenized since?): their forecasting sequences read their sentences' clips", tokens, unusable,
                    split.split)
    return clips


def _train(corpus_dir: Path, model_dir: Path, cfg: PretrainConfig, vocab: JointVocabulary, centroids: np.ndarray | None,
           vocab_dir: str | Path | None, resume_from: list[Path] | None, device: torch.device,
           precision: str) -> tuple[dict[str, Any], int]:
    env = dist_env()
    if vocab_dir is not None:
        vocab.visual_vocab = str(vocab_dir)
    layout = TokenLayout.from_vocabulary(vocab)
    kinds, pad_to = cfg.kinds(), pad_multiple(device)
    train_split, val_split = CorpusSplit(corpus_dir, "train"), CorpusSplit(corpus_dir, "val")
    train_rows, val_rows = None, None
    validation = {"source": "val split", "videos": val_split.videos}
    if not len(val_split):
        train_rows, val_rows, held = hold_out_videos(train_split, cfg.val_share, cfg.seed)
        val_split = train_split
        validation = {"source": "held out of train" if held else "none", "videos": len(held), "video_ids": held}
        if env.is_main:
            if held:
                log.warning("%s: the val split is empty: validating on %d of the train videos (val_share %g, seed %d; "
                            "listed in summary.json)", corpus_dir, len(held), cfg.val_share, cfg.seed)
            else:
                log.warning("%s: the val split is empty and val_share is %g: training without validation",
                            corpus_dir, cfg.val_share)
    train_clips = val_clips = None
    if cfg.forecast_prob > 0:
        train_clips = forecast_clips(corpus_dir, train_split, layout, env.is_main)
        val_clips = train_clips if val_split is train_split else forecast_clips(corpus_dir, val_split, layout, False)
    try:
        train_examples = PretrainExamples(train_split, layout, cfg, kinds, pad_to, rows=train_rows, clips=train_clips)
    except StageError as exc:
        raise StageError(f"{corpus_dir} (train split): {exc}") from None
    val_examples = None
    if val_rows is None or val_rows.size:
        try:
            val_examples = PretrainExamples(val_split, layout, cfg, kinds, pad_to, rows=val_rows, clips=val_clips)
        except StageError as exc:
            log.warning("validation examples: %s; validation is skipped", exc)

    model = build_model(cfg, layout, centroids).to(device)
    trainer = Trainer(model, optim=cfg, weights=cfg, device=device, precision=precision, compile=cfg.compile)
    torch.manual_seed(cfg.seed + 1 + env.rank)  # dropout streams differ by rank
    start_step = _restore(trainer, resume_from) if resume_from else 0
    if env.is_main:
        prepare_output_dir(model_dir)
        cfgmod.save(cfg, model_dir / "config.yaml")
        vocab.save(model_dir)

    batches = StepBatches(train_examples, cfg.batch_size, cfg.grad_accum, cfg.seed, env.rank, env.world_size)
    workers = cfg.num_workers if cfg.num_workers is not None else (4 if device.type == "cuda" else 0)
    loader = torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=range(start_step, cfg.steps), num_workers=workers,
        collate_fn=_identity, pin_memory=device.type == "cuda",
        # its own generator: creating the loader must not draw from the global RNG (bitwise resume)
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    if workers:
        # Forked loader workers share the parent's pages until they write them; the cyclic garbage
        # collector writes to every object it visits, so leave what exists now out of its sweeps.
        gc.collect()
        gc.freeze()
    val_batches = []
    if val_examples is not None:
        val_batches = validation_batches(val_examples, batches.micro_batch, cfg.seed, cfg.eval_sentences,
                                         env.rank, env.world_size)
    if env.is_main:
        log.info("pretrain: %d layers x %d hidden (%s), %.1f M parameters, %d train / %d val sentences, %s %s, "
                 "%d process(es), steps %d -> %d", model.config.layers, model.config.hidden_size,
                 cfg.preset if cfg.init == "scratch" else cfg.init, sum(p.numel() for p in model.parameters()) / 1e6,
                 len(train_examples), len(val_examples or []), device, precision, env.world_size, start_step, cfg.steps)

    curves = _Curves(model_dir, env.is_main, start_step)
    bar = progress(total=cfg.steps, initial=start_step, desc="pretrain", unit="step",
                   disable=not (env.is_main and progress_enabled()))
    val_metrics: dict[str, float] = {}
    window = _Window()
    model.train()
    threads_before = training_threads(model.config.hidden_size, device)
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
            # decided by val_examples, never by this rank's share of batches: validation is collective
            if val_examples is not None and ((cfg.eval_every and step % cfg.eval_every == 0) or last):
                val_metrics = validation_metrics(model, val_batches, device, precision)
                curves.record(step, "val", val_metrics)
                log.info("step %d validation: %s", step, ", ".join(f"{k} {v:.3f}" for k, v in val_metrics.items()))
            if (cfg.save_every and step % cfg.save_every == 0) or last:
                trainer.save(model_dir, step, batches.position(step), cfg.keep_checkpoints)
    finally:
        restore_threads(threads_before)
        bar.close()
        curves.close()
        gc.unfreeze()

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
        "validation": validation,
        "chance": {"text_acc": 1 / layout.text_vocab_size, "video_acc": 1 / layout.visual_vocab_size, "align_acc": 0.5},
        "corpus": _corpus_record(corpus_dir),
    }
    if env.is_main:  # the model folder, whole (videobert.pretrain.package), then its completion record and card
        model.save_pretrained(model_dir)
        record = package(model_dir, Path(vocab_dir) if vocab_dir is not None else None)
        if record["codebook"] is not None:
            vocab.visual_vocab, vocab.codebook = record["visual_vocab"], record["codebook"]
        vocab.save(model_dir)
        atomic_write_json(model_dir / "summary.json", summary)
        write_model_card(model_dir)
    if env.is_distributed:
        torch.distributed.barrier()
    return summary, start_step


def _corpus_record(corpus_dir: Path) -> dict[str, Any]:
    """What the model card says of the training data."""
    summary = corpus_summary(corpus_dir)
    manifest = (summary.get("inputs") or {}).get("manifest")
    return {
        "folder": str(Path(corpus_dir).absolute()),
        "name": Path(manifest).parent.name if manifest else None,
        "examples": summary.get("examples"),
        "videos": (summary.get("videos") or {}).get("total"),
        "splits": {split: (summary.get("splits") or {}).get(split, {}).get("examples") for split in ("train", "val", "test")},
        "tokenizer": (summary.get("tokenizer") or {}).get("source"),
    }


def hold_out_videos(split: CorpusSplit, share: float, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(train rows, validation rows, the videos held out): the rows of about ``share`` of the
    videos of ``split`` set aside for validation, the videos chosen by ``seed`` from their ids
    alone (the same on every rank and on resume); none when ``share`` is 0 or there are fewer than
    two videos."""
    names = split.video_names()
    videos = sorted(set(names))
    count = min(len(videos) - 1, max(1, round(share * len(videos)))) if share > 0 else 0
    every = np.arange(len(split), dtype=np.int64)
    if count <= 0:
        return every, every[:0], []
    rank = sorted(videos, key=lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest())
    held = set(rank[:count])
    held_codes = np.array([name in held for name in names], dtype=bool)
    is_held = held_codes[split.video_codes] if len(split) else np.zeros(0, bool)
    return every[~is_held], every[is_held], sorted(held)


def _identity(item):
    return item


def _existing_run(model_dir: Path, cfg: PretrainConfig, resume: bool) -> tuple[list[Path] | None, dict | None]:
    """(the checkpoints to resume from, newest first, or the summary of a run already finished); refuses to
    overwrite a run without ``resume`` and to resume one whose settings differ in anything but
    speed (:func:`videobert.config.settings`)."""
    checkpoints = list_checkpoints(model_dir)
    if not resume:
        if (model_dir / "summary.json").exists():
            raise ConfigError(f"{model_dir} already holds a trained model; choose another folder")
        if checkpoints:
            raise ConfigError(f"{model_dir} holds checkpoints (last: step {checkpoints[-1][0]}); "
                              "pass --resume to continue that run or choose another folder")
        return None, None
    return resume_point(model_dir, cfg, cfg.steps, "summary.json")


class _Curves:
    """log.jsonl and TensorBoard (rank 0 only); a resumed run continues the curve from its checkpoint."""

    def __init__(self, model_dir: Path, is_main: bool, start_step: int):
        self.is_main = is_main
        if not is_main:
            return
        log_path = model_dir / "log.jsonl"
        kept = []
        if log_path.exists():
            kept = [json.dumps(row) for row in _readable_log_rows(log_path) if row["step"] <= start_step]
        atomic_write_text(log_path, "".join(line + "\n" for line in kept))
        self._log = open(log_path, "a", encoding="utf-8")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(model_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)

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


def _restore(trainer: Trainer, checkpoints: list[Path]) -> int:
    """Resume from the newest checkpoint that reads back whole, saying which were passed over; its
    step. None readable: :class:`StageError` (the checkpoints are left for you to look at). A
    checkpoint holding code is not passed over: it stops the run (someone may have tampered with
    the folder)."""
    reasons = []
    for path in checkpoints:
        try:
            step = trainer.restore(path)
        except UnsafeFileError:
            raise
        except InputError as exc:
            log.warning("%s; falling back to the previous checkpoint", exc)
            reasons.append(str(exc))
            continue
        if reasons:
            log.warning("resumed from %s, the newest readable checkpoint (%d newer one(s) unreadable)", path, len(reasons))
        return step
    raise StageError(f"{checkpoints[0].parent}: no checkpoint reads back ({reasons[0]}); move the folder away to "
                     "train from step 0")


def _readable_log_rows(path: Path) -> list[dict]:
    """The rows of a ``log.jsonl`` up to the first one that cannot be read (a kill can cut the last
    line short), saying what was dropped."""
    rows = []
    try:
        for number, row in read_jsonl(path, "training log"):
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise InputError(f"{path}:{number}: not a training log row")
            rows.append(row)
    except InputError as exc:
        log.warning("%s; the rows from there on are dropped and rewritten by this run", exc)
    return rows


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
        metrics = dict(zip(("loss", *LOSS_NAMES), means.tolist()))
        metrics.update(lr=lr, tokens_per_s=self.tokens / max(time.perf_counter() - self.began, 1e-9))
        return metrics
