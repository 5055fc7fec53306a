"""The INDEX folder: the visual words of a set of videos, searched with a sentence.

::

    INDEX/index.json          format, codebook (hash), visual_vocab_size, clip_seconds, window,
                              features (the settings the words were made with), manifest
    INDEX/words/<video_id>.npy int32 [n_clips]: each clip's visual word
    INDEX/segments.jsonl      optional: the segments to rank ({video_id, start, end, sentence});
                              without it each video is cut into runs of ``window`` clips
    INDEX/failures*.jsonl, INDEX/config.yaml

``videobert index`` writes one for any videos; a model folder carries one of its corpus's test
segments (``test_index``). The first-stage vectors of two-stage search are the words' histograms,
computed from the words when searching.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videobert.corpus.align import overlapping_clips, video_only_segments
from videobert.errors import InputError
from videobert.manifest import read_manifest
from videobert.store import atomic_save_npy, atomic_write_json, atomic_write_text, jsonl_text, load_npy, read_json, read_jsonl

FORMAT = 1
META_FILE = "index.json"
SEGMENTS_FILE = "segments.jsonl"
WORDS = "words"


def words_path(index_dir: str | Path, video_id: str) -> Path:
    return Path(index_dir) / WORDS / f"{video_id}.npy"


def write_words(index_dir: str | Path, video_id: str, words: np.ndarray) -> None:
    atomic_save_npy(words_path(index_dir, video_id), np.asarray(words, dtype=np.int32))


def write_segments(index_dir: str | Path, segments: list[dict[str, Any]]) -> None:
    atomic_write_text(Path(index_dir) / SEGMENTS_FILE, jsonl_text(segments))


def write_meta(index_dir: str | Path, meta: dict[str, Any]) -> None:
    atomic_write_json(Path(index_dir) / META_FILE, {"format": FORMAT, **meta})


@dataclass
class Index:
    """A read INDEX folder (module docstring)."""

    folder: Path
    meta: dict[str, Any]

    @property
    def codebook(self) -> str | None:
        return self.meta.get("codebook")

    def video_ids(self) -> list[str]:
        return sorted(p.stem for p in (self.folder / WORDS).glob("*.npy") if not p.name.startswith("."))

    def words(self, video_id: str) -> np.ndarray:
        path = words_path(self.folder, video_id)
        if not path.is_file():
            raise InputError(f"{path}: no visual words for video {video_id!r} in this index", "missing")
        words = load_npy(path, "visual words")
        if words.ndim != 1 or words.dtype.kind not in "iu":
            raise InputError(f"{path}: not a 1-d array of visual words")
        return words.astype(np.int64)

    def segments(self) -> list[dict[str, Any]]:
        """The segments searched: ``video_id``, ``start``, ``end``, ``text`` and their
        ``video_ids`` (visual words), each with at least one clip."""
        clip_seconds = float(self.meta["clip_seconds"])
        words = {video_id: self.words(video_id) for video_id in self.video_ids()}
        segments = []
        listed = self.folder / SEGMENTS_FILE
        if listed.is_file():
            for number, row in read_jsonl(listed, "index segments"):
                if not isinstance(row, dict) or not all(k in row for k in ("video_id", "start", "end")):
                    raise InputError(f"{listed}:{number}: a segment needs video_id, start and end")
                if row["video_id"] not in words:
                    continue
                clips = overlapping_clips(float(row["start"]), float(row["end"]), len(words[row["video_id"]]), clip_seconds)
                if clips:
                    segments.append({"video_id": row["video_id"], "start": float(row["start"]), "end": float(row["end"]),
                                     "text": str(row.get("sentence", "")),
                                     "video_ids": words[row["video_id"]][clips.start : clips.stop].tolist()})
            return segments
        window = int(self.meta.get("window") or 16)
        for video_id, video_words in words.items():
            for clips in video_only_segments(len(video_words), window):
                segments.append({"video_id": video_id, "start": clips.start * clip_seconds, "end": clips.stop * clip_seconds,
                                 "text": "", "video_ids": video_words[clips.start : clips.stop].tolist()})
        return segments

    def video_paths(self) -> dict[str, Path]:
        """``{video_id: video file}`` from the manifest the index was made from (empty without one)."""
        manifest = self.meta.get("manifest")
        if not manifest or not Path(manifest).exists():
            return {}
        return {entry.video_id: entry.video for entry in read_manifest(manifest)}


def load_index(index_dir: str | Path) -> Index:
    """An INDEX folder written by ``videobert index`` (or a model folder's ``test_index``)."""
    folder = Path(index_dir)
    path = folder / META_FILE
    if not path.is_file():
        raise InputError(f"{folder}: not an index folder (no {META_FILE}; make one with 'videobert index')", "missing")
    meta = read_json(path, "index settings")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "clip_seconds" not in meta:
        raise InputError(f"{path}: not an index of this version (format {meta.get('format') if isinstance(meta, dict) else '?'})")
    return Index(folder, meta)


def check_index_codebook(index: Index, codebook: str | None) -> Index:
    """``index``, refused when it was made with another codebook than ``codebook`` (a model's)."""
    if codebook is not None and index.codebook is not None and index.codebook != codebook:
        raise InputError(f"{index.folder}: made with codebook {index.codebook}, but the model's is {codebook}; "
                         "index the videos with this model")
    return index
