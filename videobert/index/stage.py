"""The index stage: MODEL + videos -> INDEX (:mod:`videobert.index.folder`), for ``videobert
retrieve MODEL "query" --index INDEX``.

``run`` creates the folder, claims it for the model's codebook and feature settings
(``index.json``: a folder never mixes the visual words of two codebooks), writes ``config.yaml``,
owns the failure log (one per writer) and writes ``words/<video_id>.npy`` as videos finish —
decoded, encoded and tokenized exactly as the model's own videos were
(:class:`videobert.video_tokenizer.VideoTokenizer`). Like extract it resumes (complete files are
skipped) and shares the videos out among ``--shard I/N`` workers and torchrun ranks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videobert import config as cfgmod
from videobert.config import field
from videobert.errors import ConfigError, InputError, StageError
from videobert.index.folder import META_FILE, words_path, write_words
from videobert.inference import load_model
from videobert.logs import progress, progress_enabled
from videobert.manifest import read_manifest
from videobert.runtime import LONG_BARRIER, DeviceName, Precision, Shard, combined_shard, dist_env, process_group
from videobert.store import FailureLog, StageSummary, create_once_json, failures_name, npy_header, prepare_output_dir, read_json
from videobert.video_tokenizer import VideoTokenizer

log = logging.getLogger(__name__)


@dataclass
class IndexConfig:
    """Configuration of ``videobert index``."""

    device: DeviceName = field("auto", help="where S3D and the codebook run (auto: CUDA when visible)")
    precision: Precision = field("auto", help="the model's scoring precision (S3D runs in the precision its features "
                                              "were extracted in)")
    window: int = field(16, help="clips per searched segment (videos are cut into runs of this many clips)")
    batch_size: int | None = field(None, speed_only=True, help="clips per S3D call (none: 64 on CUDA, 4 on CPU)")
    workers: int | None = field(None, speed_only=True, help="decoding processes beside S3D (none: extract's default)")

    def check(self) -> None:
        if self.window < 1:
            raise ConfigError("window: need at least 1 clip")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError("batch_size: need at least 1")
        if self.workers is not None and self.workers < 0:
            raise ConfigError("workers: need 0 or more")


def run(model_dir: str | Path, videos: str | Path, out_dir: str | Path, cfg: IndexConfig, shard: Shard = Shard(),
        s3d_weights: str | Path | None = None) -> StageSummary:
    """Write the visual words of this worker's share of ``videos`` (a manifest or a folder of
    videos) that the index lacks; under torchrun every rank calls this."""
    began = time.perf_counter()
    env = dist_env()
    worker = combined_shard(shard, env)
    entries = read_manifest(videos)
    videos_of_model = VideoTokenizer(model_dir, load_model(model_dir, cfg.device, cfg.precision), s3d_weights,
                                     cfg.batch_size, cfg.workers)
    if not videos_of_model.reads_videos:
        raise InputError(f"{model_dir}: holds no visual vocabulary and feature settings (visual_vocab/, features.json); "
                         "it cannot index videos")
    out = prepare_output_dir(out_dir)
    loaded = videos_of_model.loaded
    meta = {"format": 1, "codebook": loaded.vocab.codebook, "visual_vocab_size": loaded.layout.visual_vocab_size,
            "clip_seconds": videos_of_model.clip_seconds(), "window": cfg.window, "features": videos_of_model.settings,
            "manifest": str(Path(videos).resolve()), "model": str(Path(model_dir).resolve())}
    with process_group(env.has_rendezvous, "gloo", LONG_BARRIER) as group:
        if env.is_main:
            claim_index_dir(out, meta)
            if worker.index == 0:
                cfgmod.save(cfg, out / "config.yaml")
        group.barrier()
        if not env.is_main:
            claim_index_dir(out, meta)
        mine = worker.take(entries, key=lambda e: e.video_id)
        todo = [e for e in mine if not _complete(words_path(out, e.video_id))]
        skipped, done, failed, clips = len(mine) - len(todo), 0, 0, 0
        if skipped:
            log.info("%d of %d videos are already indexed; skipping them", skipped, len(mine))
        failures_file = out / failures_name(worker.index, worker.count)
        with FailureLog(failures_file) as failures:
            bar = progress if env.is_main and progress_enabled() else None
            for entry, words, error in videos_of_model.iter_words(todo, progress=bar):
                if error is not None:
                    failures.record_error(entry.video_id, error, video=str(entry.video))
                    failed += 1
                    continue
                write_words(out, entry.video_id, words)
                done += 1
                clips += len(words)
        group.barrier()
        done, skipped, failed, clips = (int(v) for v in group.sum([done, skipped, failed, clips]))
    seconds = time.perf_counter() - began
    message = (f"index: {done + skipped} videos indexed ({skipped} already done), {failed} failed (see "
               f"{failures_file.name}), {clips} clips in {seconds:.1f} s")
    if mine and not done and not skipped:
        raise StageError(f"no video could be indexed ({failed} failed; reasons in {failures_file})")
    return StageSummary("index", out, done, skipped, failed, seconds, message, {"clips": clips})


def claim_index_dir(out: Path, meta: dict) -> None:
    """Record ``meta`` as the folder's ``index.json``, or check that the one there has the same
    codebook, window and feature settings (a folder never mixes two)."""
    path = out / META_FILE
    create_once_json(path, meta)
    recorded = read_json(path, "index settings")
    for key in ("codebook", "window", "features", "clip_seconds"):
        if recorded.get(key) != meta[key]:
            raise ConfigError(f"{out} holds visual words made with another {key} ({recorded.get(key)!r}, this run "
                              f"{meta[key]!r}); use another output folder")


def _complete(path: Path) -> bool:
    try:
        shape, dtype = npy_header(path, "visual words")
    except InputError:
        return False
    return len(shape) == 1 and shape[0] > 0 and np.dtype(dtype).kind in "iu"
