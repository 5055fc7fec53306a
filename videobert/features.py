"""Clip features: S3D activations, one 1024-d vector per clip (see docs/formats.md).

* :class:`ExtractConfig` — the settings of ``videobert extract``.
* :func:`build_s3d` — torchvision's S3D with Kinetics-400 weights from a local file (loaded with
  ``weights_only=True``), or the seeded random initialisation of :mod:`videobert.s3d_init`.
* :class:`ClipEncoder` — uint8 clips ``[B, T, H, W, 3]`` → float32 features ``[B, 1024]``: the
  global average of ``model.features`` (before the classifier), with torchvision's Kinetics-400
  input normalisation applied on the device, channels-last 3-D layout and autocast.
* :func:`extract_features` — decodes videos in DataLoader worker processes (one ffmpeg process
  per video, :class:`videobert.video.ClipReader`) while the model runs, packs clips from several
  videos into full batches, and writes ``<video_id>.npy`` (float16 ``[n_clips, 1024]``) atomically.
* :func:`claim_features_dir` / :func:`is_complete` — the folder's ``extract.json`` and what a
  rerun may skip; :func:`load_features` reads one video's features back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
import torch
from torch import nn

from videobert.config import field
from videobert.device import autocast
from videobert.errors import ConfigError, InputError
from videobert.manifest import VideoEntry
from videobert.store import FailureLog, atomic_save_npy, atomic_write_json, read_json, temp_path_for
from videobert.video import ClipReader, probe

log = logging.getLogger(__name__)

FEATURE_DIM = 1024
MODEL_NAME = "torchvision S3D, global average of model.features"
# torchvision's S3D_Weights.KINETICS400_V1 transforms: frames in [0, 1], then these per channel.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
RANDOM_INIT = "random-init"
META_FILE = "extract.json"
# Settings that define what a feature file means; a folder never mixes two of them.
IDENTITY_KEYS = ("fps", "clip_frames", "size", "model", "weights", "precision")
MIN_CLIP_FRAMES = 8  # S3D's temporal pooling needs at least 8 frames
MIN_SIZE = 112


@dataclass
class ExtractConfig:
    """Configuration of ``videobert extract``."""

    fps: int = field(20, help="frames per second sampled from each video")
    clip_frames: int = field(30, help="frames per clip; clips do not overlap and a trailing partial clip is dropped")
    size: int = field(224, help="frame size: the short side is scaled to it, then the centre square is cropped")
    weights: Path | None = field(None, help="torchvision S3D state dict (.pth, e.g. Kinetics-400); none: seeded random init")
    init_seed: int = field(0, help="seed of the random initialisation used without weights")
    device: Literal["auto", "cpu", "cuda"] = field("auto", help="where the model runs (auto: CUDA when visible)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = field("auto", help="model precision (auto: bf16/fp16 on CUDA, fp32 on CPU)")
    decoder: Literal["cpu", "cuda"] = field("cpu", help="video decoding: ffmpeg on the CPU, or NVDEC + scale_cuda on the GPU")
    batch_size: int | None = field(None, help="clips per model call (none: 64 on CUDA, 4 on CPU)")
    workers: int | None = field(None, help="decoding processes beside the model (0: decode in the main process; none: one per spare core on CUDA, one per 8 cores on CPU)")

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


# --------------------------------------------------------------------------- model


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_s3d_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision-format S3D state dict from a local file, unpickled with ``weights_only=True``
    (a file holding arbitrary Python objects is refused). Accepts a bare state dict or one wrapped
    under ``state_dict`` / ``model``. Raises :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ...
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        if "weights only load failed" in text.lower() or "unsupported global" in text.lower():
            reason = "it holds Python objects other than tensors; refused (loaded with weights_only=True)"
        raise InputError(f"{path}: not a loadable S3D state dict ({reason})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: expected a state dict of tensors (torch.save(model.state_dict(), path))")
    return state


def build_s3d(weights: str | Path | None = None, init_seed: int = 0) -> tuple[nn.Module, str]:
    """torchvision's S3D in eval mode, and what initialised it: the weights file's sha256, or
    ``"random-init"``. Only ``features.*`` is loaded (strictly): the classifier is never used, so a
    head fine-tuned to another number of classes is fine."""
    from torchvision.models.video import s3d

    from videobert.s3d_init import random_init_s3d

    model = s3d(weights=None)
    if weights is None:
        log.warning(
            "NO PRETRAINED WEIGHTS: S3D is randomly initialised (seed %d). The features are good for "
            "testing the pipeline, not for research; pass --weights with torchvision's Kinetics-400 S3D "
            "state dict (s3d-d76dad2f.pth).", init_seed,
        )
        random_init_s3d(model, init_seed)
        return model.eval(), RANDOM_INIT
    state = load_s3d_state(weights)
    prefix = "features."
    features = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        model.features.load_state_dict(features, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise InputError(f"{weights}: not a torchvision S3D state dict ({detail})") from None
    return model.eval(), file_sha256(weights)


class PendingFeatures:
    """Features of a submitted batch; :meth:`result` waits for them (float32 numpy ``[B, 1024]``)."""

    def __init__(self, features: torch.Tensor):
        if features.is_cuda:
            self._host = torch.empty(features.shape, dtype=features.dtype, pin_memory=True)
            self._host.copy_(features, non_blocking=True)
            self._done = torch.cuda.Event()
            self._done.record()
        else:
            self._host, self._done = features, None

    def result(self) -> np.ndarray:
        if self._done is not None:
            self._done.synchronize()
        return self._host.numpy()


class ClipEncoder:
    """S3D clip features on one device: uint8 clips ``[B, T, H, W, 3]`` → float32 ``[B, 1024]``.

    Frames travel as uint8 and are normalised on the device. ``[B, T, H, W, 3]`` permuted to
    ``[B, 3, T, H, W]`` is already the channels-last 3-D layout the model is converted to, so no
    copy is made for it. ``precision`` is applied with :func:`videobert.device.autocast`.
    """

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32"):
        self.device = device
        self.precision = precision
        self.model = model.eval().requires_grad_(False).to(device, memory_format=torch.channels_last_3d)
        mean = torch.tensor(KINETICS_MEAN, device=device).view(1, 3, 1, 1, 1)
        std = torch.tensor(KINETICS_STD, device=device).view(1, 3, 1, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = mean / std
        if device.type == "cuda":
            torch.cuda.set_device(device)  # streams, events and pinned buffers of this GPU
            torch.backends.cudnn.benchmark = True

    def submit(self, clips: torch.Tensor) -> PendingFeatures:
        """Start the features of ``clips`` (uint8 ``[B, T, H, W, 3]``, any device) without waiting."""
        with torch.inference_mode():
            frames = clips.to(self.device, non_blocking=True).permute(0, 4, 1, 2, 3)
            frames = frames.float().mul_(self._scale).sub_(self._shift)
            with autocast(self.device, self.precision):
                activations = self.model.features(frames)
            return PendingFeatures(activations.float().mean(dim=(2, 3, 4)))

    def __call__(self, clips: torch.Tensor | np.ndarray) -> np.ndarray:
        """float32 ``[B, 1024]`` features of uint8 clips ``[B, T, H, W, 3]``."""
        return self.submit(torch.as_tensor(clips)).result()


# --------------------------------------------------------------------------- the folder


def feature_path(features_dir: str | Path, video_id: str) -> Path:
    return Path(features_dir) / f"{video_id}.npy"


def load_features(features_dir: str | Path, video_id: str) -> np.ndarray:
    """float16 ``[n_clips, 1024]`` features of one video."""
    path = feature_path(features_dir, video_id)
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no features for video {video_id!r}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable features ({exc})") from None
    if array.ndim != 2 or array.shape[1] != FEATURE_DIM:
        raise InputError(f"{path}: expected shape [n_clips, {FEATURE_DIM}], got {list(array.shape)}")
    return array


def list_videos(features_dir: str | Path) -> list[str]:
    """Ids of the videos that have features in ``features_dir``, sorted."""
    return sorted(p.stem for p in Path(features_dir).glob("*.npy") if not p.name.startswith("."))


def is_complete(path: str | Path) -> bool:
    """Whether ``path`` is a finished feature file: float16 ``[n_clips > 0, 1024]``. Files only
    appear by atomic rename, so one that reads back with that header is whole."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return False
    return array.dtype == np.float16 and array.ndim == 2 and array.shape[0] > 0 and array.shape[1] == FEATURE_DIM


def extraction_meta(
    cfg: ExtractConfig, weights: str, device: torch.device, precision: str, manifest: str | Path
) -> dict[str, Any]:
    """The content of ``extract.json`` for a run."""
    from videobert.store import library_versions

    if device.type == "cuda":
        device_name = f"cuda ({torch.cuda.get_device_name(device)})"
    else:
        device_name = "cpu"
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
        "device": device_name,
        "decoder": cfg.decoder,
        "manifest": str(Path(manifest).resolve()),
        "versions": library_versions(),
    }


def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    identity = {key: meta.get(key) for key in IDENTITY_KEYS}
    if meta.get("weights") == RANDOM_INIT:
        identity["init_seed"] = meta.get("init_seed")
    return identity


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
    if not path.exists():
        tmp = temp_path_for(path)
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: last writer wins, content agrees
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    recorded = read_json(path, "extraction settings")
    theirs, ours = _identity(recorded), _identity(meta)
    for key in ours:
        if theirs.get(key) != ours[key]:
            raise ConfigError(
                f"{features_dir} holds features made with {key}={theirs.get(key)!r} but this run has "
                f"{key}={ours[key]!r}; use another output folder, or --overwrite to replace them"
            )
    if recorded.get("manifest") != meta.get("manifest"):
        log.warning("%s was started from manifest %s; this run reads %s", features_dir, recorded.get("manifest"), meta.get("manifest"))
    return recorded


def remove_features(features_dir: str | Path) -> int:
    """Delete every feature file, ``extract.json`` and failure record of a folder (``--overwrite``)."""
    folder = Path(features_dir)
    removed = 0
    for path in [*folder.glob("*.npy"), *folder.glob("failures*.jsonl"), folder / META_FILE]:
        if path.name.startswith(".") or not path.is_file():
            continue
        path.unlink()
        removed += path.suffix == ".npy"
    return removed


# --------------------------------------------------------------------------- decoding workers


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Runtime:
    """How a run uses the machine (resolved from the config and the hardware)."""

    device: torch.device
    precision: str
    batch_size: int
    workers: int
    decode_threads: int  # ffmpeg threads per video
    gpu: int  # GPU index for the cuda decoder


def resolve_runtime(cfg: ExtractConfig, device: torch.device, precision: str, local_processes: int = 1) -> Runtime:
    """Defaults that keep every core busy: on CUDA, one decoding process per core left to this process;
    on CPU, where S3D costs far more than decoding, one decoding process per 8 cores beside the model's
    threads (on 2 cores, 1 worker beside 2 torch threads beat 0 or 2 workers, and 1 torch thread)."""
    cores = max(1, cpu_cores() // max(1, local_processes))
    on_gpu = device.type == "cuda"
    batch_size = cfg.batch_size or (64 if on_gpu else 4)
    if cfg.workers is not None:
        workers = cfg.workers
    elif on_gpu:
        workers = max(1, cores - 1)
    else:
        workers = max(1, cores // 8) if cores > 1 else 0
    decode_threads = max(1, cores // max(1, workers)) if on_gpu else 1
    gpu = device.index if on_gpu and device.index is not None else 0
    return Runtime(device, precision, batch_size, workers, decode_threads, gpu)


@dataclass(frozen=True)
class DecodeSettings:
    """What a decoding worker needs to know."""

    fps: int
    clip_frames: int
    size: int
    decoder: str
    threads: int  # ffmpeg threads per video
    gpu: int
    chunk_clips: int  # clips per record sent to the main process

    @classmethod
    def of(cls, cfg: ExtractConfig, runtime: Runtime) -> "DecodeSettings":
        # a few clips per record: small enough to bound memory, large enough to amortise the hand-over
        chunk_clips = max(1, min(runtime.batch_size, 4))
        return cls(cfg.fps, cfg.clip_frames, cfg.size, cfg.decoder, runtime.decode_threads, runtime.gpu, chunk_clips)


class _ClipChunks(torch.utils.data.IterableDataset):
    """Decodes videos and yields ``(kind, video, n, clips)`` records, in order per video:

    * ``("clips", video, first_clip, uint8 [k, T, S, S, 3])`` — k consecutive clips;
    * ``("end", video, n_clips, "")`` when the video decoded completely, or
      ``("end", video, -1, reason)`` when it failed (its clips so far are then void).

    Worker processes take the next video from a shared counter, so a long video does not hold back
    the others' share.
    """

    def __init__(self, videos: list[Path], settings: DecodeSettings):
        self.videos = videos
        self.settings = settings
        self.next_video = multiprocessing.Value("q", 0)

    def _claim(self) -> Iterator[int]:
        while True:
            with self.next_video.get_lock():
                index = self.next_video.value
                self.next_video.value += 1
            if index >= len(self.videos):
                return
            yield index

    def __iter__(self) -> Iterator[tuple[str, int, int, Any]]:
        for index in self._claim():
            yield from self._decode(index)

    def _decode(self, index: int) -> Iterator[tuple[str, int, int, Any]]:
        path = self.videos[index]
        try:
            info = probe(path)
            decoder = self.settings.decoder
            sent = 0
            try:
                for first, chunk in self._chunks(path, info, decoder):
                    sent = first + len(chunk)
                    yield ("clips", index, first, chunk)
            except InputError as exc:
                if decoder != "cuda" or sent:
                    raise
                # NVDEC cannot take every codec; such a video is decoded on the CPU instead.
                log.info("%s: GPU decoding failed (%s); decoding on the CPU", path, exc)
                for first, chunk in self._chunks(path, info, "cpu"):
                    sent = first + len(chunk)
                    yield ("clips", index, first, chunk)
            yield ("end", index, sent, "")
        except InputError as exc:
            yield ("end", index, -1, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the others
            yield ("end", index, -1, f"{path}: {type(exc).__name__}: {exc}")

    def _chunks(self, path: Path, info, decoder: str) -> Iterator[tuple[int, torch.Tensor]]:
        s = self.settings
        in_worker = torch.utils.data.get_worker_info() is not None
        rotation = info.rotation if decoder == "cuda" else None
        with ClipReader(path, s.fps, s.clip_frames, s.size, decoder, rotation, s.threads, s.gpu,
                        expected_seconds=info.video_duration) as reader:
            first = 0
            while True:
                chunk = torch.empty((s.chunk_clips, *reader.clip_shape), dtype=torch.uint8)
                if in_worker:  # filled in place in shared memory: no copy on the way to the main process
                    chunk.share_memory_()
                filled = 0
                while filled < s.chunk_clips and reader.read_clip(chunk[filled].numpy()):
                    filled += 1
                if filled:
                    yield first, chunk[:filled]
                    first += filled
                if filled < s.chunk_clips:
                    return


def clip_loader(videos: list[Path], settings: DecodeSettings, workers: int, pin_memory: bool = False):
    """A DataLoader of :class:`_ClipChunks` records decoded by ``workers`` processes (0: in this one),
    delivered as soon as any worker has one."""
    return torch.utils.data.DataLoader(
        _ClipChunks(videos, settings),
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_init_decoding_worker if workers else None,
        in_order=False,
        prefetch_factor=2 if workers else None,
    )


def _init_decoding_worker(_: int) -> None:
    torch.set_num_threads(1)
    # Die with the main process, even on kill -9: the worker's ffmpeg then loses its reader and
    # exits at once (instead of after the DataLoader's 5 s watchdog poll).
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# --------------------------------------------------------------------------- extraction


@dataclass
class ExtractSummary:
    """What a run did: videos written, found already done, failed; clips computed; wall time."""

    ok: int = 0
    skipped: int = 0
    failed: int = 0
    clips: int = 0
    seconds: float = 0.0

    def line(self, failures_file: str = "failures.jsonl") -> str:
        rate = self.clips / self.seconds if self.seconds > 0 else 0.0
        done = f" ({self.skipped} already done)" if self.skipped else ""
        return (
            f"{self.ok + self.skipped} videos ok{done}, {self.failed} failed (see {failures_file}), "
            f"{self.clips} clips, {rate:.1f} clips/s"
        )


class _Video:
    """Features of one video as batches come back."""

    def __init__(self, entry: VideoEntry):
        self.entry = entry
        self.parts: dict[int, np.ndarray] = {}  # clip index -> float32 [1024]
        self.n_clips: int | None = None  # known once the video's end record arrived
        self.finished = False


def extract_features(
    entries: list[VideoEntry],
    features_dir: str | Path,
    cfg: ExtractConfig,
    encoder: ClipEncoder,
    runtime: Runtime,
    failures: FailureLog,
    progress: Callable[..., Any] | None = None,
) -> ExtractSummary:
    """Write ``<video_id>.npy`` for every entry that lacks a complete one; record the others' failures.

    Clips of several videos share each batch; every batch has exactly ``runtime.batch_size`` rows
    (the last is padded), so a clip's feature does not depend on which videos were processed with it
    and a resumed run writes the same files as an uninterrupted one. Memory is bounded by a few clips
    per decoding worker plus one batch. ``progress`` is a tqdm-like factory (``videobert.logs.progress``).
    """
    out = Path(features_dir)
    began = time.perf_counter()
    summary = ExtractSummary()
    todo = []
    for entry in entries:
        if is_complete(feature_path(out, entry.video_id)):
            summary.skipped += 1
        else:
            todo.append(entry)
    if summary.skipped:
        log.info("%d of %d videos already have features; skipping them", summary.skipped, len(entries))
    if not todo:
        summary.seconds = time.perf_counter() - began
        return summary

    settings = DecodeSettings.of(cfg, runtime)
    loader = clip_loader([e.video for e in todo], settings, runtime.workers, pin_memory=runtime.device.type == "cuda")
    videos = [_Video(entry) for entry in todo]
    bar = progress(total=len(todo), desc="extract", unit="video") if progress else None
    batch_size = runtime.batch_size
    waiting: list[tuple[int, int, torch.Tensor]] = []  # (video, first clip, clips) not yet in a batch
    in_flight: tuple[PendingFeatures, list[tuple[int, int]]] | None = None

    def finish(video: _Video, error: str = "") -> None:
        video.finished = True
        entry = video.entry
        if not error:
            array = np.stack([video.parts[i] for i in range(len(video.parts))]).astype(np.float16)
            if np.isfinite(array).all():
                atomic_save_npy(feature_path(out, entry.video_id), array)
                summary.ok += 1
                summary.clips += len(array)
            else:
                error = f"{entry.video}: non-finite features (overflow; use --precision bf16 or fp32)"
        if error:
            failures.record(entry.video_id, error, video=str(entry.video))
            summary.failed += 1
        video.parts.clear()
        if bar is not None:
            elapsed = time.perf_counter() - began
            bar.set_postfix_str(f"{summary.clips / elapsed:.1f} clips/s", refresh=False)
            bar.update(1)

    def collect() -> None:
        nonlocal in_flight
        if in_flight is None:
            return
        pending, owners = in_flight
        in_flight = None
        for row, (index, clip) in zip(pending.result(), owners):
            video = videos[index]
            if video.finished:  # failed while this batch was running
                continue
            video.parts[clip] = row.copy()
            if len(video.parts) == video.n_clips:
                finish(video)

    def run_batch() -> None:
        nonlocal in_flight
        pieces, owners = [], []
        while waiting and len(owners) < batch_size:
            index, first, clips = waiting[0]
            take = min(len(clips), batch_size - len(owners))
            pieces.append(clips[:take])
            owners.extend((index, first + i) for i in range(take))
            if take == len(clips):
                waiting.pop(0)
            else:
                waiting[0] = (index, first + take, clips[take:])
        if len(owners) < batch_size:  # the last batch: padded, so that every batch has the same shape
            pad = torch.zeros((batch_size - len(owners), *pieces[0].shape[1:]), dtype=torch.uint8, device=pieces[0].device)
            pieces.append(pad)
        pending = encoder.submit(torch.cat(pieces))
        collect()  # the previous batch ran while this one was being assembled
        in_flight = (pending, owners)

    for kind, index, number, payload in loader:
        video = videos[index]
        if kind == "clips":
            waiting.append((index, number, payload.to(runtime.device, non_blocking=True)))
            while sum(len(w[2]) for w in waiting) >= batch_size:
                run_batch()
        elif payload:  # the video failed: its clips are void
            waiting[:] = [w for w in waiting if w[0] != index]
            finish(video, payload)
        else:
            video.n_clips = number
            if len(video.parts) == number:
                finish(video)
    while waiting:
        run_batch()
    collect()
    if bar is not None:
        bar.close()
    unfinished = [v.entry.video_id for v in videos if not v.finished]
    if unfinished:
        raise RuntimeError(f"extraction lost track of {len(unfinished)} videos ({', '.join(unfinished[:3])})")
    summary.seconds = time.perf_counter() - began
    return summary
