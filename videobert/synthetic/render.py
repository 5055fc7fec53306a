"""Rendering the synthetic corpus: frames of each planned video, its spoken narration
(espeak-ng), and the H.264 file."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Iterator

import numpy as np

from videobert.errors import StageError
from videobert.media import VideoWriter
from videobert.synthetic.scenes import SceneConfig, VideoPlan


def background(seed: int, height: int, width: int) -> np.ndarray:
    """A low-saturation texture (gratings plus smooth noise) that differs with ``seed``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = np.zeros((height, width), np.float32)
    for _ in range(3):
        angle = rng.uniform(0, np.pi)
        cycles = rng.uniform(2, 12) / height
        phase = rng.uniform(0, 2 * np.pi)
        texture += rng.uniform(8, 22) * np.sin(2 * np.pi * cycles * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    coarse = rng.normal(0, 14, size=(height // 8 + 2, width // 8 + 2)).astype(np.float32)
    texture += np.kron(coarse, np.ones((8, 8), np.float32))[:height, :width]
    base = rng.uniform(70, 170) + rng.normal(0, 10, size=3)
    image = base[None, None, :] + texture[..., None] * rng.uniform(0.8, 1.2, size=3)[None, None, :]
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_mask(shape: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        half = 0.886 * r  # same area as the circle of radius r
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    # equilateral triangle pointing up, inscribed in a circle of radius 1.2 r (about the circle's area)
    R = 1.2 * r
    lower = dy <= R / 2
    left_edge = np.sqrt(3) * dx - dy <= R
    right_edge = -np.sqrt(3) * dx - dy <= R
    return lower & left_edge & right_edge


def render_frames(plan: VideoPlan, cfg: SceneConfig) -> Iterator[np.ndarray]:
    """The video's frames, uint8 [height, width, 3], in order."""
    height, width, fps = cfg.height, cfg.width, cfg.fps
    bg = background(plan.background_seed, height, width)
    crop = float(height)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bounds = [(int(round(s.start * fps)), int(round(s.end * fps)), s) for s in plan.segments]
    current = 0
    for frame_index in range(plan.frames):
        frame = bg.copy()
        while current < len(bounds) and frame_index >= bounds[current][1]:
            current += 1
        if current < len(bounds) and bounds[current][0] <= frame_index:
            first, last, seg = bounds[current]
            t = (frame_index - first) / max(1, last - first - 1)
            x = seg.start_xy[0] + t * (seg.end_xy[0] - seg.start_xy[0])
            y = seg.start_xy[1] + t * (seg.end_xy[1] - seg.start_xy[1])
            r = (seg.start_radius + t * (seg.end_radius - seg.start_radius)) * crop
            cx, cy = width / 2 + x * crop, height / 2 + y * crop
            y0, y1 = max(0, int(cy - 1.3 * r) - 1), min(height, int(cy + 1.3 * r) + 2)
            x0, x1 = max(0, int(cx - 1.3 * r) - 1), min(width, int(cx + 1.3 * r) + 2)
            mask = _shape_mask(seg.shape, xx[y0:y1, x0:x1], yy[y0:y1, x0:x1], cx, cy, r)
            frame[y0:y1, x0:x1][mask] = seg.rgb
        yield frame


def espeak_exe() -> str | None:
    return shutil.which("espeak-ng")


def speak(text: str, path: Path) -> None:
    """Synthesize ``text`` to a WAV file with espeak-ng (US English, Klatt voice, 160 words per minute:
    the variant that offline recognisers understand best)."""
    exe = espeak_exe()
    if exe is None:
        raise StageError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    subprocess.run([exe, "-v", "en-us+klatt4", "-s", "160", "-w", str(path), "--", text], check=True, capture_output=True)


def narration_track(plan: VideoPlan, workdir: Path) -> Path:
    """One WAV covering the whole video: each cue's speech starts at its cue's start time."""
    track: np.ndarray | None = None
    rate = 22050
    for index, seg in enumerate(plan.segments):
        if seg.narration is None:
            continue
        piece = workdir / f"{plan.video_id}_{index}.wav"
        speak(seg.narration.text, piece)
        with wave.open(str(piece)) as wav:
            rate = wav.getframerate()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        if track is None:
            track = np.zeros(int(np.ceil(plan.duration * rate)), np.int16)
        begin = int(seg.narration.start * rate)
        samples = samples[: max(0, len(track) - begin)]
        track[begin : begin + len(samples)] = samples
    if track is None:
        track = np.zeros(int(np.ceil(plan.duration * rate)), np.int16)
    out = workdir / f"{plan.video_id}.wav"
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(track.tobytes())
    return out


def write_video(plan: VideoPlan, cfg: SceneConfig, path: Path, audio: bool = False) -> Path:
    """Render and encode one video at ``path`` (with its spoken narration as the audio track with
    ``audio``)."""
    with tempfile.TemporaryDirectory(prefix="videobert-synth-") as tmp:
        narration = narration_track(plan, Path(tmp)) if audio else None
        with VideoWriter(path, cfg.width, cfg.height, cfg.fps, audio=narration) as writer:
            for frame in render_frames(plan, cfg):
                writer.write(frame)
    return path
