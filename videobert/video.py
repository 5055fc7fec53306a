"""ffmpeg: where the binary is, probing containers, and writing videos.

The ffmpeg binary is the static build shipped by the ``imageio-ffmpeg`` wheel (no system package
needed); set ``VIDEOBERT_FFMPEG`` to use another. Command lines are built with ``ffmpeg-python`` and
run as argument lists, never through a shell; input and output paths are passed as ``file:`` URLs
of absolute paths, so names with spaces, unicode or a leading ``-`` are never read as options.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from videobert.errors import InputError

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``$VIDEOBERT_FFMPEG``, else imageio-ffmpeg's static build."""
    override = os.environ.get("VIDEOBERT_FFMPEG")
    if override:
        return override
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        found = shutil.which("ffmpeg")
        if found:
            return found
    raise InputError("no ffmpeg binary: pip install imageio-ffmpeg, or set VIDEOBERT_FFMPEG")


def ffmpeg_url(path: str | Path) -> str:
    """A path as ffmpeg must see it: absolute, behind the ``file:`` protocol."""
    return "file:" + str(Path(path).absolute())


@dataclass(frozen=True)
class VideoInfo:
    """What a container says about its first video stream (sizes before rotation)."""

    duration: float  # seconds (container duration, or the stream's when the container has none)
    width: int
    height: int
    fps: float  # average frame rate
    frames: int | None  # frame count when the container records it
    rotation: int  # degrees the player rotates the picture (display matrix), 0/90/180/270
    has_audio: bool
    codec: str

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as displayed, i.e. after rotation."""
        return (self.height, self.width) if self.rotation % 180 == 90 else (self.width, self.height)


def probe(path: str | Path) -> VideoInfo:
    """Read stream information with PyAV. Raises :class:`InputError` naming the file and problem."""
    import av

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: not a readable video ({_first_line(exc)})") from None
    with container:
        streams = container.streams
        if not streams.video:
            kind = "audio-only file" if streams.audio else "no video stream"
            raise InputError(f"{path}: {kind}, nothing to decode")
        stream = streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        duration = None
        if container.duration is not None:
            duration = container.duration / 1_000_000
        elif stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        rotation = 0
        try:
            frame_rotation = getattr(stream.codec_context, "rotation", None)
        except Exception:  # noqa: BLE001 - older PyAV versions lack the attribute
            frame_rotation = None
        side = stream.metadata.get("rotate") if stream.metadata else None
        if side is not None:
            rotation = int(side) % 360
        elif frame_rotation:
            rotation = int(frame_rotation) % 360
        return VideoInfo(
            duration=float(duration) if duration is not None else float("nan"),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(Fraction(rate)) if rate else float("nan"),
            frames=stream.frames or None,
            rotation=rotation,
            has_audio=bool(streams.audio),
            codec=stream.codec_context.name,
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class VideoWriter:
    """Encode RGB frames (uint8 [H, W, 3]) to an H.264 mp4 through an ffmpeg pipe.

    The file appears at ``path`` only when :meth:`close` succeeds (written under a temporary name
    first). ``audio`` is an optional WAV file muxed as AAC. Encoding is single-threaded and
    bit-exact so that the same frames give the same file.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: int,
        audio: str | Path | None = None,
        crf: int = 20,
        preset: str = "veryfast",
    ):
        import ffmpeg

        from videobert.store import temp_path_for

        self.path = Path(path)
        self.tmp = temp_path_for(self.path).with_suffix(".mp4")
        self.shape = (height, width, 3)
        stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps)
        inputs = [stream.video]
        if audio is not None:
            inputs.append(ffmpeg.input(ffmpeg_url(audio)).audio)
        out_args = dict(
            vcodec="libx264",
            pix_fmt="yuv420p",
            preset=preset,
            crf=crf,
            g=2 * fps,
            threads=1,
            movflags="+faststart",
            map_metadata=-1,
            fflags="+bitexact",
            **{"flags:v": "+bitexact", "x264-params": "threads=1"},
        )
        if audio is not None:
            out_args.update(acodec="aac", audio_bitrate="64k", ar=16000, ac=1, **{"flags:a": "+bitexact"})
        self._proc = (
            ffmpeg.output(*inputs, ffmpeg_url(self.tmp), **out_args)
            .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
            .overwrite_output()
            .run_async(cmd=ffmpeg_exe(), pipe_stdin=True, pipe_stderr=True)
        )

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise ValueError(f"frame of shape {frame.shape} {frame.dtype}, expected {self.shape} uint8")
        self._proc.stdin.write(frame.tobytes())

    def close(self) -> None:
        from videobert.store import commit_temp

        self._proc.stdin.close()
        stderr = self._proc.stderr.read().decode(errors="replace")
        if self._proc.wait() != 0:
            self.tmp.unlink(missing_ok=True)
            raise RuntimeError(f"ffmpeg failed writing {self.path}: {stderr.strip()[-500:]}")
        commit_temp(self.tmp, self.path)

    def abort(self) -> None:
        self._proc.kill()
        self._proc.wait()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def run_ffmpeg(args: list[str], what: str) -> subprocess.CompletedProcess:
    """Run ffmpeg with ``args`` (no shell); a failure raises :class:`InputError` with its last line."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *args],
        capture_output=True,
    )
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(f"{what}: ffmpeg failed ({lines[-1] if lines else 'exit ' + str(proc.returncode)})")
    return proc


def grab_frame(path: str | Path, seconds: float, size: int | None = None) -> np.ndarray:
    """One RGB frame (uint8 [H, W, 3]) at ``seconds``; with ``size``, the centred square crop
    scaled to ``size``×``size`` (what feature extraction sees). Raises :class:`InputError`."""
    crop = "crop='min(iw,ih)':'min(iw,ih)'"
    vf = f"{crop},scale={size}:{size}" if size else "null"
    proc = run_ffmpeg(
        ["-ss", f"{max(0.0, seconds):.3f}", "-i", ffmpeg_url(path), "-frames:v", "1", "-vf", vf,
         "-f", "image2pipe", "-vcodec", "ppm", "pipe:"],
        what=str(path),
    )
    if not proc.stdout:
        raise InputError(f"{path}: no frame at {seconds:.2f} s")
    from PIL import Image
    import io

    return np.asarray(Image.open(io.BytesIO(proc.stdout)).convert("RGB"))
