"""The distil stage: MODEL + CORPUS -> MODEL/dual (docs/formats.md): a dual encoder that ranks as the
model's cross-encoder does, for the first stage of search.

``run`` checks the inputs, creates ``MODEL/dual`` (a second run writing into it is refused), writes
``config.yaml``, trains (:mod:`videobert.distil.train`), checkpointing every ``save_every`` steps
and resuming from the latest checkpoint when rerun with the same settings, writes the dual
encoder, measures it on the **val** split — its own retrieval, the first stage's recall of the
true item at each K, two-stage text→video R@5 beside the cross-encoder's exhaustive R@5 — chooses
the first-stage K there (the smallest of :data:`K_LADDER` whose two-stage R@5 is within
``k_tolerance`` of exhaustive) and writes ``dual.json`` with all of it; the model folder's own
dual encoder (``MODEL/dual``) then rebuilds its ``test_index`` with the dual encoder's vectors
and adds the figures to the model card. Under torchrun every rank trains
(DistributedDataParallel); rank 0 writes.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from videobert import config as cfgmod
from videobert.config import field
from videobert.corpus.reader import CorpusSplit, check_complete, corpus_visual_words
from videobert.distil.train import Distiller, DistilOptions
from videobert.dual import DUAL, INFO_FILE, DualEncoder, LoadedDual, text_vectors, video_vectors
from videobert.errors import ConfigError, InputError, StageError
from videobert.index.folder import META_FILE, write_part
from videobert.index.stage import IndexConfig, index_meta, make_part
from videobert.inference import LoadedModel, load_model
from videobert.logs import progress, progress_enabled
from videobert.model_card import write_model_card
from videobert.model_folder import TEST_INDEX, read_feature_settings
from videobert.retrieval.exhaustive import exhaustive_counts
from videobert.retrieval.gallery import Gallery, check_same_vocabulary, corpus_gallery, video_paths
from videobert.retrieval.metrics import chance_metrics, metrics_from_counts
from videobert.retrieval.two_stage import DualFirstStage, two_stage_ladder
from videobert.runtime import DeviceName, Precision, dist_env, process_group
from videobert.store import (
    FolderLock, StageSummary, atomic_write_json, file_sha256, prepare_output_dir, temp_path_for,
)
from videobert.training import list_checkpoints, resume_point

log = logging.getLogger(__name__)

K_LADDER = (4, 8, 16, 32, 64, 128, 256)  # first-stage K tried on val, the smallest good enough kept


@dataclass
class DistilConfig(DistilOptions):
    """Configuration of ``videobert distil``: the student, the loss and the optimiser, then how K is
    chosen and where it runs."""

    val_split: Literal["val", "train", "test"] = field("val", help="split the settings and K are chosen on")
    k_tolerance: float = field(0.01, help="K: the smallest of 4 … 256 whose two-stage text→video R@5 on val_split is "
                                          "within this of the cross-encoder's exhaustive R@5")
    val_queries: int = field(1000, help="most val queries ranked (a seeded sample of larger splits)")
    device: DeviceName = field("auto", help="where student and teacher run (auto: CUDA when visible)")
    precision: Precision = field("auto", help="auto: bf16 autocast on GPU, fp32 on CPU")
    batch_tokens: int = field(0, speed_only=True, help="tokens per teacher forward pass (0: 131072 on GPU, 8192 on CPU)")
    save_every: int = field(200, speed_only=True, help="checkpoint every this many steps (0: only at the end)")
    keep_checkpoints: int = field(2, speed_only=True, help="checkpoints kept")
    log_every: int = field(100, speed_only=True, help="log the loss every this many steps")

    def check(self) -> None:
        DistilOptions.check(self)
        if not 0 <= self.k_tolerance < 1 or self.val_queries < 2:
            raise ConfigError("k_tolerance: need 0 … <1; val_queries: need >= 2")
        if self.batch_tokens < 0 or self.save_every < 0 or self.keep_checkpoints < 1 or self.log_every < 0:
            raise ConfigError("batch_tokens, save_every, log_every: need >= 0; keep_checkpoints: need >= 1")


def run(model_dir: str | Path, corpus_dir: str | Path, cfg: DistilConfig, resume: bool = False,
        out_dir: str | Path | None = None) -> StageSummary:
    """Distil ``model_dir``'s cross-encoder into a dual encoder on ``corpus_dir``'s train split,
    into ``out_dir`` (default ``MODEL/dual``; module docstring). ``resume`` continues from the
    latest checkpoint there (its settings must be these, less those that only change speed)."""
    began = time.perf_counter()
    cfg.check()
    model_dir, corpus_dir = Path(model_dir), Path(corpus_dir)
    out = Path(out_dir) if out_dir is not None else model_dir / DUAL
    env = dist_env()
    check_complete(corpus_dir)
    teacher = load_model(model_dir, cfg.device, cfg.precision, cfg.batch_tokens)
    check_same_vocabulary(teacher, corpus_dir)
    train = corpus_gallery(corpus_dir, "train", None)
    if len(train.texts) < 2:
        raise StageError(f"{corpus_dir}: the train split has {len(train.texts)} text-video examples; distillation needs 2 or more")
    resume_from, finished = _existing(out, cfg, resume)
    if finished is not None:
        log.info("%s: already distilled for %d steps; nothing to do", out, cfg.steps)
        return StageSummary("distil", out, 0, cfg.steps, 0, time.perf_counter() - began, _message(finished), finished)
    device = teacher.device
    if env.is_distributed and device.type == "cuda":
        torch.cuda.set_device(device)
    lock = contextlib.nullcontext()
    if env.is_main:
        lock = FolderLock(prepare_output_dir(out) / ".distil.lock")
        cfgmod.save(cfg, out / "config.yaml")
    with lock, process_group(env.is_distributed, "nccl" if device.type == "cuda" else "gloo"):
        student = DualEncoder.from_videobert(teacher.model, cfg.dim, cfg.shared, cfg.pooling, cfg.seed).to(device)
        distiller = Distiller(student, teacher, cfg, train.texts, train.videos)
        torch.manual_seed(cfg.seed)  # dropout of a fresh run (a resumed one gets its RNG state back)
        start = distiller.restore(resume_from[0]) if resume_from else 0
        bar = progress(range(start, cfg.steps), total=cfg.steps, initial=start, desc="distil", unit="step",
                       disable=not (env.is_main and progress_enabled()))
        losses: dict[str, float] = {}
        for step in bar:
            losses = distiller.step(step)
            done = step + 1
            if cfg.log_every and done % cfg.log_every == 0 and env.is_main:
                log.info("distil step %d/%d: %s", done, cfg.steps, ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
            if (cfg.save_every and done % cfg.save_every == 0) or done == cfg.steps:
                distiller.save(out, done, cfg.keep_checkpoints)
        bar.close()
        summary: dict[str, Any] = {}
        if env.is_main:
            student.eval()
            student.save_pretrained(out)
            val = corpus_gallery(corpus_dir, cfg.val_split, None)
            summary = {
                "steps": cfg.steps, "world_size": env.world_size, "device": str(device), "final_loss": losses,
                "weights_sha256": file_sha256(out / "model.safetensors"),
                "teacher_sha256": file_sha256(model_dir / "model.safetensors"),
                "train_examples": len(train.texts),
            }
            summary.update(measure(teacher, student, val, cfg))
            atomic_write_json(out / INFO_FILE, summary)
            if out == model_dir / DUAL:  # the model folder's own dual encoder: its test segments become searchable
                summary["test_index_segments"] = write_test_index(model_dir, corpus_dir, LoadedDual(student, teacher, summary))
                write_model_card(model_dir)
        if env.is_distributed:
            torch.distributed.barrier()
    return StageSummary("distil", out, cfg.steps - start, start, 0, time.perf_counter() - began, _message(summary), summary)


def measure(teacher: LoadedModel, student: DualEncoder, gallery: Gallery, cfg: DistilConfig) -> dict[str, Any]:
    """The dual encoder on a split's gallery: its own retrieval both ways, the first stage's recall
    of the true item and two-stage retrieval at every K of :data:`K_LADDER`, the cross-encoder's
    exhaustive retrieval, each beside chance; and the K chosen (``k``; module docstring)."""
    n = len(gallery.texts)
    if n < 2:
        log.warning("the %s split has %d text-video examples: no figures, first-stage K %d", cfg.val_split, n, K_LADDER[-1])
        return {"split": cfg.val_split, "gallery": n, "k": K_LADDER[-1], "k_rule": "no val figures: the largest K"}
    queries = np.arange(n) if n <= cfg.val_queries else np.sort(
        np.random.default_rng([cfg.seed, 0x5A3]).choice(n, cfg.val_queries, replace=False))
    first = DualFirstStage(text_vectors(student, teacher, gallery.texts), video_vectors(student, teacher, gallery.videos))
    ks = [k for k in K_LADDER if k < n] + [n]
    results = two_stage_ladder(teacher, gallery.texts, gallery.videos, ks, first, queries)
    exhaustive = exhaustive_counts(teacher, gallery.texts, gallery.videos, queries)
    chance = chance_metrics(n)
    figures: dict[str, Any] = {
        "split": cfg.val_split, "gallery": n, "queries": int(queries.size),
        "exhaustive": {d: {**metrics_from_counts(*getattr(exhaustive, d)), **chance} for d in ("t2v", "v2t")},
        "dual": {d: {**metrics_from_counts(*results.first_stage[d]), **chance} for d in ("t2v", "v2t")},
        "two_stage": {},
    }
    for k in ks:
        result = results.by_k[k]
        figures["two_stage"][str(k)] = {
            "first_stage_recall": result.first_stage_recall, "chance_first_stage_recall": min(k, n) / n,
            **{d: metrics_from_counts(*getattr(result, d)) for d in ("t2v", "v2t")}}
    bar = figures["exhaustive"]["t2v"]["r5"] - cfg.k_tolerance
    chosen = next((k for k in ks if figures["two_stage"][str(k)]["t2v"]["r5"] >= bar), ks[-1])
    figures["k"] = int(min(chosen, K_LADDER[-1]))
    figures["k_rule"] = (f"the smallest K of {', '.join(map(str, K_LADDER))} whose two-stage text→video R@5 on the "
                         f"{cfg.val_split} split is within {cfg.k_tolerance} of the exhaustive cross-encoder's")
    return figures


def _existing(out: Path, cfg: DistilConfig, resume: bool) -> tuple[list[Path] | None, dict | None]:
    """(checkpoints to resume from, newest first; or the summary of a distillation that finished)."""
    if not resume:
        if (out / INFO_FILE).exists() or list_checkpoints(out):
            raise ConfigError(f"{out} already holds a dual encoder or its checkpoints; pass --resume to continue "
                              "(or finish) that run, or delete the folder to start afresh")
        return None, None
    return resume_point(out, cfg, cfg.steps, INFO_FILE)


def _message(summary: dict[str, Any]) -> str:
    if "dual" not in summary:
        return f"dual encoder: {summary.get('steps', 0)} steps"
    dual, exhaustive = summary["dual"]["t2v"], summary["exhaustive"]["t2v"]
    chosen = summary["two_stage"][str(summary["k"])] if str(summary["k"]) in summary["two_stage"] else None
    line = (f"dual encoder ({summary['split']}, {summary['gallery']} segments): text→video R@5 {dual['r5']:.3f} alone, "
            f"{exhaustive['r5']:.3f} cross-encoder exhaustive")
    if chosen is not None:
        line += (f", two-stage {chosen['t2v']['r5']:.3f} at K {summary['k']} (first-stage recall "
                 f"{chosen['first_stage_recall']['t2v']:.3f})")
    return line + f"; chance R@5 {dual['chance_r5']:.3f}"


def write_test_index(model_dir: Path, corpus_dir: Path, dual: LoadedDual) -> int:
    """``MODEL/test_index``: the corpus's test segments (their sentences, the visual words of their
    clips from the TOKENS folder the corpus was built from, the dual encoder's vectors) as an index,
    so that the model folder searches its own test videos with nothing else; returns its segments
    (0: none written, the corpus has no test segment or its TOKENS folder is gone)."""
    split = CorpusSplit(corpus_dir, "test")
    rows = split.rows_with(video=True)
    if not rows.size:
        return 0
    try:
        words, clip_seconds = corpus_visual_words(corpus_dir, split.video_names())
    except InputError as exc:
        log.warning("%s; the model folder gets no test_index", exc)
        return 0
    try:
        paths = video_paths(corpus_dir)
    except InputError:
        paths = {}
    listed: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        start, end = split.times(int(row))
        listed.setdefault(split.video_id(int(row)), []).append(
            {"start": start, "end": end, "sentence": split.text(int(row))})
    videos = [(video_id, str(paths.get(video_id, "")), words[video_id]) for video_id in listed if video_id in words]
    meta = index_meta(dual.loaded, dual, clip_seconds, 16, read_feature_settings(model_dir), IndexConfig(kind="flat"))
    target = model_dir / TEST_INDEX
    tmp = temp_path_for(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        atomic_write_json(tmp / META_FILE, meta)
        part = make_part(dual, videos, clip_seconds, 16, listed)
        write_part(tmp, 0, part, dual.identity, None)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(part)
