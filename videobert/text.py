"""Transcripts: timed cues, and WebVTT as the one format every stage writes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


@dataclass(frozen=True)
class Cue:
    """A piece of speech: ``text`` spoken from ``start`` to ``end`` (seconds)."""

    start: float
    end: float
    text: str


def format_timestamp(seconds: float) -> str:
    """WebVTT timestamp ``HH:MM:SS.mmm``."""
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def webvtt_text(cues: Iterable[Cue]) -> str:
    blocks = ["WEBVTT", ""]
    for cue in cues:
        blocks.append(f"{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}")
        blocks.append(cue.text)
        blocks.append("")
    return "\n".join(blocks)


def write_webvtt(path: str | Path, cues: Iterable[Cue]) -> None:
    """Write cues as a WebVTT file, atomically."""
    from videobert.store import atomic_write_text

    atomic_write_text(path, webvtt_text(cues))
