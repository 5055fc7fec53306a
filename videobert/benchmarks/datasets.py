"""Readers of the benchmarks' distributed annotation files: YouCook II and MSR-VTT (JSFusion 1k-A).

Each reader returns :class:`Annotated` videos — id, split, where its file should be, and its
segments (start, end, sentence) — and refuses a malformed file with one line naming the file and
the entry. Where the files come from and how they are laid out:

* **YouCook II** (Zhou et al., AAAI 2018): ``youcookii_annotations_trainval.json`` =
  ``{"database": {video_id: {"subset": "training" | "validation", "recipe_type", "duration",
  "annotations": [{"id", "segment": [start, end], "sentence"}]}}}``; its download script lays the
  videos out as ``raw_videos/<subset>/<recipe_type>/<video_id>.{mp4,mkv,webm}``. Training videos
  are our train split, validation ones our test split (the test split's sentences are not public;
  papers report on validation).
* **MSR-VTT** (Xu et al., CVPR 2016) for the JSFusion 1k-A protocol (Yu et al., ECCV 2018):
  ``MSRVTT_data.json`` (``videos``: ``video_id``, ``split``, ``"start time"``, ``"end time"`` …;
  ``sentences``: ``video_id``, ``caption``), ``MSRVTT_JSFUSION_test.csv`` (``key,vid_key,video_id,
  sentence``: the 1 000 test pairs) and the videos as ``videos/all/<video_id>.mp4``. The test split
  is the 1 000 pairs, each the whole clip; every other video of the JSON is a train video with its
  20 captions (the "9k" training set of CLIP4Clip and UniVL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from videobert.errors import InputError
from videobert.manifest import id_problem
from videobert.readers import read_csv, read_json

YOUCOOK2_SUBSETS = {"training": "train", "validation": "test"}
YOUCOOK2_EXTENSIONS = (".mp4", ".mkv", ".webm")


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    sentence: str
    id: str = ""


@dataclass
class Annotated:
    """A video of a benchmark: its id, our split, the files where it may be (the first that exists
    is it), its duration if the annotations give one, and its annotated segments."""

    video_id: str
    split: str
    candidates: list[Path]
    duration: float | None = None
    segments: list[Segment] = field(default_factory=list)


def _number(value, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}: {what} must be a finite number, got {value!r}")
    return float(value)


def read_youcook2(root: str | Path, annotations: str | Path | None = None) -> list[Annotated]:
    """The videos of YouCook II's train/val annotation file under ``root`` (module docstring)."""
    root = Path(root)
    path = Path(annotations) if annotations is not None else root / "youcookii_annotations_trainval.json"
    data = read_json(path, "YouCook II annotations", unique_keys=True)
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise InputError(f"{path}: not YouCook II annotations (no 'database' mapping of videos)")
    videos = []
    for video_id, entry in data["database"].items():
        where = f"{path}: database.{video_id}"
        problem = id_problem(video_id)
        if problem:
            raise InputError(f"{where}: {problem}")
        if not isinstance(entry, dict):
            raise InputError(f"{where}: expected a mapping with subset, recipe_type and annotations")
        subset = entry.get("subset")
        if subset not in YOUCOOK2_SUBSETS:
            raise InputError(f"{where}: unknown subset {subset!r} (expected training or validation)")
        recipe = entry.get("recipe_type", "")
        if not isinstance(recipe, (str, int)) or isinstance(recipe, bool) or (recipe != "" and id_problem(str(recipe))):
            raise InputError(f"{where}: recipe_type must be a plain folder name (YouCook II's are numbers), got "
                             f"{str(recipe)[:80]!r}")
        recipe = str(recipe)
        duration = _number(entry["duration"], where, "duration") if "duration" in entry else None
        segments = []
        annotations_list = entry.get("annotations")
        if not isinstance(annotations_list, list):
            raise InputError(f"{where}: annotations must be a list")
        for number, item in enumerate(annotations_list):
            here = f"{where}.annotations[{number}]"
            if not isinstance(item, dict) or "segment" not in item or "sentence" not in item:
                raise InputError(f"{here}: a segment needs 'segment' and 'sentence'")
            span = item["segment"]
            if not isinstance(span, (list, tuple)) or len(span) != 2:
                raise InputError(f"{here}: segment must be [start, end]")
            start, end = _number(span[0], here, "segment start"), _number(span[1], here, "segment end")
            if start < 0 or end <= start:
                raise InputError(f"{here}: segment [{span[0]}, {span[1]}] does not end after it starts")
            if not isinstance(item["sentence"], str) or not item["sentence"].strip():
                raise InputError(f"{here}: sentence must be a non-empty string")
            segments.append(Segment(start, end, item["sentence"].strip(), str(item.get("id", number))))
        folder = root / "raw_videos" / subset / recipe
        videos.append(Annotated(video_id, YOUCOOK2_SUBSETS[subset], [folder / f"{video_id}{ext}" for ext in YOUCOOK2_EXTENSIONS],
                                duration, segments))
    return videos


def read_msrvtt(root: str | Path, videos_dir: str | Path | None = None, data: str | Path | None = None,
                test_csv: str | Path | None = None) -> list[Annotated]:
    """The videos of MSR-VTT under ``root`` for the 1k-A protocol (module docstring)."""
    root = Path(root)
    data_path = Path(data) if data is not None else root / "MSRVTT_data.json"
    csv_path = Path(test_csv) if test_csv is not None else root / "MSRVTT_JSFUSION_test.csv"
    folder = Path(videos_dir) if videos_dir is not None else root / "videos" / "all"
    content = read_json(data_path, "MSR-VTT annotations", unique_keys=True)
    if not isinstance(content, dict) or not isinstance(content.get("videos"), list) or not isinstance(content.get("sentences"), list):
        raise InputError(f"{data_path}: not MSR-VTT annotations (needs 'videos' and 'sentences' lists)")
    durations: dict[str, float | None] = {}
    for number, video in enumerate(content["videos"]):
        where = f"{data_path}: videos[{number}]"
        if not isinstance(video, dict) or not isinstance(video.get("video_id"), str):
            raise InputError(f"{where}: a video needs a video_id")
        problem = id_problem(video["video_id"])
        if problem:
            raise InputError(f"{where}: {problem}")
        if video["video_id"] in durations:
            raise InputError(f"{where}: video {video['video_id']!r} is listed twice")
        start, end = video.get("start time"), video.get("end time")
        duration = None
        if start is not None and end is not None:
            first, last = _number(start, where, "start time"), _number(end, where, "end time")
            if first < 0 or last <= first:
                raise InputError(f"{where}: start time {start} and end time {end}: the clip must end after it starts, "
                                 "at a time >= 0")
            duration = last - first
        durations[video["video_id"]] = duration
    captions: dict[str, list[str]] = {}
    for number, sentence in enumerate(content["sentences"]):
        where = f"{data_path}: sentences[{number}]"
        if not isinstance(sentence, dict) or not isinstance(sentence.get("caption"), str) or "video_id" not in sentence:
            raise InputError(f"{where}: a sentence needs video_id and caption")
        if sentence["video_id"] not in durations:
            raise InputError(f"{where}: video {sentence['video_id']!r} is not among the videos")
        captions.setdefault(sentence["video_id"], []).append(sentence["caption"].strip())
    test = _read_test_csv(csv_path, durations)
    videos = []
    for video_id, duration in durations.items():
        end = duration if duration is not None else float("inf")
        if video_id in test:
            segments = [Segment(0.0, end, test[video_id], "1k-A")]
            split = "test"
        else:
            segments = [Segment(0.0, end, caption, str(i)) for i, caption in enumerate(captions.get(video_id, [])) if caption]
            split = "train"
        videos.append(Annotated(video_id, split, [folder / f"{video_id}.mp4", folder / f"{video_id}.webm"], duration, segments))
    return videos


def _read_test_csv(path: Path, known: dict[str, float | None]) -> dict[str, str]:
    rows = read_csv(path, "JSFusion test list", columns=("video_id", "sentence"))
    test: dict[str, str] = {}
    for number, row in enumerate(rows, start=2):
        video_id, sentence = row.get("video_id") or "", (row.get("sentence") or "").strip()
        if video_id not in known:
            raise InputError(f"{path}:{number}: video {video_id!r} is not in MSRVTT_data.json")
        if not sentence:
            raise InputError(f"{path}:{number}: empty sentence")
        if video_id in test:
            raise InputError(f"{path}:{number}: video {video_id!r} listed twice")
        test[video_id] = sentence
    return test
