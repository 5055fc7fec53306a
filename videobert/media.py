"""Media files: ffmpeg and PyAV for video and audio, Pillow for pictures.

Video — where the ffmpeg binary is, probing containers, decoding clips, grabbing frames and
writing videos. Audio — the first audio stream as 16 kHz mono PCM. Pictures — JPEG files and
contact sheets (a grid of captioned tiles), which the visual vocabulary's exemplars and the
retrieval hits share.

The ffmpeg binary is the static build shipped by the ``imageio-ffmpeg`` wheel (no system package
needed); set ``VIDEOBERT_FFMPEG`` to use another. Command lines are built with ``ffmpeg-python`` and
run as argument lists, never through a shell; input and output paths are passed as ``file:`` URLs
of absolute paths, so names with spaces, unicode or a leading ``-`` are never read as options.

Clip decoding (:class:`ClipReader`) streams one video through one ffmpeg process: resample to
``fps``, scale the short side to ``size``, centre-crop ``size``×``size``, and read raw RGB frames
from a pipe, one clip of ``clip_frames`` frames at a time, so memory stays at a clip whatever the
video's length or resolution. Clip *i* holds output frames ``[i·clip_frames, (i+1)·clip_frames)``,
i.e. the picture on screen at times ``i·clip_seconds + k/fps``; a trailing partial window is dropped.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Literal, Sequence

import av
import ffmpeg
import numpy as np
from PIL import Image, ImageDraw

from videobert.errors import ConfigError, InputError
from videobert.logs import printable
from videobert.store import atomic_write_bytes, check_regular, commit_temp, temp_path_for

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


# The demuxers ffmpeg and PyAV may open an input with: containers that hold their media
# themselves. Playlists and lists of files (hls, dash, concat, imf, image sequences, lavfi) are not
# among them — they would read files the manifest never named — and only local files are read.
DEMUXERS = (
    "mov", "matroska", "avi", "flv", "mpegts", "mpeg", "mpegvideo", "asf", "ogg", "nut", "mxf", "dv", "gif",
    "h264", "hevc", "m4v", "ivf", "obu", "yuv4mpegpipe", "mjpeg", "rm", "wav", "w64", "aiff", "caf", "mp3", "aac",
    "flac", "amr",
)
INPUT_OPTIONS = {"format_whitelist": ",".join(DEMUXERS), "protocol_whitelist": "file"}


def _refused_container(path: Path) -> InputError:
    return InputError(f"{path}: not a media container this pipeline reads (playlists and file lists are refused; "
                      f"accepted: mp4/mov, mkv/webm, avi, mpeg-ts/ps, flv, ogg, ... — remux it with ffmpeg)")


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
    rotation: int  # degrees the player rotates the picture clockwise (display matrix), 0/90/180/270
    has_audio: bool
    codec: str
    video_duration: float = float("nan")  # seconds of the video stream itself (audio may run longer)


def probe(path: str | Path) -> VideoInfo:
    """Read stream information with PyAV. Raises :class:`InputError` naming the file and problem."""
    path = Path(path)
    if check_regular(path).st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path), options=INPUT_OPTIONS)
    except av.error.ArgumentError:
        raise _refused_container(path) from None
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: not a readable video ({_first_line(exc)})") from None
    with container:
        streams = container.streams
        if not streams.video:
            what = "audio-only file" if streams.audio else "no video stream"
            raise InputError(f"{path}: {what}, nothing to decode", "no_video")
        stream = streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        duration = None
        if container.duration is not None:
            duration = container.duration / 1_000_000
        elif stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        video_duration = duration
        if stream.duration is not None and stream.time_base is not None:
            video_duration = float(stream.duration * stream.time_base)
        tag = stream.metadata.get("rotate") if stream.metadata else None
        rotation = int(tag) % 360 if tag is not None else _display_rotation(container, stream)
        return VideoInfo(
            duration=float(duration) if duration is not None else float("nan"),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(Fraction(rate)) if rate else float("nan"),
            frames=stream.frames or None,
            rotation=rotation,
            has_audio=bool(streams.audio),
            codec=stream.codec_context.name,
            video_duration=float(video_duration) if video_duration is not None else float("nan"),
        )


def _display_rotation(container, stream) -> int:
    """Clockwise rotation from the stream's display matrix, read off its first frame (PyAV gives
    the matrix only on frames, counter-clockwise); 0 when no frame decodes."""
    try:
        frame = next(container.decode(stream))
    except (av.error.FFmpegError, StopIteration, OSError):
        return 0
    counter_clockwise = getattr(frame, "rotation", 0) or 0
    return int(round(-counter_clockwise)) % 360


def _first_line(exc: BaseException) -> str:
    # PyAV's str() repeats errno and path ("[Errno 1094995529] Invalid data …: '/x.mp4'"); the path is
    # in our message already.
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


Decoder = Literal["cpu", "cuda"]

# How the picture is turned upright after the crop, per clockwise display rotation (ffmpeg's own
# autorotation applies the same filters before any other).
_UPRIGHT = {90: ("transpose", {"dir": "clock"}), 180: ("hflip", {}), 270: ("transpose", {"dir": "cclock"})}


def clip_command(
    path: str | Path,
    fps: float,
    size: int,
    decoder: Decoder = "cpu",
    rotation: int | None = None,
    threads: int = 0,
    gpu: int = 0,
) -> list[str]:
    """The ffmpeg argument list that streams ``path`` as raw rgb24 frames, ``size``×``size``, at ``fps``.

    Frames are resampled to ``fps`` first (duplicating or dropping, by timestamp, so variable frame
    rates come out regular), then the short side is scaled to ``size`` — in display proportions, so
    non-square pixels are honoured — and the centre ``size``×``size`` square is cropped.

    ``rotation=None`` lets ffmpeg turn rotated videos upright itself; an angle (clockwise, from
    :func:`probe`) switches that off and rotates the cropped square instead, which is what the
    ``cuda`` decoder needs (ffmpeg's automatic rotation is a CPU filter that cannot take GPU frames).
    ``decoder="cuda"`` decodes with NVDEC on GPU ``gpu`` and scales there (``scale_cuda``), then
    downloads the frames for the crop and the RGB conversion. ``threads`` (0: ffmpeg's choice) bounds
    ffmpeg's decoding and filtering threads.
    """
    input_args: dict = {"threads": threads, **INPUT_OPTIONS}
    if decoder == "cuda":
        input_args.update(hwaccel="cuda", hwaccel_output_format="cuda", hwaccel_device=gpu)
    if rotation is not None or decoder == "cuda":
        input_args["noautorotate"] = None
    stream = ffmpeg.input(ffmpeg_url(path), **input_args).video.filter("fps", fps=fps)
    width = f"max({size},ceil({size}*dar))"
    height = f"max({size},ceil({size}/dar))"
    if decoder == "cuda":
        # even sizes: GPU frames in 4:2:0 are allocated in whole chroma samples
        stream = (
            stream.filter("scale_cuda", w=f"2*ceil({width}/2)", h=f"2*ceil({height}/2)", format="yuv420p",
                          interp_algo="bicubic")
            .filter("hwdownload")
            .filter("format", "yuv420p")
        )
    else:
        stream = stream.filter("scale", w=width, h=height, flags="bicubic")
    stream = stream.filter("setsar", 1).filter("crop", size, size, exact=1)  # exact: odd sizes of 4:2:0 frames too
    turn = (rotation or 0) % 360
    if turn in _UPRIGHT:
        name, options = _UPRIGHT[turn]
        stream = stream.filter(name, **options)
        if turn == 180:
            stream = stream.filter("vflip")
    output = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24")
    # Global options go first: ffmpeg ignores options after the last output.
    return [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-filter_complex_threads", str(threads),
            *output.get_args()]


def check_cuda_decoder(gpu: int = 0) -> None:
    """Raise :class:`ConfigError` unless this ffmpeg can run CUDA filters on GPU ``gpu``."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-init_hw_device", f"cuda=gpu:{gpu}",
         "-filter_hw_device", "gpu", "-f", "lavfi", "-i", "testsrc2=size=256x144:rate=20:duration=0.2",
         "-vf", "format=yuv420p,hwupload_cuda,scale_cuda=w=112:h=112,hwdownload,format=yuv420p",
         "-f", "null", "-"],
        capture_output=True,
    )
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(
            f"--decoder cuda: {ffmpeg_exe()} cannot decode on GPU {gpu} "
            f"({lines[-1] if lines else 'exit ' + str(proc.returncode)}); use --decoder cpu, or point "
            "VIDEOBERT_FFMPEG at an ffmpeg built with CUDA (NVDEC, scale_cuda)"
        )


_LOG_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")  # "[vist#0:0/h264 @ 0x55…] [dec:h264 @ 0x55…] "


def _enlarge_pipe(fd: int) -> None:
    # A clip is megabytes; the default 64 KiB pipe costs a context switch per 64 KiB.
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass


def check_decoded_length(path: Path, frames: int, fps: float, expected_seconds: float | None, detail: str = "") -> None:
    """Raise :class:`InputError` when ``frames`` at ``fps`` fall well short of ``expected_seconds``
    (what the container announces): a truncated or corrupt file. ``detail``: the decoder's last word."""
    seconds = frames / fps
    expected = expected_seconds
    if expected is not None and math.isfinite(expected) and expected - seconds > max(1.0, 0.05 * expected):
        raise InputError(
            f"{path}: truncated or corrupt (decoded {seconds:.1f} s of the {expected:.1f} s "
            f"the container announces{'; ' + detail if detail else ''})", "decode",
        )


def check_one_clip(path: Path, frames: int, fps: float, clip_frames: int) -> None:
    """Raise :class:`InputError` when ``frames`` do not make one clip."""
    if frames < clip_frames:
        raise InputError(
            f"{path}: shorter than one clip ({frames} frames = {frames / fps:.2f} s at {fps:g} fps; "
            f"a clip is {clip_frames} frames = {clip_frames / fps:.2f} s)", "too_short",
        )


class ClipReader:
    """The clips of one video, streamed from one ffmpeg process (see :func:`clip_command`).

    Iterating yields uint8 arrays ``[clip_frames, size, size, 3]`` (RGB), clip *i* holding frames
    ``[i·clip_frames, (i+1)·clip_frames)`` at ``fps``; :meth:`read_clip` fills a caller's buffer
    instead. When the stream ends, the trailing partial clip is dropped and the decode is checked:
    :class:`InputError` if ffmpeg failed, if the video is shorter than one clip, or if it decoded
    well short of ``expected_seconds`` (a truncated or corrupt file), or if ffmpeg reported decoding
    errors on the way (a file damaged in the middle). ``frames`` counts the frames
    read so far. Use it as a context manager: leaving early stops ffmpeg and reaps it.

    ffmpeg's stderr goes to a temporary file, so a chatty ffmpeg can never block on a full pipe.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float = 20,
        clip_frames: int = 30,
        size: int = 224,
        decoder: Decoder = "cpu",
        rotation: int | None = None,
        threads: int = 0,
        gpu: int = 0,
        expected_seconds: float | None = None,
    ):
        self.path = Path(path)
        self.fps = fps
        self.clip_frames = clip_frames
        self.size = size
        self.expected_seconds = expected_seconds
        self.frames = 0
        self.clip_shape = (clip_frames, size, size, 3)
        self._frame_bytes = size * size * 3
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            clip_command(path, fps, size, decoder, rotation, threads, gpu),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0,
        )
        _enlarge_pipe(self._proc.stdout.fileno())

    def read_clip(self, out: np.ndarray) -> bool:
        """Fill ``out`` (uint8, :attr:`clip_shape`) with the next clip; False at the end of the video,
        after the checks of :meth:`finish`."""
        view = memoryview(out.reshape(-1))
        filled = 0
        while filled < len(view):
            got = self._proc.stdout.readinto(view[filled:])
            if not got:
                break
            filled += got
        self.frames += filled // self._frame_bytes
        if filled == len(view):
            return True
        self.finish()
        return False

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            clip = np.empty(self.clip_shape, dtype=np.uint8)
            if not self.read_clip(clip):
                return
            yield clip

    def finish(self) -> None:
        """Wait for ffmpeg and check the whole video was decoded (raises :class:`InputError`)."""
        code = self._proc.wait()
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        last = _LOG_PREFIX.sub("", lines[-1]).strip() if lines else ""
        if code != 0:
            raise InputError(f"{self.path}: ffmpeg could not decode it ({last or 'exit ' + str(code)})", "decode")
        check_decoded_length(self.path, self.frames, self.fps, self.expected_seconds, f"ffmpeg: {last}" if last else "")
        if lines:  # decoded to the end, but through damaged data: its clips there would be concealment, not video
            first = _LOG_PREFIX.sub("", lines[0]).strip()
            raise InputError(f"{self.path}: damaged (ffmpeg reported {len(lines)} decoding error line(s), first: "
                             f"{first}); re-download or re-encode it", "decode")
        check_one_clip(self.path, self.frames, self.fps, self.clip_frames)

    def read_clips(self, out) -> int:
        """Fill ``out`` (a uint8 CPU tensor ``[k, *clip_shape]``) with up to k next clips; the number
        filled (fewer only at the end of the video, after the checks of :meth:`finish`)."""
        filled = 0
        while filled < len(out) and self.read_clip(out[filled].numpy()):
            filled += 1
        return filled

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> "ClipReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
        raise InputError(f"{what}: ffmpeg failed ({lines[-1] if lines else 'exit ' + str(proc.returncode)})", "decode")
    return proc


def _input_flags() -> list[str]:
    return [flag for key, value in INPUT_OPTIONS.items() for flag in (f"-{key}", value)]


def grab_frame(path: str | Path, seconds: float, size: int | None = None) -> np.ndarray:
    """One RGB frame (uint8 [H, W, 3]) at ``seconds``; with ``size``, the centred square crop
    scaled to ``size``×``size`` (what feature extraction sees). Raises :class:`InputError`."""
    check_regular(path)
    crop = "crop='min(iw,ih)':'min(iw,ih)'"
    vf = f"{crop},scale={size}:{size}" if size else "null"
    proc = run_ffmpeg(
        ["-ss", f"{max(0.0, seconds):.3f}", *_input_flags(), "-i", ffmpeg_url(path), "-frames:v", "1", "-vf", vf,
         "-f", "image2pipe", "-vcodec", "ppm", "pipe:"],
        what=str(path),
    )
    if not proc.stdout:
        raise InputError(f"{path}: no frame at {seconds:.2f} s", "decode")
    return np.asarray(Image.open(io.BytesIO(proc.stdout)).convert("RGB"))


# --------------------------------------------------------------------------- audio
SAMPLE_RATE = 16_000  # Hz of the PCM that speech recognition reads


def frames_across(path: str | Path, start: float, end: float, frames: int = 6, height: int | None = 96) -> np.ndarray:
    """``frames`` RGB frames (uint8 [frames, H, W, 3]) evenly spaced across ``[start, end)`` seconds
    of a video (the middles of ``frames`` equal parts), each scaled to ``height`` pixels (None: as
    decoded); one ffmpeg seek each, with the same input checks as every decode. Raises :class:`InputError`."""
    check_regular(path)
    times = start + (np.arange(frames) + 0.5) * max(end - start, 0.0) / max(frames, 1)
    out = []
    for seconds in times:
        proc = run_ffmpeg(["-ss", f"{max(0.0, float(seconds)):.3f}", *_input_flags(), "-i", ffmpeg_url(path),
                           "-frames:v", "1", "-vf", f"scale=-2:{int(height)}" if height else "null", "-f", "image2pipe",
                           "-vcodec", "ppm",
                           "pipe:"], what=str(path))
        if not proc.stdout:
            raise InputError(f"{path}: no frame at {seconds:.2f} s", "decode")
        out.append(np.asarray(Image.open(io.BytesIO(proc.stdout)).convert("RGB")))
    return np.stack(out)


def segment_mp4(path: str | Path, start: float, end: float, height: int = 180) -> bytes:
    """``[start, end)`` seconds of a video as a small H.264 MP4 (``height`` pixels, no audio),
    for a page or a notebook to play inline. Raises :class:`InputError`."""
    check_regular(path)
    proc = run_ffmpeg(["-ss", f"{max(0.0, start):.3f}", *_input_flags(), "-i", ffmpeg_url(path),
                       "-t", f"{max(end - start, 0.1):.3f}", "-vf", f"scale=-2:{int(height)}", "-an", "-c:v", "libx264",
                       "-preset", "veryfast", "-pix_fmt", "yuv420p", "-movflags", "frag_keyframe+empty_moov",
                       "-f", "mp4", "pipe:"], what=str(path))
    return proc.stdout


def has_audio_stream(path: str | Path) -> bool:
    """Whether the container at ``path`` has an audio stream; raises :class:`InputError` if unreadable."""
    path = Path(path)
    check_regular(path)
    try:
        with av.open(str(path), options=INPUT_OPTIONS) as container:
            return bool(container.streams.audio)
    except av.error.ArgumentError:
        raise _refused_container(path) from None
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: not a readable media file ({_first_line(exc)})") from None


def audio_pcm(path: str | Path, chunk_bytes: int = 1 << 16) -> Iterator[bytes]:
    """The first audio stream as 16 kHz mono signed 16-bit little-endian PCM, in chunks, decoded by
    ffmpeg through a pipe. Raises :class:`InputError` when ffmpeg fails."""
    command = [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *_input_flags(), "-i", ffmpeg_url(path),
        "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "pipe:1",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while True:
            chunk = proc.stdout.read(chunk_bytes)
            if not chunk:
                break
            yield chunk
        stderr = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            last = stderr.splitlines()[-1] if stderr else f"exit {proc.returncode}"
            raise InputError(f"{path}: ffmpeg could not decode the audio ({last})", "decode")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# --------------------------------------------------------------------------- pictures
def save_jpeg(image: Image.Image, path: str | Path, quality: int = 90) -> Path:
    """Write a PIL image as JPEG, atomically."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def contact_sheet(
    images: Sequence[np.ndarray | Image.Image | None], captions: Sequence[str], size: int, columns: int = 5,
    upscale: bool = False,
) -> Image.Image:
    """A grid of tiles ``size`` wide, each image scaled to fit ``size``×``size`` with its caption
    under it (a grey tile where the image is None); rows are as tall as their tallest image.
    ``upscale``: small images are scaled up too (to a pixel short of the tile), not only large ones down.
    Captions are drawn with their control characters written as escapes (:func:`videobert.logs.printable`)."""
    columns = max(1, min(columns, len(images)))
    captions = [printable(caption) for caption in captions]  # names and sentences from files: control characters shown
    tiles = []
    for image in images:
        if image is None:
            tiles.append(None)
            continue
        tile = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
        if upscale:
            scale = (size - 2) / max(tile.width, tile.height)
            tile = tile.resize((max(1, round(tile.width * scale)), max(1, round(tile.height * scale))))
        else:
            tile.thumbnail((size, size))
        tiles.append(tile)
    height = max([t.height for t in tiles if t is not None] or [size])
    rows = -(-len(images) // columns)
    caption_height = 14 * max(1, max(c.count("\n") + 1 for c in captions))
    sheet = Image.new("RGB", (columns * size, rows * (height + caption_height)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (tile, caption) in enumerate(zip(tiles, captions)):
        x, y = (i % columns) * size, (i // columns) * (height + caption_height)
        if tile is None:
            sheet.paste((200, 200, 200), (x + 1, y, x + size - 1, y + height))
        else:
            sheet.paste(tile, (x + (size - tile.width) // 2, y + (height - tile.height) // 2))
        left, _, right, _ = draw.multiline_textbbox((0, 0), caption, spacing=2, align="center")
        draw.multiline_text((x + max(2, (size - (right - left)) // 2), y + height + 1), caption, fill=(0, 0, 0),
                            spacing=2, align="center")
    return sheet
