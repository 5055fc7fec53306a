"""Reading the list of videos a stage works on.

A manifest is JSONL, one video per line::

    {"video_id": "cake_01", "video": "videos/cake 01.mp4", "transcript": "subs/cake_01.vtt", "split": "train"}

``transcript`` and ``split`` are optional; relative paths are relative to the manifest's folder.
A folder of videos is accepted too: every file with a video extension becomes one entry, its id
derived from the file stem, and a transcript with the same stem (``.vtt``, ``.srt``, ``.json``,
``.jsonl``, also ``<stem>.en.vtt``) is picked up.

Structural problems (bad JSON, missing keys, duplicate or unsafe ids, an unknown split) stop the
stage with an error naming the file and line. A video file that does not exist is *not* an error
here: stages record it in ``failures.jsonl`` and carry on with the others.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from videobert.errors import InputError
from videobert.store import atomic_write_text, read_jsonl

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts")
TRANSCRIPT_EXTENSIONS = (".vtt", ".srt", ".json", ".jsonl")
SPLITS = ("train", "val", "test")
# Beside a corpus's manifest (videobert synth) or its segments (videobert prepare): the zero-shot
# labels of its segments, and the spec that classifies them.
LABELS_FILE = "labels.jsonl"
ZERO_SHOT_FILE = "zeroshot.yaml"
MAX_ID_LENGTH = 200
_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # whole id: fullmatch (``$`` would let "id\n" through)


@dataclass(frozen=True)
class VideoEntry:
    """One video of a manifest. ``split`` is None when the manifest does not say."""

    video_id: str
    video: Path
    transcript: Path | None = None
    split: str | None = None

    def to_json(self, base: Path | None = None) -> dict:
        def rel(path: Path) -> str:
            if base is not None:
                try:
                    return str(path.relative_to(base))
                except ValueError:
                    pass
            return str(path)

        line = {"video_id": self.video_id, "video": rel(self.video)}
        if self.transcript is not None:
            line["transcript"] = rel(self.transcript)
        if self.split is not None:
            line["split"] = self.split
        return line


def id_problem(video_id: object) -> str | None:
    """Why ``video_id`` is not a safe file stem, or None if it is."""
    if not isinstance(video_id, str) or not video_id:
        return "video_id must be a non-empty string"
    if len(video_id) > MAX_ID_LENGTH:
        return f"video_id is longer than {MAX_ID_LENGTH} characters"
    if not _SAFE_ID.fullmatch(video_id):
        return (
            f"video_id {video_id!r} is not a safe file stem "
            "(letters, digits, '.', '_', '-'; not starting with '.' or '-')"
        )
    return None


def safe_id_from_stem(stem: str) -> str:
    """A safe id for a file stem: unsafe characters become '_', a leading '.' or '-' too."""
    video_id = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)
    video_id = re.sub(r"^[.-]", "_", video_id)[:MAX_ID_LENGTH]
    return video_id or "_"


def read_manifest(path: str | Path) -> list[VideoEntry]:
    """Entries of a JSONL manifest or of a folder of videos, in the order given (folders: by name)."""
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    base = path.parent
    entries: list[VideoEntry] = []
    seen: dict[str, int] = {}
    for number, data in read_jsonl(path, "manifest"):
        where = f"{path}:{number}"
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"video_id", "video", "transcript", "split"})
        if unknown:
            raise InputError(
                f"{where}: unknown key {unknown[0]!r} (valid: video_id, video, transcript, split)"
            )
        for key in ("video_id", "video"):
            if key not in data:
                raise InputError(f"{where}: missing key '{key}'")
        problem = id_problem(data["video_id"])
        if problem:
            raise InputError(f"{where}: {problem}")
        video_id = data["video_id"]
        if video_id in seen:
            raise InputError(f"{where}: duplicate video_id {video_id!r} (first on line {seen[video_id]})")
        seen[video_id] = number
        for key in ("video", "transcript"):
            optional = key == "transcript" and data.get(key) is None
            if key in data and not optional and (not isinstance(data[key], str) or not data[key]):
                raise InputError(f"{where}: '{key}' must be a non-empty path string, got {data[key]!r}")
        split = data.get("split")
        if split is not None and split not in SPLITS:
            raise InputError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
        transcript = data.get("transcript")
        entries.append(
            VideoEntry(
                video_id=video_id,
                video=_resolve(base, data["video"]),
                transcript=_resolve(base, transcript) if transcript else None,
                split=split,
            )
        )
    if not entries:
        raise InputError(f"{path}: manifest lists no videos")
    return entries


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _read_folder(folder: Path) -> list[VideoEntry]:
    videos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise InputError(
            f"{folder}: no video files in this folder (looked for {', '.join(VIDEO_EXTENSIONS)})"
        )
    entries = []
    owner: dict[str, Path] = {}
    for video in videos:
        video_id = safe_id_from_stem(video.stem)
        if video_id in owner:
            raise InputError(
                f"{folder}: '{owner[video_id].name}' and '{video.name}' map to the same video_id "
                f"{video_id!r}; rename one or use a manifest"
            )
        owner[video_id] = video
        entries.append(VideoEntry(video_id=video_id, video=video, transcript=_find_transcript(video)))
    return entries


def _find_transcript(video: Path) -> Path | None:
    for ext in TRANSCRIPT_EXTENSIONS:
        for candidate in (video.with_suffix(ext), video.with_name(f"{video.stem}.en{ext}")):
            if candidate.is_file():
                return candidate
    return None


def write_manifest(path: str | Path, entries: Iterable[VideoEntry]) -> None:
    """Write entries as JSONL with paths relative to the manifest's folder where possible."""
    path = Path(path)
    base = path.parent.resolve()
    lines = []
    for entry in entries:
        absolute = VideoEntry(
            entry.video_id,
            entry.video.resolve(),
            entry.transcript.resolve() if entry.transcript else None,
            entry.split,
        )
        lines.append(json.dumps(absolute.to_json(base), ensure_ascii=False))
    atomic_write_text(path, "\n".join(lines) + "\n")


def spec_beside(labels: str | Path) -> Path | None:
    """The zero-shot spec that classifies a labels file: ``zeroshot.yaml`` beside it, if any."""
    candidate = Path(labels).parent / ZERO_SHOT_FILE
    return candidate if candidate.is_file() else None
