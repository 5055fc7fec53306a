"""The scenes of the synthetic corpus: what each video shows and says, drawn from a seed.

Each video (20-60 s, 20 fps) shows a sequence of 3-8 segments of 3-6 s separated by short
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

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videobert.config import field
from videobert.errors import ConfigError
from videobert.store import read_jsonl
from videobert.text.transcripts import Cue

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
class SceneConfig:
    """What the synthetic videos show: how many, their frames, their segments and pauses, how far
    the narration strays from them, and the splits (a section of the synth config)."""

    videos: int = field(48, help="number of videos")
    seed: int = field(0, help="random seed: the same seed gives the same corpus")
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


def plan_video(cfg: SceneConfig, index: int) -> VideoPlan:
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


def assign_splits(cfg: SceneConfig) -> list[str]:
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


def plan_corpus(cfg: SceneConfig) -> list[VideoPlan]:
    plans = []
    for index, split in enumerate(assign_splits(cfg)):
        plan = plan_video(cfg, index)
        plans.append(VideoPlan(plan.video_id, index, plan.duration, plan.frames, split, plan.segments, plan.background_seed))
    return plans


def zero_shot_spec() -> dict:
    """The corpus's zero-shot spec (:mod:`videobert.retrieval.zeroshot`): the narrations read "now
    the red circle moves left", "okay so the blue square gets bigger", so the template's first
    [MASK] is the colour, the second the shape, the fourth the action word."""
    return {
        "note": "the template is one of the narrations' own phrasings (\"now the red circle moves left\", a quarter "
                "of them), so the model has read it in training with these words in its slots: easier than the "
                "paper's zero-shot, whose template the speech never uses",
        "template": "now the [MASK] [MASK] [MASK] [MASK]",
        "attributes": {
            "colour": {"slot": 1, "classes": {colour: [colour] for colour in COLOURS}},
            "shape": {"slot": 2, "classes": {shape: [shape] for shape in SHAPES}},
            "action": {"slot": 4, "classes": {action: [ACTION_WORDS[action]] for action in ACTIONS}},
        },
    }


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
    return [row for _, row in read_jsonl(path, "labels file")]
