"""Extraction: decoded clips of many videos packed into full batches for the encoder, and each
video's features assembled as its batches come back.

:func:`extract_features` yields every video as it finishes — its float16 features
``[n_clips, 1024]``, or the error that stopped it — and leaves writing them to the stage. Every
batch has exactly ``batch_size`` rows (the last is padded), so a clip's feature does not depend on
which videos were processed with it and a resumed run computes the same files as an uninterrupted
one. Memory is bounded by a few clips per decoding worker plus one batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from videobert.errors import InputError
from videobert.features.decode import DecodeSettings, clip_loader
from videobert.features.s3d import ClipEncoder, PendingFeatures
from videobert.manifest import VideoEntry
from videobert.runtime import cpu_cores


@dataclass(frozen=True)
class Runtime:
    """How a run uses the machine (resolved from the config and the hardware)."""

    device: torch.device
    precision: str
    batch_size: int
    workers: int
    decode_threads: int  # decoding threads per video
    gpu: int  # GPU index for the GPU decoders


def resolve_runtime(device: torch.device, precision: str, batch_size: int | None, workers: int | None,
                    local_processes: int = 1) -> Runtime:
    """Defaults that keep every core busy: on CUDA, one decoding process per core left to this process;
    on CPU, where S3D costs far more than decoding, one decoding process per 8 cores beside the model's
    threads (on 2 cores, 1 worker beside 2 torch threads beat 0 or 2 workers, and 1 torch thread)."""
    cores = max(1, cpu_cores() // max(1, local_processes))
    on_gpu = device.type == "cuda"
    batch_size = batch_size or (64 if on_gpu else 4)
    if workers is None:
        if on_gpu:
            workers = max(1, cores - 1)
        else:
            workers = max(1, cores // 8) if cores > 1 else 0
    decode_threads = max(1, cores // max(1, workers)) if on_gpu else 1
    gpu = device.index if on_gpu and device.index is not None else 0
    return Runtime(device, precision, batch_size, workers, decode_threads, gpu)


@dataclass
class VideoFeatures:
    """One finished video: its features (float16 ``[n_clips, 1024]``), or why it has none."""

    entry: VideoEntry
    features: np.ndarray | None
    error: InputError | None = None
    cpu_reason: str = ""  # why a GPU decoder left this video to the CPU ("" where it did not)


class _Video:
    """Features of one video as batches come back."""

    def __init__(self, entry: VideoEntry):
        self.entry = entry
        self.parts: dict[int, np.ndarray] = {}  # clip index -> float32 [1024]
        self.n_clips: int | None = None  # known once the video's end record arrived
        self.finished = False
        self.cpu_reason = ""


def extract_features(
    entries: list[VideoEntry],
    encoder: ClipEncoder,
    runtime: Runtime,
    fps: int,
    clip_frames: int,
    size: int,
    decoder: str = "cpu",
    progress: Callable[..., Any] | None = None,
    desc: str = "extract",
) -> Iterator[VideoFeatures]:
    """The features of every entry, each yielded as soon as its last batch is back (see the module
    docstring). ``progress`` is a tqdm-like factory (``videobert.logs.progress``); ``desc`` names its bar."""
    if not entries:
        return
    began = time.perf_counter()
    # a few clips per record: small enough to bound memory, large enough to amortise the hand-over
    settings = DecodeSettings(fps, clip_frames, size, decoder, runtime.decode_threads, runtime.gpu,
                              chunk_clips=max(1, min(runtime.batch_size, 4)))
    loader = clip_loader([e.video for e in entries], settings, runtime.workers, pin_memory=runtime.device.type == "cuda")
    videos = [_Video(entry) for entry in entries]
    bar = progress(total=len(entries), desc=desc, unit="video") if progress else None
    batch_size = runtime.batch_size
    waiting: list[tuple[int, int, torch.Tensor]] = []  # (video, first clip, clips) not yet in a batch
    in_flight: tuple[PendingFeatures, list[tuple[int, int]]] | None = None
    finished: list[VideoFeatures] = []
    clips_done = 0

    def finish(video: _Video, error: InputError | None = None) -> None:
        nonlocal clips_done
        video.finished = True
        array = None
        if error is None:
            array = np.stack([video.parts[i] for i in range(len(video.parts))]).astype(np.float16)
            if not np.isfinite(array).all():
                array = None
                error = InputError(f"{video.entry.video}: non-finite features (overflow; use --precision bf16 or fp32)",
                                   "non_finite")
            else:
                clips_done += len(array)
        finished.append(VideoFeatures(video.entry, array, error, video.cpu_reason))
        video.parts.clear()
        if bar is not None:
            bar.set_postfix_str(f"{clips_done / (time.perf_counter() - began):.1f} clips/s", refresh=False)
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

    try:
        for record, index, number, payload, kind in loader:
            video = videos[index]
            if record == "clips":
                waiting.append((index, number, payload.to(runtime.device, non_blocking=True)))
                while sum(len(w[2]) for w in waiting) >= batch_size:
                    run_batch()
            elif number < 0:  # the video failed: its clips are void
                waiting[:] = [w for w in waiting if w[0] != index]
                finish(video, InputError(payload, kind))
            else:
                video.n_clips = number
                video.cpu_reason = payload
                if len(video.parts) == number:
                    finish(video)
            yield from finished
            finished.clear()
        while waiting:
            run_batch()
        collect()
        yield from finished
    finally:
        if bar is not None:
            bar.close()
    unfinished = [v.entry.video_id for v in videos if not v.finished]
    if unfinished:
        raise RuntimeError(f"extraction lost track of {len(unfinished)} videos ({', '.join(unfinished[:3])})")
