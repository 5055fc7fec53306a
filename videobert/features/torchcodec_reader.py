"""Clip decoding with torchcodec (FFmpeg's libraries in this process) — on the CPU, or on a GPU with
NVDEC straight into a CUDA tensor — giving the clips :class:`videobert.media.ClipReader` gives.

The same frames as the ffmpeg pipe: output frame *i* at ``fps`` is the picture on screen at
``begin + (i + 0.5)/fps`` (what ffmpeg's ``fps`` filter picks, so variable frame rates come out
the same), ``round(seconds · fps)`` of them; the player's rotation is applied; the short side is
scaled to ``size`` in display proportions and the centre square cropped where ffmpeg crops it.
The pixels differ slightly: ffmpeg scales in YUV (bicubic) before converting to RGB, torchcodec
converts at full resolution and the frames are scaled in RGB (bicubic, antialiased) — a mean
difference of 1–4 levels of 255 on the test suite's videos. A file that stops decoding part way
keeps the frames before the damage and then fails with the ffmpeg pipe's messages (truncated or
corrupt, damaged, shorter than one clip).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import subprocess
from pathlib import Path

import torch

from videobert.errors import ConfigError, InputError
from videobert.media import check_decoded_length, check_one_clip, ffmpeg_exe

log = logging.getLogger(__name__)

# frames asked of the decoder at once: a batch amortises the calls, a damaged one is retried frame by frame
FRAMES_PER_CALL = 64
_SOURCE_LINE = re.compile(r"^.*?\.(cpp|cu|h):\d+, ")  # "decode_av_frame, /…/SingleStreamDecoder.cpp:1493, Could not …"
_INSTALL = ("pip install torchcodec (it is in the gpu and dev extras) and FFmpeg's shared libraries "
            "(apt-get install libavdevice59 on Debian 12, or ffmpeg from conda-forge)")
_told: set[str] = set()  # NVDEC fallbacks already said, by reason (said once a process)


def _message(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return _SOURCE_LINE.sub("", lines[0]).strip() if lines else type(exc).__name__


def _video_decoder():
    """torchcodec's VideoDecoder class, or :class:`ConfigError` saying what to install."""
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError as exc:  # noqa: F841 - a missing or broken install: both say what to install
        raise ConfigError(f"--decoder torchcodec: torchcodec is not installed ({_INSTALL})") from None
    return VideoDecoder


def _open(VideoDecoder, source, device: torch.device, threads: int):
    """A decoder of ``source``; :class:`ConfigError` where torchcodec cannot load FFmpeg's libraries."""
    try:
        return VideoDecoder(source, seek_mode="exact", num_ffmpeg_threads=threads, dimension_order="NCHW",
                            device=str(device))
    except RuntimeError as exc:
        if "Could not load libtorchcodec" in str(exc):
            raise ConfigError(f"--decoder torchcodec: torchcodec cannot load FFmpeg's shared libraries ({_INSTALL}); "
                              "or use --decoder cpu") from None
        raise


def nvdec_refusal(decoder) -> str | None:
    """Why a decoder opened on a CUDA device decodes on the CPU instead (torchcodec's own fallback:
    no NVDEC library, or a codec or profile the GPU's NVDEC cannot take); None when it uses NVDEC."""
    status = getattr(decoder, "cpu_fallback", None)
    if status is None or not bool(status):
        return None
    return str(status).split("]", 1)[-1].strip() or "NVDEC cannot decode it"


@functools.lru_cache(maxsize=None)
def check_torchcodec(device: str = "cpu") -> str | None:
    """Check that torchcodec decodes here, on ``device`` ("cpu" or "cuda:N"), by decoding a short
    generated H.264 clip. :class:`ConfigError` (one line, what to install) where it cannot at all;
    on a CUDA device, the reason NVDEC is not used (videos are then decoded on the CPU), or None."""
    VideoDecoder = _video_decoder()
    clip = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc2=size=256x144:rate=20:duration=0.5", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "matroska", "pipe:"],
        capture_output=True, check=True,
    ).stdout
    target = torch.device(device)
    try:
        decoder = _open(VideoDecoder, clip, target, 1)
        decoder.get_frames_played_at([0.1])
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here means the decoder is unusable on that device
        if target.type == "cuda":
            return f"torchcodec cannot decode on {device}: {_message(exc)}"
        raise ConfigError(f"--decoder torchcodec: torchcodec cannot decode a test clip ({_message(exc)}); {_INSTALL}") from None
    return nvdec_refusal(decoder) if target.type == "cuda" else None


def scaled_size(width: float, height: float, size: int) -> tuple[int, int]:
    """(height, width) with the short side ``size`` and the other its display proportion, rounded up
    (ffmpeg's ``max(size, ceil(size·dar))``)."""
    dar = width / height
    return max(size, math.ceil(size / dar)), max(size, math.ceil(size * dar))


def scale_and_crop(frames: torch.Tensor, height: int, width: int, size: int) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` → uint8 ``[N, size, size, 3]``: scaled to ``height`` × ``width``
    (bicubic, antialiased), the centre square cropped where ffmpeg's ``crop`` puts it (offsets
    rounded to the nearest pixel, halves to even). On the CPU torchvision's uint8 kernel; elsewhere
    the same filter in float32."""
    if frames.device.type == "cpu":
        import torchvision.transforms.v2.functional as TF

        scaled = TF.resize(frames, [height, width], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    else:
        scaled = scale_float(frames, height, width)
    top, left = round((height - size) / 2), round((width - size) / 2)  # lrint, as ffmpeg's crop: halves to even
    return scaled[:, :, top:top + size, left:left + size].permute(0, 2, 3, 1)


def scale_float(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` scaled to ``height`` × ``width`` in float32 (bicubic, antialiased),
    rounded back to uint8: the filter of torchvision's uint8 kernel, on any device."""
    scaled = torch.nn.functional.interpolate(frames.float(), size=(height, width), mode="bicubic", antialias=True,
                                             align_corners=False)
    return scaled.round_().clamp_(0, 255).to(torch.uint8)


class TorchcodecClipReader:
    """The clips of one video decoded by torchcodec, as :class:`videobert.media.ClipReader` gives
    them (``[clip_frames, size, size, 3]`` uint8 RGB, a trailing partial clip dropped, the same
    checks and one-line :class:`InputError` messages), read with :meth:`read_clips` into a tensor
    on ``device``. On a CUDA device the video is decoded by NVDEC and scaled there; a video NVDEC
    cannot take is decoded on the CPU instead (``cpu_reason`` says why; said once a process per
    reason). ``threads``: FFmpeg's decoding threads on the CPU (0: its choice)."""

    def __init__(self, path: str | Path, fps: float = 20, clip_frames: int = 30, size: int = 224,
                 device: torch.device | str = "cpu", threads: int = 0, expected_seconds: float | None = None):
        self.path = Path(path)
        self.fps = fps
        self.clip_frames = clip_frames
        self.size = size
        self.device = torch.device(device)
        self.expected_seconds = expected_seconds
        self.clip_shape = (clip_frames, size, size, 3)
        self.frames = 0  # frames decoded so far (the trailing partial clip's included once checked)
        self.cpu_reason: str | None = None  # why a video meant for NVDEC was decoded on the CPU
        self._stopped: str | None = None  # the decoder's error that ended the video early
        self._finished = False
        VideoDecoder = _video_decoder()
        self._decoder = self._open_decoder(VideoDecoder, threads)
        meta = self._decoder.metadata
        aspect = float(meta.pixel_aspect_ratio) if meta.pixel_aspect_ratio else 1.0
        self._height, self._width = scaled_size(meta.width * aspect, meta.height, size)  # upright: rotation applied
        begin, end = float(meta.begin_stream_seconds), float(meta.end_stream_seconds)
        count = round((end - begin) * fps)
        self._times = [t for t in (begin + (i + 0.5) / fps - 1e-6 for i in range(count)) if begin <= t < end]
        self._next = 0  # index of the next frame time to decode

    def _open_decoder(self, VideoDecoder, threads: int):
        path = str(self.path)
        try:
            if self.device.type == "cuda":
                try:
                    decoder = _open(VideoDecoder, path, self.device, threads)
                    self.cpu_reason = nvdec_refusal(decoder)
                except ConfigError:
                    raise
                except RuntimeError as exc:
                    self.cpu_reason = f"NVDEC could not open it: {_message(exc)}"
                if self.cpu_reason is None:
                    return decoder
                if self.cpu_reason not in _told:
                    _told.add(self.cpu_reason)
                    log.warning("%s: not decoded on the GPU (%s); such videos are decoded on the CPU and listed in "
                                "extract.json", self.path, self.cpu_reason)
            return _open(VideoDecoder, path, torch.device("cpu"), threads)
        except RuntimeError as exc:
            raise InputError(f"{self.path}: torchcodec could not decode it ({_message(exc)})", "decode") from None

    def _decode(self, times: list[float]) -> torch.Tensor:
        return self._decoder.get_frames_played_at(times).data

    def _decode_kept(self, times: list[float]) -> torch.Tensor | None:
        """The frames at ``times``; where the batch fails, the frames before the first that cannot
        be decoded (and the video's decoding stops there)."""
        try:
            return self._decode(times)
        except RuntimeError as exc:
            kept = []
            for time in times:
                try:
                    kept.append(self._decode([time]))
                except RuntimeError:
                    break
            self._stopped = f"torchcodec stopped at {times[len(kept)]:.2f} s: {_message(exc)}"
            return torch.cat(kept) if kept else None

    def read_clips(self, out: torch.Tensor) -> int:
        """Fill ``out`` (uint8 ``[k, *clip_shape]``, on :attr:`device`) with up to k next clips; the
        number filled (fewer only at the end of the video, after the checks of :meth:`finish`)."""
        whole = len(self._times) // self.clip_frames * self.clip_frames  # frames of whole clips
        want = min(len(out) * self.clip_frames, whole - self._next) if self._stopped is None else 0
        got = 0
        while got < want:
            times = self._times[self._next:self._next + min(FRAMES_PER_CALL, want - got)]
            frames = self._decode_kept(times)
            if frames is not None:
                rows = scale_and_crop(frames, self._height, self._width, self.size)  # where decoded, then copied
                out.view(-1, *self.clip_shape[1:])[got:got + len(rows)].copy_(rows)
                got += len(rows)
                self._next += len(rows)
            if self._stopped is not None:
                break
        self.frames = self._next
        clips = got // self.clip_frames
        if clips < len(out):
            self.finish()
        return clips

    def finish(self) -> None:
        """Check the whole video was decoded (raises :class:`InputError` as ClipReader.finish does)."""
        if self._finished:
            return
        self._finished = True
        if self._stopped is None and self._next < len(self._times):
            # the trailing partial clip is dropped, but decoded all the same: it counts in the checks
            kept = self._decode_kept(self._times[self._next:])
            self._next += 0 if kept is None else len(kept)
        self.frames = self._next
        check_decoded_length(self.path, self.frames, self.fps, self.expected_seconds, self._stopped or "")
        if self._stopped is not None:
            raise InputError(f"{self.path}: damaged ({self._stopped}); re-download or re-encode it", "decode")
        check_one_clip(self.path, self.frames, self.fps, self.clip_frames)

    def close(self) -> None:
        self._decoder = None

    def __enter__(self) -> "TorchcodecClipReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
