"""Decoding videos into clips beside the model: DataLoader worker processes, one ffmpeg process
per video (:class:`videobert.media.ClipReader`), clips handed over in shared memory.

Workers take the next video from a shared counter, so a long video does not hold back the others'
share, and send records in order per video:

* ``("clips", video, first_clip, uint8 [k, T, S, S, 3])`` — k consecutive clips;
* ``("end", video, n_clips, "", "")`` when the video decoded completely, or
  ``("end", video, -1, reason, kind)`` when it failed (its clips so far are then void).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from videobert.errors import InputError
from videobert.media import ClipReader, VideoInfo, probe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeSettings:
    """What a decoding worker needs to know."""

    fps: int
    clip_frames: int
    size: int
    decoder: str  # cpu, or cuda (NVDEC)
    threads: int  # ffmpeg threads per video
    gpu: int  # GPU index for the cuda decoder
    chunk_clips: int  # clips per record sent to the main process


class ClipChunks(torch.utils.data.IterableDataset):
    """The records of the module docstring, for the videos at ``videos``."""

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

    def __iter__(self) -> Iterator[tuple[str, int, int, Any, str]]:
        for index in self._claim():
            yield from self._decode(index)

    def _decode(self, index: int) -> Iterator[tuple[str, int, int, Any, str]]:
        path = self.videos[index]
        try:
            info = probe(path)
            decoder = self.settings.decoder
            sent = 0
            try:
                for first, chunk in self._chunks(path, info, decoder):
                    sent = first + len(chunk)
                    yield ("clips", index, first, chunk, "")
            except InputError as exc:
                if decoder != "cuda" or sent:
                    raise
                # NVDEC cannot take every codec; such a video is decoded on the CPU instead.
                log.info("%s: GPU decoding failed (%s); decoding on the CPU", path, exc)
                for first, chunk in self._chunks(path, info, "cpu"):
                    sent = first + len(chunk)
                    yield ("clips", index, first, chunk, "")
            yield ("end", index, sent, "", "")
        except InputError as exc:
            yield ("end", index, -1, str(exc), exc.kind)
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the others
            yield ("end", index, -1, f"{path}: {type(exc).__name__}: {exc}", "error")

    def _chunks(self, path: Path, info: VideoInfo, decoder: str) -> Iterator[tuple[int, torch.Tensor]]:
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
    """A DataLoader of :class:`ClipChunks` records decoded by ``workers`` processes (0: in this one),
    delivered as soon as any worker has one."""
    return torch.utils.data.DataLoader(
        ClipChunks(videos, settings),
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
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
