"""Decoding videos into clips beside the model: DataLoader worker processes, one decoder per
video, clips handed over in shared memory — or, for ``torchcodec-cuda``, NVDEC in the main process
decoding straight into CUDA tensors (the model's batches then never pass through host memory).

The decoders (``--decoder``):

* ``cpu`` — one ffmpeg process per video (:class:`videobert.media.ClipReader`), on the CPU;
* ``cuda`` — the same with NVDEC and ``scale_cuda`` (an ffmpeg built with CUDA);
* ``torchcodec`` — torchcodec in the worker process (:mod:`videobert.features.torchcodec_reader`);
* ``torchcodec-cuda`` — torchcodec on the model's GPU (NVDEC).

A video the GPU cannot decode is decoded on the CPU instead and its end record says why.
Workers take the next video from a shared counter, so a long video does not hold back the others'
share, and send records in order per video:

* ``("clips", video, first_clip, uint8 [k, T, S, S, 3])`` — k consecutive clips;
* ``("end", video, n_clips, cpu_reason, "")`` when the video decoded completely (``cpu_reason``:
  why a GPU decoder left it to the CPU, else ""), or ``("end", video, -1, reason, kind)`` when it
  failed (its clips so far are then void).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import torch

from videobert.errors import ConfigError, InputError
from videobert.media import ClipReader, VideoInfo, check_cuda_decoder, probe

log = logging.getLogger(__name__)

Decoder = Literal["cpu", "cuda", "torchcodec", "torchcodec-cuda"]
DECODERS: tuple[str, ...] = Decoder.__args__
GPU_DECODERS = ("cuda", "torchcodec-cuda")


def decodes_into_gpu(decoder: str) -> bool:
    """Whether ``decoder`` hands over clips already on the GPU (decoded in the main process)."""
    return decoder == "torchcodec-cuda"


def clips_device(decoder: str, gpu: int) -> torch.device:
    """Where ``decoder``'s clips are handed over: the GPU for a decoder into it, else host memory."""
    return torch.device("cuda", gpu) if decodes_into_gpu(decoder) else torch.device("cpu")


def decoder_for_device(recorded: str, device: torch.device) -> str:
    """The decoder that reproduces features ``recorded`` (extract.json's ``decoder``) on ``device``:
    the same library, on the GPU only where the model is."""
    library_cpu = "torchcodec" if str(recorded).startswith("torchcodec") else "cpu"
    if device.type != "cuda":
        return library_cpu
    return recorded if recorded in DECODERS else "cpu"


def check_decoder(decoder: str, device: torch.device, gpu: int) -> None:
    """Raise :class:`ConfigError` unless ``decoder`` can run beside a model on ``device``. Where
    torchcodec's NVDEC is unusable it says so once; videos are then decoded on the CPU."""
    if decoder in GPU_DECODERS and device.type != "cuda":
        raise ConfigError(f"--decoder {decoder} needs the model on a CUDA device (--device cuda, or auto on a GPU "
                          "machine); on the CPU use --decoder cpu or torchcodec")
    if decoder == "cuda":
        check_cuda_decoder(gpu)
    elif decoder.startswith("torchcodec"):
        from videobert.features.torchcodec_reader import check_torchcodec

        refusal = check_torchcodec(f"cuda:{gpu}" if decoder == "torchcodec-cuda" else "cpu")
        if refusal:
            log.warning("--decoder %s: %s; videos are decoded on the CPU (listed in extract.json)", decoder, refusal)


@dataclass(frozen=True)
class DecodeSettings:
    """What a decoding worker needs to know."""

    fps: int
    clip_frames: int
    size: int
    decoder: str  # one of DECODERS
    threads: int  # decoding threads per video
    gpu: int  # GPU index for the GPU decoders
    chunk_clips: int  # clips per record sent to the main process


class ClipChunks(torch.utils.data.IterableDataset):
    """The records of the module docstring, for the videos at ``videos``."""

    def __init__(self, videos: list[Path], settings: DecodeSettings):
        self.videos = videos
        self.settings = settings
        self.next_video = multiprocessing.Value("q", 0)
        self._cpu_reason = ""  # why the video being decoded left the GPU for the CPU

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
            self._cpu_reason = ""
            try:
                for first, chunk in self._chunks(path, info, decoder):
                    sent = first + len(chunk)
                    yield ("clips", index, first, chunk, "")
            except InputError as exc:
                if decoder not in GPU_DECODERS or sent:
                    raise
                # NVDEC cannot take every codec; such a video is decoded on the CPU instead (by the same library).
                log.info("%s: GPU decoding failed (%s); decoding on the CPU", path, exc)
                self._cpu_reason = f"NVDEC decoding failed: {exc}"
                for first, chunk in self._chunks(path, info, "cpu" if decoder == "cuda" else "torchcodec"):
                    sent = first + len(chunk)
                    yield ("clips", index, first, chunk, "")
            yield ("end", index, sent, self._cpu_reason, "")
        except InputError as exc:
            yield ("end", index, -1, str(exc), exc.kind)
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the others
            yield ("end", index, -1, f"{path}: {type(exc).__name__}: {exc}", "error")

    def _reader(self, path: Path, info: VideoInfo, decoder: str):
        s = self.settings
        if decoder.startswith("torchcodec"):
            from videobert.features.torchcodec_reader import TorchcodecClipReader

            device = torch.device("cuda", s.gpu) if decoder == "torchcodec-cuda" else torch.device("cpu")
            return TorchcodecClipReader(path, s.fps, s.clip_frames, s.size, device, s.threads,
                                        expected_seconds=info.video_duration)
        rotation = info.rotation if decoder == "cuda" else None
        return ClipReader(path, s.fps, s.clip_frames, s.size, decoder, rotation, s.threads, s.gpu,
                          expected_seconds=info.video_duration)

    def _chunks(self, path: Path, info: VideoInfo, decoder: str) -> Iterator[tuple[int, torch.Tensor]]:
        s = self.settings
        in_worker = torch.utils.data.get_worker_info() is not None
        device = clips_device(decoder, s.gpu)
        with self._reader(path, info, decoder) as reader:
            self._cpu_reason = getattr(reader, "cpu_reason", None) or self._cpu_reason
            first = 0
            while True:
                chunk = torch.empty((s.chunk_clips, *reader.clip_shape), dtype=torch.uint8, device=device)
                if in_worker:  # filled in place in shared memory: no copy on the way to the main process
                    chunk.share_memory_()
                filled = reader.read_clips(chunk)
                if filled:
                    yield first, chunk[:filled]
                    first += filled
                if filled < s.chunk_clips:
                    return


def clip_loader(videos: list[Path], settings: DecodeSettings, workers: int, pin_memory: bool = False):
    """A DataLoader of :class:`ClipChunks` records decoded by ``workers`` processes (0: in this one),
    delivered as soon as any worker has one. A decoder that decodes into the GPU runs in this
    process (CUDA does not cross into forked workers; NVDEC is not the CPU's work anyway)."""
    if decodes_into_gpu(settings.decoder):
        workers, pin_memory = 0, False
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
