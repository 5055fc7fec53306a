"""The synth stage: a deterministic synthetic narrated "how-to" corpus in OUT — ``videos/``,
``transcripts/``, ``manifest.jsonl`` (with train/val/test splits), ``labels.jsonl`` with the
zero-shot spec that classifies them (``zeroshot.yaml``), and ``segments.jsonl`` (the narrated
segments as annotations, the benchmarks' format).

``run`` creates the folder, writes ``config.yaml``, the transcripts, the videos (in worker
processes), the segments, labels and spec, and last the manifest, so a folder with a manifest is
complete.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import yaml

from videobert import config as cfgmod
from videobert.config import field
from videobert.errors import ConfigError, StageError
from videobert.logs import progress
from videobert.manifest import LABELS_FILE, ZERO_SHOT_FILE, VideoEntry, write_manifest
from videobert.runtime import cpu_cores
from videobert.store import StageSummary, atomic_write_text, jsonl_text, prepare_output_dir
from videobert.synthetic.render import espeak_exe, write_video
from videobert.synthetic.scenes import SceneConfig, label_rows, plan_corpus, zero_shot_spec
from videobert.text.transcripts import write_webvtt

log = logging.getLogger(__name__)


@dataclass
class SynthConfig(SceneConfig):
    """Configuration of ``videobert synth``: what the videos show, then how they are written."""

    audio: bool = field(False, help="speak the narration with espeak-ng and mux it as the audio track")
    workers: int = field(0, speed_only=True, help="parallel encoders (0: one per CPU core)")

    def check(self) -> None:
        SceneConfig.check(self)
        if self.workers < 0:
            raise ConfigError("workers: need 0 or more")


def run(out_dir: str | Path, cfg: SynthConfig) -> StageSummary:
    """Write the corpus into ``out_dir``; ``details``: ``manifest``, ``videos``, ``seconds_of_video``,
    ``segments``."""
    began = time.perf_counter()
    if cfg.audio and espeak_exe() is None:
        raise StageError("--audio needs espeak-ng, which is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    out = prepare_output_dir(out_dir)
    cfgmod.save(cfg, out / "config.yaml")
    plans = plan_corpus(cfg)
    for plan in plans:
        cues = [s.narration for s in plan.segments if s.narration is not None]
        write_webvtt(transcript_path(out, plan.video_id), cues)

    paths = [video_path(out, plan.video_id) for plan in plans]
    workers = cfg.workers or cpu_cores()
    finished: Iterator = (write_video(plan, cfg, path, cfg.audio) for plan, path in zip(plans, paths))
    pool = None
    if workers > 1 and len(plans) > 1:
        pool = ProcessPoolExecutor(max_workers=min(workers, len(plans)))
        finished = pool.map(write_video, plans, [cfg] * len(plans), paths, [cfg.audio] * len(plans))
    try:
        for _ in progress(finished, total=len(plans), desc="synth", unit="video"):
            pass
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    entries = [VideoEntry(plan.video_id, path, transcript_path(out, plan.video_id), plan.split)
               for plan, path in zip(plans, paths)]
    atomic_write_text(out / "segments.jsonl", jsonl_text(segment_rows(plans)))
    write_labels(out, plans)
    write_manifest(out / "manifest.jsonl", entries)
    seconds = time.perf_counter() - began
    video_seconds = sum(p.duration for p in plans)
    segments = sum(len(p.segments) for p in plans)
    message = f"{len(plans)} videos ({video_seconds:.0f} s of video, {segments} segments) in {seconds:.1f} s"
    details = {"manifest": str(out / "manifest.jsonl"), "videos": len(plans), "seconds_of_video": video_seconds,
               "segments": segments}
    return StageSummary("synth", out, len(plans), 0, 0, seconds, message, details)


def write_labels(out_dir: Path, plans) -> None:
    """``labels.jsonl`` (every segment's colour, shape and action) and beside it ``zeroshot.yaml``,
    the spec that classifies them (:func:`videobert.synthetic.scenes.zero_shot_spec`)."""
    rows = [row for plan in plans for row in label_rows(plan)]
    atomic_write_text(out_dir / LABELS_FILE, "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_text(out_dir / ZERO_SHOT_FILE, "# zero-shot classification of labels.jsonl beside it (videobert evaluate)\n"
                      + yaml.safe_dump(zero_shot_spec(), sort_keys=False))


def segment_rows(plans) -> list[dict]:
    """The narrated segments as annotations (``segments.jsonl``, the benchmarks' format): the
    segment's true span and its narration as the sentence, in the video's split."""
    return [{"video_id": plan.video_id, "start": round(s.start, 3), "end": round(s.end, 3),
             "sentence": s.narration.text, "split": plan.split}
            for plan in plans for s in plan.segments if s.narration is not None]


def video_path(out_dir: Path, video_id: str) -> Path:
    return out_dir / "videos" / f"{video_id}.mp4"


def transcript_path(out_dir: Path, video_id: str) -> Path:
    return out_dir / "transcripts" / f"{video_id}.vtt"
