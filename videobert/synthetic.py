"""A synthetic narrated "how-to" corpus that a model can learn from, with no download.

Each video (20-60 s, 20 fps, H.264) shows a sequence of 3-8 segments of 3-6 s separated by short
pauses. In a segment one object — a colour (6), a shape (3) — performs an action (6: moves left,
right, up or down, grows, shrinks) over a textured background that differs from video to video;
the object always stays inside the centred square crop that feature extraction sees.

The narration reads like ASR output: lowercase, unpunctuated, several phrasings with fillers
("okay so the red circle moves left", "next we see a blue square growing bigger"), one WebVTT cue
per phrase, timed to its segment with up to ``jitter`` seconds of error; some segments are silent.
Every phrase names the action with one word from :data:`ACTION_WORDS`, which is what zero-shot
classification reads.

Everything is drawn from ``numpy.random.default_rng([seed, video_index])`` so the same seed gives
the same manifest, transcripts, labels and frames, whatever the number of workers.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import wave
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from videobert.config import field
from videobert.errors import ConfigError, StageError
from videobert.text import Cue

log = logging.getLogger(__name__)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 175, 60),
    "blue": (35, 75, 220),
    "yellow": (235, 215, 40),
    "purple": (135, 45, 175),
    "orange": (245, 135, 25),
}
SHAPES = ("circle", "square", "triangle")
ACTIONS = ("left", "right", "up", "down", "grow", "shrink")
# The word that names each action in every phrasing (the zero-shot label word).
ACTION_WORDS = {"left": "left", "right": "right", "up": "up", "down": "down", "grow": "bigger", "shrink": "smaller"}
ATTRIBUTES = {"colour": tuple(COLOURS), "shape": SHAPES, "action": ACTIONS}

_MOVE_VERBS = (("moves", "moving"), ("goes", "going"), ("slides", "sliding"))
_SIZE_VERBS = (("gets", "getting"), ("grows", "growing"))
_PHRASES = (
    "now the {colour} {shape} {verb} {word}",
    "now the {colour} {shape} {verb} {word}",
    "next we see a {colour} {shape} {verbing} {word}",
    "okay so the {colour} {shape} {verb} {word}",
    "um here the {colour} {shape} is {verbing} {word}",
    "and then the {colour} {shape} {verb} {word} okay",
    "so this {colour} {shape} {verb} {word} now",
    "uh the {colour} {shape} {verb} {word} you see",
)


@dataclass
class SynthConfig:
    """Configuration of ``videobert synth``."""

    videos: int = field(48, help="number of videos")
    seed: int = field(0, help="random seed: the same seed gives the same corpus")
    audio: bool = field(False, help="speak the narration with espeak-ng and mux it as the audio track")
    width: int = field(176, help="frame width in pixels")
    height: int = field(128, help="frame height in pixels (the short side; the object stays in the centred square)")
    fps: int = field(20, help="frame rate")
    min_duration: float = field(20.0, help="shortest video, seconds")
    max_duration: float = field(60.0, help="longest video, seconds")
    min_segments: int = field(3, help="fewest segments per video")
    max_segments: int = field(8, help="most segments per video")
    min_segment: float = field(3.0, help="shortest segment, seconds")
    max_segment: float = field(6.0, help="longest segment, seconds")
    min_pause: float = field(1.0, help="shortest pause between segments, seconds (>= 2 x jitter keeps cues apart)")
    max_pause: float = field(2.0, help="longest pause between segments, seconds")
    jitter: float = field(0.5, help="largest error of a cue's start or end against its segment, seconds")
    silent_fraction: float = field(0.15, help="fraction of segments without narration")
    val_fraction: float = field(0.15, help="fraction of videos in the val split")
    test_fraction: float = field(0.15, help="fraction of videos in the test split")
    workers: int = field(0, help="parallel encoders (0: one per CPU core)")

    def check(self) -> None:
        if self.videos < 1:
            raise ConfigError("videos: need at least 1")
        if self.height < 32 or self.width < self.height:
            raise ConfigError("width/height: need width >= height >= 32")
        if self.width % 2 or self.height % 2:
            raise ConfigError("width/height: H.264 (yuv420p) needs even frame sizes")
        if not 0 < self.min_segments <= self.max_segments:
            raise ConfigError("min_segments/max_segments: need 0 < min <= max")
        if not 0 < self.min_segment <= self.max_segment:
            raise ConfigError("min_segment/max_segment: need 0 < min <= max")
        if self.min_pause < 2 * self.jitter:
            raise ConfigError("min_pause: must be at least 2 x jitter so that cues of neighbouring segments never overlap")
        longest = self.max_segments * self.max_segment + (self.max_segments + 1) * self.max_pause
        shortest = self.min_segments * self.min_segment + (self.min_segments + 1) * self.min_pause
        if longest < self.min_duration or shortest > self.max_duration:
            raise ConfigError("segment and pause settings cannot give a video between min_duration and max_duration")
        if self.val_fraction < 0 or self.test_fraction < 0 or self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("val_fraction/test_fraction: need >= 0 and a sum below 1")


@dataclass(frozen=True)
class Segment:
    """One action; times in seconds, on frame boundaries. ``start_xy``/``end_xy`` are the object's
    centre as offsets from the frame centre in units of the square crop; ``radius`` likewise."""

    start: float
    end: float
    colour: str
    shape: str
    action: str
    rgb: tuple[int, int, int]
    start_xy: tuple[float, float]
    end_xy: tuple[float, float]
    start_radius: float
    end_radius: float
    narration: Cue | None


@dataclass(frozen=True)
class VideoPlan:
    video_id: str
    index: int
    duration: float
    frames: int
    split: str
    segments: tuple[Segment, ...]
    background_seed: int


def video_id(index: int) -> str:
    return f"synth_{index:04d}"


def _phrase(rng: np.random.Generator, colour: str, shape: str, action: str) -> str:
    verbs = _SIZE_VERBS if action in ("grow", "shrink") else _MOVE_VERBS
    verb, verbing = verbs[rng.integers(len(verbs))]
    template = _PHRASES[rng.integers(len(_PHRASES))]
    return template.format(colour=colour, shape=shape, verb=verb, verbing=verbing, word=ACTION_WORDS[action])


def _trajectory(rng: np.random.Generator, action: str):
    """Start/end centre and radius of the object, inside the centred square crop (units of the crop)."""
    margin = 0.03
    if action in ("grow", "shrink"):
        small, large = rng.uniform(0.07, 0.10), rng.uniform(0.19, 0.23)
        reach = 0.5 - large - margin
        centre = tuple(rng.uniform(-reach, reach, size=2))
        radii = (small, large) if action == "grow" else (large, small)
        return centre, centre, radii
    radius = rng.uniform(0.12, 0.17)
    travel = rng.uniform(0.22, 0.5 - radius - margin)
    across = rng.uniform(-(0.5 - radius - margin), 0.5 - radius - margin)
    sign = {"left": -1, "right": 1, "up": -1, "down": 1}[action]
    if action in ("left", "right"):
        start, end = (-sign * travel, across), (sign * travel, across)
    else:  # image rows grow downwards: "up" ends at a smaller y
        start, end = (across, -sign * travel), (across, sign * travel)
    return start, end, (radius, radius)


def plan_video(cfg: SynthConfig, index: int) -> VideoPlan:
    """Draw one video's segments, narration and background seed (split is set by :func:`plan_corpus`)."""
    rng = np.random.default_rng([cfg.seed, index])
    fps = cfg.fps
    for _ in range(10_000):
        count = int(rng.integers(cfg.min_segments, cfg.max_segments + 1))
        lengths = [int(round(rng.uniform(cfg.min_segment, cfg.max_segment) * fps)) for _ in range(count)]
        pauses = [int(round(rng.uniform(cfg.min_pause, cfg.max_pause) * fps)) for _ in range(count + 1)]
        total = sum(lengths) + sum(pauses)
        if cfg.min_duration * fps <= total <= cfg.max_duration * fps:
            break
    else:  # pragma: no cover - check() rules this out
        raise ConfigError("could not draw a video within min_duration..max_duration")
    duration = total / fps
    segments = []
    frame = pauses[0]
    for i, length in enumerate(lengths):
        start, end = frame / fps, (frame + length) / fps
        colour = str(rng.choice(list(COLOURS)))
        shape = str(rng.choice(SHAPES))
        action = str(rng.choice(ACTIONS))
        rgb = tuple(int(np.clip(c + rng.integers(-12, 13), 0, 255)) for c in COLOURS[colour])
        start_xy, end_xy, (r0, r1) = _trajectory(rng, action)
        narration = None
        if rng.random() >= cfg.silent_fraction:
            cue_start = max(0.0, start + rng.uniform(-cfg.jitter, cfg.jitter))
            cue_end = min(duration, end + rng.uniform(-cfg.jitter, cfg.jitter))
            narration = Cue(round(cue_start, 3), round(cue_end, 3), _phrase(rng, colour, shape, action))
        segments.append(Segment(start, end, colour, shape, action, rgb, start_xy, end_xy, r0, r1, narration))
        frame += length + pauses[i + 1]
    return VideoPlan(video_id(index), index, duration, total, "train", tuple(segments), int(rng.integers(2**31)))


def assign_splits(cfg: SynthConfig) -> list[str]:
    """Split of each video: shuffled by the seed, about val_fraction / test_fraction of the videos."""
    n = cfg.videos
    n_test = int(round(cfg.test_fraction * n)) if n >= 3 else 0
    n_val = int(round(cfg.val_fraction * n)) if n >= 3 else 0
    n_test = max(n_test, 1 if (n >= 3 and cfg.test_fraction > 0) else 0)
    n_val = max(n_val, 1 if (n >= 3 and cfg.val_fraction > 0) else 0)
    order = np.random.default_rng([cfg.seed, 2**32 - 1]).permutation(n)
    splits = ["train"] * n
    for rank, index in enumerate(order):
        if rank < n_test:
            splits[index] = "test"
        elif rank < n_test + n_val:
            splits[index] = "val"
    return splits


def plan_corpus(cfg: SynthConfig) -> list[VideoPlan]:
    plans = []
    for index, split in enumerate(assign_splits(cfg)):
        plan = plan_video(cfg, index)
        plans.append(VideoPlan(plan.video_id, index, plan.duration, plan.frames, split, plan.segments, plan.background_seed))
    return plans


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


def render_frames(plan: VideoPlan, cfg: SynthConfig) -> Iterator[np.ndarray]:
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


def write_video(plan: VideoPlan, cfg: SynthConfig, out_dir: Path) -> Path:
    """Render and encode one video (and its narration track with ``cfg.audio``)."""
    from videobert.video import VideoWriter

    path = out_dir / "videos" / f"{plan.video_id}.mp4"
    with tempfile.TemporaryDirectory(prefix="videobert-synth-") as tmp:
        audio = narration_track(plan, Path(tmp)) if cfg.audio else None
        with VideoWriter(path, cfg.width, cfg.height, cfg.fps, audio=audio) as writer:
            for frame in render_frames(plan, cfg):
                writer.write(frame)
    return path


def label_rows(plan: VideoPlan) -> list[dict]:
    return [
        {
            "video_id": plan.video_id,
            "segment": i,
            "start": round(s.start, 3),
            "end": round(s.end, 3),
            "colour": s.colour,
            "shape": s.shape,
            "action": s.action,
            "narration": s.narration.text if s.narration else None,
        }
        for i, s in enumerate(plan.segments)
    ]


def read_labels(path: str | Path) -> list[dict]:
    """The rows of a ``labels.jsonl`` (one per labelled segment)."""
    import json

    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def generate(cfg: SynthConfig, out_dir: str | Path, progress=None) -> list[VideoPlan]:
    """Write the corpus into ``out_dir``: videos/, transcripts/, manifest.jsonl, labels.jsonl.

    ``progress`` wraps the iterator of finished videos (e.g. a tqdm bar). Returns the plans.
    """
    import json

    from videobert.manifest import VideoEntry, write_manifest
    from videobert.store import atomic_write_text
    from videobert.text import write_webvtt

    if cfg.audio and espeak_exe() is None:
        raise StageError("--audio needs espeak-ng, which is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    (out_dir / "transcripts").mkdir(parents=True, exist_ok=True)
    plans = plan_corpus(cfg)
    for plan in plans:
        cues = [s.narration for s in plan.segments if s.narration is not None]
        write_webvtt(out_dir / "transcripts" / f"{plan.video_id}.vtt", cues)

    workers = cfg.workers or os.cpu_count() or 1
    finished: Iterator = (write_video(plan, cfg, out_dir) for plan in plans)
    pool = None
    if workers > 1 and len(plans) > 1:
        pool = ProcessPoolExecutor(max_workers=min(workers, len(plans)))
        finished = pool.map(write_video, plans, [cfg] * len(plans), [out_dir] * len(plans))
    try:
        for _ in progress(finished, total=len(plans)) if progress else finished:
            pass
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    entries = [
        VideoEntry(
            plan.video_id,
            out_dir / "videos" / f"{plan.video_id}.mp4",
            out_dir / "transcripts" / f"{plan.video_id}.vtt",
            plan.split,
        )
        for plan in plans
    ]
    write_manifest(out_dir / "manifest.jsonl", entries)
    rows = [row for plan in plans for row in label_rows(plan)]
    atomic_write_text(out_dir / "labels.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return plans
