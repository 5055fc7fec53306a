"""The extract stage: MANIFEST -> FEATURES (docs/formats.md), and the FEATURES folder's layout.

``run`` creates the folder, records ``extract.json`` (what defines a feature; a folder never mixes
two kinds), writes the resolved ``config.yaml``, owns the failure log (one per writer), writes
``<video_id>.npy`` as videos finish and, under torchrun, waits for the other ranks and merges their
failure files. Rerunning skips videos whose features are complete and whose video file has the size
and modification time of the one they were made from (``sources.jsonl``: each video's file, size
and modification time, appended as it finishes), whatever manifest or folder lists it now; a video
listed under another id whose file (name, size, modification time) made features gets a copy. The readers at the end
(:func:`load_features`, :func:`list_videos`, :func:`clip_count`, :func:`extract_info`) are what
the next stages use.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videobert import config as cfgmod
from videobert.config import field
from videobert.errors import ConfigError, InputError, StageError
from videobert.features.extract import extract_features, resolve_runtime
from videobert.features.s3d import (
    FEATURE_DIM, KINETICS_MEAN, KINETICS_STD, MIN_CLIP_FRAMES, MIN_SIZE, MODEL_NAME, ClipEncoder, build_s3d,
)
from videobert.features.settings import check_feature_settings, feature_identity
from videobert.logs import progress
from videobert.manifest import read_manifest
from videobert.readers import bounded_lines, open_regular, parse_json
from videobert.features.decode import Decoder, check_decoder, decodes_into_gpu
from videobert.runtime import (
    LONG_BARRIER, DeviceName, Precision, Shard, combined_shard, cpu_bf16_native, device_name, dist_env, process_group,
    resolve_device, resolve_precision,
)
from videobert.store import (
    FailureLog, StageSummary, atomic_save_npy, atomic_write_json, create_once_json, failures_name, library_versions, load_npy, merge_failures,
    npy_header, prepare_output_dir, read_json, remove_stale_failures,
)

log = logging.getLogger(__name__)

META_FILE = "extract.json"


@dataclass
class ExtractConfig:
    """Configuration of ``videobert extract``."""

    fps: int = field(20, help="frames per second sampled from each video")
    clip_frames: int = field(30, help="frames per clip; clips do not overlap and a trailing partial clip is dropped")
    size: int = field(224, help="frame size: the short side is scaled to it, then the centre square is cropped")
    s3d_weights: Path | None = field(None, former="weights",
                                     help="torchvision S3D state dict (.pth, e.g. Kinetics-400); none: seeded random init")
    init_seed: int = field(0, help="seed of the random initialisation used without weights")
    device: DeviceName = field("auto", help="where the model runs (auto: CUDA when visible)")
    precision: Precision = field(
        "auto", help="model precision (auto: bf16/fp16 on CUDA; on the CPU bf16 where it computes bf16 natively — "
                     "AVX-512 BF16 or AMX — else fp32; a folder's features keep the precision they were started with)")
    decoder: Decoder = field(
        "cpu", help="video decoding: cpu — an ffmpeg process per video (the default: faster than torchcodec on the "
                    "2-core CPU measured, BENCHMARKS.md); torchcodec — FFmpeg's libraries in the decoding processes; "
                    "torchcodec-cuda — NVDEC on the model's GPU straight into its batches (a video NVDEC cannot take "
                    "is decoded on the CPU, listed in extract.json); cuda — ffmpeg with NVDEC + scale_cuda (an ffmpeg "
                    "built with CUDA, VIDEOBERT_FFMPEG)")
    batch_size: int | None = field(None, speed_only=True, help="clips per model call (none: 64 on CUDA, 4 on CPU)")
    workers: int | None = field(
        None, speed_only=True,
        help="decoding processes beside the model (0: decode in the main process; none: one per spare core on CUDA, "
             "one per 8 cores on CPU)",
    )

    def check(self) -> None:
        if self.fps < 1:
            raise ConfigError("fps: need at least 1")
        if self.clip_frames < MIN_CLIP_FRAMES:
            raise ConfigError(f"clip_frames: S3D needs at least {MIN_CLIP_FRAMES} frames per clip")
        if self.size < MIN_SIZE:
            raise ConfigError(f"size: need at least {MIN_SIZE} pixels (smaller frames leave S3D's last block under 3x3 positions)")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError("batch_size: need at least 1")
        if self.workers is not None and self.workers < 0:
            raise ConfigError("workers: need 0 or more")

    @property
    def clip_seconds(self) -> float:
        return self.clip_frames / self.fps


def run(manifest: str | Path, out_dir: str | Path, cfg: ExtractConfig, shard: Shard = Shard(),
        overwrite: bool = False) -> StageSummary:
    """Write ``<video_id>.npy`` for this worker's share of the manifest's videos (``shard``,
    subdivided among torchrun ranks) that lack complete features. ``overwrite`` starts the folder
    afresh (needed to change what defines a feature). Under torchrun every rank calls this; the
    summary counts every rank's videos."""
    env = dist_env()
    worker = combined_shard(shard, env)
    coordinated = env.has_rendezvous
    merged = coordinated and shard.count == 1  # the ranks together cover every video
    if overwrite and worker.count > 1 and not merged:
        raise ConfigError("--overwrite needs one run over all the videos (alone, or torchrun without --shard): "
                          "other shards' writers would not see it; delete the folder first instead")
    entries = read_manifest(manifest)
    out = prepare_output_dir(out_dir)
    device = resolve_device(cfg.device)
    precision = extract_precision(cfg.precision, device, None if overwrite else out)
    runtime = resolve_runtime(device, precision, cfg.batch_size, cfg.workers, env.local_processes)
    check_decoder(cfg.decoder, device, runtime.gpu)
    model, weights = build_s3d(cfg.s3d_weights, cfg.init_seed)
    meta = extraction_meta(cfg, weights, device, precision, manifest)
    failures_file = out / failures_name(worker.index, worker.count)

    with process_group(coordinated, "gloo", LONG_BARRIER) as group:
        if env.is_main:
            if overwrite:
                removed = remove_features(out)
                if removed:
                    log.warning("--overwrite: removed %d feature files from %s", removed, out)
            claim_features_dir(out, meta, overwrite=overwrite)
            if worker.index == 0:
                cfgmod.save(cfg, out / "config.yaml")
                remove_stale_failures(out, worker.count)
        group.barrier()
        if not env.is_main:
            claim_features_dir(out, meta)

        mine = worker.take(entries, key=lambda e: e.video_id)
        log.info(
            "%d of %d videos for shard %s on %s (%s, batch %d, %d decoding workers, decoder %s)",
            len(mine), len(entries), worker, device, precision, runtime.batch_size,
            0 if decodes_into_gpu(cfg.decoder) else runtime.workers, cfg.decoder,
        )
        todo = reuse_features(out, mine, sources_name(worker.index, worker.count))
        skipped = len(mine) - len(todo)
        if skipped:
            log.info("%d of %d videos already have features of the same video file; skipping them", skipped, len(mine))
        ok = failed = clips = 0
        cpu_decoded: dict[str, str] = {}  # video id -> why the GPU decoder left it to the CPU
        encoder = ClipEncoder(model, device, precision)
        began = time.perf_counter()
        keys = {entry.video_id: source_key(entry.video) for entry in todo}  # the files as they are read now
        with FailureLog(failures_file) as failures, open(out / sources_name(worker.index, worker.count), "a",
                                                         encoding="utf-8") as sources:
            for video in extract_features(todo, encoder, runtime, cfg.fps, cfg.clip_frames, cfg.size, cfg.decoder,
                                          progress=progress if env.is_main else None):
                if video.error is not None:
                    failures.record_error(video.entry.video_id, video.error, video=str(video.entry.video))
                    failed += 1
                    continue
                atomic_save_npy(feature_path(out, video.entry.video_id), video.features)
                record_source(sources, video.entry.video_id, keys.get(video.entry.video_id))
                ok += 1
                clips += len(video.features)
                if video.cpu_reason:
                    cpu_decoded[video.entry.video_id] = video.cpu_reason
        if cpu_decoded:
            record_cpu_decoded(out, cpu_decoded)
        seconds = time.perf_counter() - began
        mine_line = _line(ok, skipped, failed, clips, seconds, failures_file.name)
        group.barrier()
        ok, skipped, failed, clips = (int(v) for v in group.sum([ok, skipped, failed, clips]))
        seconds = group.max(seconds)
        if merged and env.is_main:
            merge_failures(out, worker.count)

    reasons = out / (failures_name() if merged else failures_file.name)
    if group.active:
        log.info("rank %d: %s", env.rank, mine_line)
    message = _line(ok, skipped, failed, clips, seconds, reasons.name)
    if not mine and not group.active:
        log.warning("shard %s has no videos (%d in the manifest)", worker, len(entries))
    elif ok + skipped == 0:
        log.info("%s", message)
        raise StageError(f"no video could be processed ({failed} failed; reasons in {reasons})")
    return StageSummary("extract", out, ok, skipped, failed, seconds, message, {"clips": clips})


def extract_precision(precision: str, device: torch.device, features_dir: Path | None = None) -> str:
    """The precision extraction runs in. ``auto``: the one ``features_dir`` was started with (a
    folder never mixes two), else bf16 or fp16 on CUDA, and on the CPU bf16 where the CPU computes it
    natively (:func:`videobert.runtime.cpu_bf16_native`, from its flags: no timing, so a busy
    machine cannot change the choice), fp32 elsewhere."""
    if precision != "auto":
        return resolve_precision(precision, device)
    meta = Path(features_dir) / META_FILE if features_dir is not None else None
    if meta is not None and meta.is_file():
        recorded = check_feature_settings(read_json(meta, "extraction settings"), meta).get("precision")
        if recorded in ("fp32", "bf16") or (recorded == "fp16" and device.type == "cuda"):
            return recorded
    if device.type == "cpu":
        return "bf16" if cpu_bf16_native() else "fp32"
    return resolve_precision("auto", device)


# --------------------------------------------------------------------------- which video file made which features
def sources_name(shard_index: int = 0, shard_count: int = 1) -> str:
    """``sources.jsonl``, or ``sources.shard-I-of-N.jsonl`` for one writer among several."""
    return "sources.jsonl" if shard_count <= 1 else f"sources.shard-{shard_index:05d}-of-{shard_count:05d}.jsonl"


def source_key(video: Path) -> dict[str, Any] | None:
    """What identifies a video file: its resolved path (recorded for people), size and modification
    time (None where it cannot be read: extraction then reports it)."""
    try:
        path = Path(video).resolve()
        stat = path.stat()
    except (OSError, RuntimeError):
        return None
    return {"video": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def record_source(handle, video_id: str, key: dict[str, Any] | None) -> None:
    """Append which file ``video_id``'s features were made from (one line, flushed)."""
    if key is not None:
        handle.write(json.dumps({"video_id": video_id, **key}, ensure_ascii=False) + "\n")
        handle.flush()


def read_sources(features_dir: Path) -> dict[str, dict[str, Any]]:
    """video id -> the file its features were made from, from every writer's ``sources*.jsonl``
    (the last record of an id wins; a line a killed writer left half-written is ignored)."""
    sources: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(features_dir).glob("sources*.jsonl")):
        try:
            with open_regular(path, "feature sources") as handle:
                for number, line in enumerate(bounded_lines(handle, path), 1):
                    try:
                        record = parse_json(line, path, number)
                    except InputError:
                        continue
                    if isinstance(record, dict) and isinstance(record.get("video_id"), str):
                        sources[record["video_id"]] = record
        except InputError as exc:
            log.warning("%s; its videos' features are taken as they are", exc)
    return sources


def _same_source(record: dict[str, Any], key: dict[str, Any]) -> bool:
    """The same file: size and modification time (a folder of videos moved elsewhere keeps both)."""
    return all(record.get(name) == key[name] for name in ("size", "mtime_ns"))


def _file_identity(record: dict[str, Any]) -> tuple:
    return Path(str(record.get("video"))).name, record.get("size"), record.get("mtime_ns")


def reuse_features(out: Path, entries: list, sources_file: str = "sources.jsonl") -> list:
    """The entries whose features must be (re)computed. A video whose features are complete is
    kept when no record says otherwise (features of an earlier version, or a file that cannot be
    read now) or its record has the file's size and modification time; a video without features
    whose file (name, size and modification time) made another id's features gets a copy of them
    (recorded)."""
    sources = read_sources(out)
    by_file = {_file_identity(record): video_id for video_id, record in sources.items()}
    todo, copied = [], []
    for entry in entries:
        path = feature_path(out, entry.video_id)
        key = source_key(entry.video)
        if is_complete(path):
            record = sources.get(entry.video_id)
            if record is None or key is None or _same_source(record, key):
                continue
            log.info("%s: its video file changed since its features were made (%s); extracting it again",
                     entry.video_id, entry.video)
        elif key is not None:
            other = by_file.get(_file_identity(key))
            if other is not None and is_complete(feature_path(out, other)):
                atomic_save_npy(path, load_features(out, other))
                copied.append((entry.video_id, key))
                continue
        todo.append(entry)
    if copied:
        with open(out / sources_file, "a", encoding="utf-8") as handle:
            for video_id, key in copied:
                record_source(handle, video_id, key)
        log.info("%d videos listed under new ids took the features of the same file", len(copied))
    return todo


def record_cpu_decoded(features_dir: Path, reasons: dict[str, str]) -> None:
    """Add ``reasons`` (video id -> why a GPU decoder left it to the CPU) to ``extract.json``'s
    ``cpu_decoded``. The folder is locked meanwhile, so shards and ranks add theirs in turn."""
    import fcntl
    import os

    folder = os.open(features_dir, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        path = Path(features_dir) / META_FILE
        meta = read_json(path, "extraction settings")
        meta["cpu_decoded"] = {**meta.get("cpu_decoded", {}), **reasons}
        atomic_write_json(path, meta)
    finally:
        os.close(folder)  # releases the lock


def _line(ok: int, skipped: int, failed: int, clips: int, seconds: float, failures_file: str) -> str:
    rate = clips / seconds if seconds > 0 else 0.0
    done = f" ({skipped} already done)" if skipped else ""
    return (f"{ok + skipped} videos ok{done}, {failed} failed (see {failures_file}), "
            f"{clips} clips, {rate:.1f} clips/s")


# --------------------------------------------------------------------------- the folder
def extraction_meta(cfg: ExtractConfig, weights: str, device: torch.device, precision: str,
                    manifest: str | Path) -> dict[str, Any]:
    """The content of ``extract.json`` for a run."""
    return {
        "fps": cfg.fps,
        "clip_frames": cfg.clip_frames,
        "clip_seconds": cfg.clip_seconds,
        "size": cfg.size,
        "model": MODEL_NAME,
        "weights": weights,
        "init_seed": cfg.init_seed,
        "normalisation": {"mean": list(KINETICS_MEAN), "std": list(KINETICS_STD)},
        "precision": precision,
        "device": device_name(device),
        "decoder": cfg.decoder,
        "manifest": str(Path(manifest).resolve()),
        "versions": library_versions(),
    }


def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    """What defines a feature file of this folder: the feature's kind, and the precision it was computed in."""
    return {**feature_identity(meta), "precision": meta.get("precision")}


def claim_features_dir(features_dir: str | Path, meta: dict[str, Any], overwrite: bool = False) -> dict[str, Any]:
    """Record ``meta`` as the folder's ``extract.json``, or check the one there matches it.

    The first writer creates the file (exclusively: concurrent shards never overwrite each other's);
    later runs and other shards must agree on the settings that define a feature (fps, clip_frames,
    size, model, weights, seed of a random init, precision), else :class:`ConfigError` — a folder never
    mixes features of two kinds. ``overwrite`` replaces the file instead. Returns the recorded meta.
    """
    path = Path(features_dir) / META_FILE
    if overwrite:
        atomic_write_json(path, meta)
        return meta
    create_once_json(path, meta)
    recorded = check_feature_settings(read_json(path, "extraction settings"), path)
    theirs, ours = _identity(recorded), _identity(meta)
    for key in ours:
        if theirs.get(key) != ours[key]:
            raise ConfigError(
                f"{features_dir} holds features made with {key}={theirs.get(key)!r} but this run has "
                f"{key}={ours[key]!r}; use another output folder, or --overwrite to replace them"
            )
    if recorded.get("manifest") != meta.get("manifest"):
        log.info("%s was started from manifest %s; this run reads %s (features of the same video files are reused)",
                 features_dir, recorded.get("manifest"), meta.get("manifest"))
    return recorded


def remove_features(features_dir: str | Path) -> int:
    """Delete every feature file, ``extract.json`` and failure record of a folder (``--overwrite``);
    only in a folder extract wrote (it holds ``extract.json``): another folder's files are left."""
    folder = Path(features_dir)
    removed = 0
    if not (folder / META_FILE).is_file():
        return removed
    for path in [*folder.glob("*.npy"), *folder.glob("failures*.jsonl"), *folder.glob("sources*.jsonl"), folder / META_FILE]:
        if path.name.startswith(".") or not path.is_file():
            continue
        path.unlink()
        removed += path.suffix == ".npy"
    return removed


def feature_path(features_dir: str | Path, video_id: str) -> Path:
    return Path(features_dir) / f"{video_id}.npy"


def load_features(features_dir: str | Path, video_id: str) -> np.ndarray:
    """float16 ``[n_clips, 1024]`` features of one video."""
    path = feature_path(features_dir, video_id)
    if not path.exists():
        raise InputError(f"{path}: no features for video {video_id!r}", "missing")
    return load_npy(path, "features", check=functools.partial(_check_feature_header, path))


def mapped_features(features_dir: str | Path, video_id: str) -> np.ndarray:
    """The features of one video memory-mapped (float ``[n_clips, 1024]``, header checked
    against the file's size): reading rows of it reads only those rows."""
    path = feature_path(features_dir, video_id)
    return load_npy(path, "features", check=functools.partial(_check_feature_header, path), mmap=True)


def list_videos(features_dir: str | Path) -> list[str]:
    """Ids of the videos that have features in ``features_dir``, sorted."""
    return sorted(p.stem for p in Path(features_dir).glob("*.npy") if not p.name.startswith("."))


def unlisted_features(features_dir: str | Path, manifest: str | Path) -> list[Path]:
    """The feature files in ``features_dir`` of videos ``manifest`` no longer lists (what a folder
    extracted into again, in place, keeps from its earlier videos)."""
    held = list_videos(features_dir)
    listed = {entry.video_id for entry in read_manifest(manifest)} if held else set()
    return [feature_path(features_dir, video_id) for video_id in held if video_id not in listed]


def is_complete(path: str | Path) -> bool:
    """Whether ``path`` is a finished feature file: float16 ``[n_clips > 0, 1024]``, its header
    agreeing with its size. Files only appear by atomic rename, so one that reads back with that
    header is whole."""
    try:
        shape, dtype = npy_header(path, "features")
    except InputError:
        return False
    return dtype == np.float16 and len(shape) == 2 and shape[0] > 0 and shape[1] == FEATURE_DIM


def clip_count(features_dir: str | Path, video_id: str) -> int:
    """Number of clips of a video's feature file, read from the ``.npy`` header only (checked
    against the file's size)."""
    path = feature_path(features_dir, video_id)
    if not path.exists():
        raise InputError(f"{path}: no features for video {video_id!r}", "missing")
    shape, dtype = npy_header(path, "features")
    _check_feature_header(path, shape, dtype)
    return int(shape[0])


def _check_feature_header(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if len(shape) != 2 or shape[1] != FEATURE_DIM or dtype.kind != "f":
        raise InputError(f"{path}: expected float [n_clips, {FEATURE_DIM}], got {dtype} {list(shape)}")


def extract_info(features_dir: str | Path) -> dict:
    """``FEATURES/extract.json`` (fps, clip_frames, clip_seconds, manifest, …), or {} without one."""
    path = Path(features_dir) / META_FILE
    if not path.exists():
        log.warning("%s: not found; clip timing and the manifest are unknown", path)
        return {}
    return check_feature_settings(read_json(path, META_FILE), path)
