"""The prepare stage: a benchmark as distributed (ROOT) -> DATA, the inputs of the pipeline and of
``videobert evaluate --segments`` (docs/formats.md).

``run`` reads the annotation files first (a malformed one stops it with one line naming the file
and the entry, before anything is written), looks for every video (:mod:`videobert.benchmarks.datasets`),
opens it to check it is readable and long enough, and writes, each file atomically:

* ``manifest.jsonl`` — the videos found (train and test splits; transcripts left to ASR or to you);
* ``segments.jsonl`` — one annotated segment a line: ``video_id``, ``start``, ``end``,
  ``sentence``, ``split`` (a segment past its video's end is left out);
* ``missing.jsonl`` — every video missing, unreadable or shorter than its segments, with the
  reason and its ``kind`` (``missing``, ``unreadable``, ``too_short``);
* for YouCook II, the zero-shot inputs of the paper's protocol: ``labels.jsonl`` (the verb and the
  object of each test segment's sentence, :mod:`videobert.benchmarks.pos`) and ``zeroshot.yaml``
  (the template "now let me show you how to [MASK] the [MASK]" and the verb and object
  vocabularies);
* ``benchmark.json`` — what was prepared (written last), which ``evaluate`` reads to print the
  published figures beside its own.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from videobert import config as cfgmod
from videobert.benchmarks.datasets import Annotated, read_msrvtt, read_youcook2
from videobert.benchmarks.pos import labeller, read_word_list
from videobert.config import field
from videobert.errors import ConfigError, InputError
from videobert.logs import progress
from videobert.manifest import LABELS_FILE, ZERO_SHOT_FILE, VideoEntry, write_manifest
from videobert.media import probe
from videobert.store import StageSummary, atomic_write_json, atomic_write_text, jsonl_text, prepare_output_dir

log = logging.getLogger(__name__)

Benchmark = Literal["youcook2", "msrvtt"]
TEMPLATE = "now let me show you how to [MASK] the [MASK]"
TITLES = {"youcook2": "YouCook II (validation segments as the test split)", "msrvtt": "MSR-VTT, JSFusion 1k-A test"}
KEYS = {"youcook2": "youcook2", "msrvtt": "msrvtt-1k-a"}  # the keys of published.yaml
PUBLISHED_GALLERY = {"youcook2": 3350, "msrvtt": 1000}  # YouCook II: MIL-NCE's and VideoCLIP's validation clips


@dataclass
class PrepareConfig:
    """Configuration of ``videobert prepare``."""

    check_videos: bool = field(True, help="open every video found to check it is readable and covers its segments")
    min_count: int = field(1, help="zero-shot vocabularies: verbs and objects labelled fewer times are left out")
    max_classes: int = field(0, help="zero-shot vocabularies: keep this many most frequent verbs and objects (0: all)")

    def check(self) -> None:
        if self.min_count < 1 or self.max_classes < 0:
            raise ConfigError("min_count: need >= 1; max_classes: need >= 0")


def run(benchmark: Benchmark, root: str | Path, out_dir: str | Path, cfg: PrepareConfig, verbs: str | Path | None = None,
        objects: str | Path | None = None, videos_dir: str | Path | None = None) -> StageSummary:
    """Prepare ``benchmark`` from ``root`` into ``out_dir`` (module docstring). ``verbs``/``objects``:
    word lists replacing the tagger; ``videos_dir``: MSR-VTT's video folder if not ``ROOT/videos/all``."""
    began = time.perf_counter()
    root = Path(root)
    if (verbs is None) != (objects is None):
        raise ConfigError("--verbs and --objects go together (one word list each)")
    if benchmark == "youcook2":
        if videos_dir is not None:
            raise ConfigError("--videos is MSR-VTT's; YouCook II's videos are under ROOT/raw_videos")
        annotated = read_youcook2(root)
    elif benchmark == "msrvtt":
        annotated = read_msrvtt(root, videos_dir)
    else:
        raise ConfigError(f"unknown benchmark {benchmark!r} (youcook2 or msrvtt)")
    label = labeller(read_word_list(verbs), read_word_list(objects)) if verbs is not None else None
    if benchmark == "youcook2" and label is None:
        label = labeller()

    entries, segments, missing = [], [], []
    for video in progress(annotated, desc="prepare", unit="video"):
        kept = _check_video(video, cfg.check_videos, missing)
        if kept is None:
            continue
        path, duration = kept
        entries.append(VideoEntry(video.video_id, path, None, video.split))
        beyond = [s for s in video.segments if duration is not None and s.start >= duration]
        if beyond:
            missing.append({"video_id": video.video_id, "video": str(path), "kind": "too_short",
                            "reason": f"{duration:.1f} s long, shorter than {len(beyond)} of its segments "
                                      f"(the first starts at {beyond[0].start:g} s); those segments are left out"})
        for segment in video.segments:
            if segment in beyond:
                continue
            end = segment.end if math.isfinite(segment.end) else duration
            segments.append({"video_id": video.video_id, "start": segment.start, "end": end,
                             "sentence": segment.sentence, "split": video.split})
    if not entries:
        log.warning("%s: none of the %d annotated videos was found (see missing.jsonl)", root, len(annotated))

    out = prepare_output_dir(out_dir)
    write_manifest(out / "manifest.jsonl", entries)
    _write_jsonl(out / "segments.jsonl", segments)
    _write_jsonl(out / "missing.jsonl", missing)
    labelled = {}
    if label is not None:
        labelled = _write_zero_shot(out, segments, label, cfg)
    kinds = Counter(record["kind"] for record in missing)
    summary = {
        "benchmark": KEYS[benchmark],
        "title": TITLES[benchmark],
        "root": str(root.absolute()),
        "videos": {"annotated": len(annotated), "found": len(entries),
                   "by_split": dict(Counter(e.split for e in entries)),
                   "missing": kinds.get("missing", 0), "unreadable": kinds.get("unreadable", 0),
                   "too_short": kinds.get("too_short", 0)},
        "segments": {"total": len(segments), "by_split": dict(Counter(s["split"] for s in segments))},
        "missing_videos": kinds.get("missing", 0) + kinds.get("unreadable", 0),
        "published_gallery": PUBLISHED_GALLERY[benchmark],
        "zero_shot": labelled,
    }
    cfgmod.save(cfg, out / "config.yaml")
    atomic_write_json(out / "benchmark.json", summary)
    seconds = time.perf_counter() - began
    message = (f"prepare {benchmark}: {len(entries)} of {len(annotated)} videos found ({summary['missing_videos']} missing or "
               f"unreadable, {kinds.get('too_short', 0)} shorter than their segments: see missing.jsonl), "
               f"{len(segments)} segments ({', '.join(f'{k} {v}' for k, v in summary['segments']['by_split'].items())})"
               + (f"; zero-shot labels for {labelled['segments']} test segments, {labelled['verbs']} verbs and "
                  f"{labelled['objects']} objects" if labelled else "") + f"; in {seconds:.1f} s")
    return StageSummary("prepare", out, len(entries), 0, len(missing), seconds, message, summary)


def _check_video(video: Annotated, open_it: bool, missing: list[dict]) -> tuple[Path, float | None] | None:
    """The video's file and duration, or None (recorded in ``missing``) when it is not usable."""
    path = next((p for p in video.candidates if p.is_file()), None)
    if path is None:
        missing.append({"video_id": video.video_id, "video": str(video.candidates[0]), "kind": "missing",
                        "reason": "no video file (" + ", ".join(p.name for p in video.candidates) + f" in {video.candidates[0].parent})"})
        return None
    duration = video.duration
    if open_it:
        try:
            info = probe(path)
        except InputError as exc:
            missing.append({"video_id": video.video_id, "video": str(path), "kind": "unreadable", "reason": str(exc)})
            return None
        if math.isfinite(info.duration):
            duration = info.duration
    return path, duration


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, jsonl_text(rows))


def _write_zero_shot(out: Path, segments: list[dict], label, cfg: PrepareConfig) -> dict:
    """``labels.jsonl`` and ``zeroshot.yaml`` from the test segments' sentences; what they hold."""
    rows, verbs, objects = [], Counter(), Counter()
    for segment in segments:
        if segment["split"] != "test":
            continue
        verb, obj = label(segment["sentence"])
        row = {"video_id": segment["video_id"], "start": segment["start"], "end": segment["end"],
               "sentence": segment["sentence"]}
        if verb:
            row["verb"] = verb
            verbs[verb] += 1
        if obj:
            row["object"] = obj
            objects[obj] += 1
        rows.append(row)

    def vocabulary(counts: Counter) -> list[str]:
        common = [word for word, count in counts.most_common() if count >= cfg.min_count]
        return common[: cfg.max_classes] if cfg.max_classes else common

    verb_classes, object_classes = vocabulary(verbs), vocabulary(objects)
    _write_jsonl(out / LABELS_FILE, rows)
    attributes = {}
    if len(verb_classes) >= 2:
        attributes["verb"] = {"slot": 1, "classes": {v: [v] for v in verb_classes}}
    if len(object_classes) >= 2:
        attributes["object"] = {"slot": 2, "classes": {o: [o] for o in object_classes}}
    if attributes:
        spec = {"template": TEMPLATE, "attributes": attributes}
        atomic_write_text(out / ZERO_SHOT_FILE, "# the paper's zero-shot protocol (Table 1); classes from labels.jsonl\n"
                          + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    else:
        log.warning("%s: fewer than two verbs or objects were labelled; no zeroshot.yaml", out)
    return {"segments": len(rows), "with_verb": sum(1 for r in rows if "verb" in r),
            "with_object": sum(1 for r in rows if "object" in r), "verbs": len(verb_classes), "objects": len(object_classes)}
