"""The index stage: MODEL + videos -> INDEX (:mod:`videobert.index.folder`), for ``videobert
retrieve MODEL "query" --index INDEX`` and ``videobert serve``.

``run`` creates the folder or checks that it was made with this model (its codebook, visual
vocabulary, dual encoder, feature settings and segmenting: a folder never mixes two), writes
``config.yaml``, owns the failure log (one per writer) and adds the videos it does not hold yet:
each decoded, encoded and tokenized exactly as the model's own videos were
(:class:`videobert.video_tokenizer.VideoTokenizer`), cut into segments (the ``--segments`` rows
listed for it, else its transcript's sentences, else windows of ``window`` clips every ``stride``
clips: they overlap by default), each segment's video-tower vector computed
(:mod:`videobert.dual`), and written as parts of ``videos_per_part`` videos. The videos of an add
are planned first (``INDEX/adding.json``), so that an add killed halfway and run again writes the
parts one uninterrupted add writes; ``--shard I/N`` and torchrun ranks share its parts out. Time and
memory follow the videos added, not the index. When the index outgrows ``flat_limit`` segments (or
``kind: ivf`` is asked for, at the end of the first add) an IVF is trained on a sample of its
vectors and every part is given its vectors' inverted lists (:func:`videobert.index.folder.to_ivf`);
later parts are written with theirs.
``remove`` takes videos out (their rows stop being found; the parts keep their bytes).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from videobert import config as cfgmod
from videobert.config import field
from videobert.corpus.align import overlapping_clips
from videobert.dual import LoadedDual, load_dual, video_vectors
from videobert.errors import ConfigError, InputError, StageError
from videobert.index.folder import (
    FLAT_LIMIT, FORMAT, META_FILE, NewPart, held_videos, part_dir, part_info, part_numbers, read_meta, read_template,
    remove_videos, to_ivf, write_part,
)
from videobert.inference import LoadedModel, load_model
from videobert.logs import progress, progress_enabled
from videobert.manifest import VideoEntry, read_manifest
from videobert.retrieval.gallery import read_segments
from videobert.runtime import LONG_BARRIER, DeviceName, Precision, Shard, combined_shard, dist_env, process_group
from videobert.store import (
    FailureLog, StageSummary, atomic_write_json, create_once_json, failures_name, prepare_output_dir, read_json,
)
from videobert.text.sentences import SentenceConfig, split_sentences
from videobert.text.transcripts import read_transcript
from videobert.video_tokenizer import VideoTokenizer

log = logging.getLogger(__name__)

PLAN_FILE = "adding.json"
IDENTITY = ("codebook", "visual_vocab_size", "dual", "dim", "clip_seconds", "window", "stride", "features")


@dataclass
class IndexConfig(SentenceConfig):
    """Configuration of ``videobert index``: how transcripts become sentences (a video's segments
    where it has a transcript), the windows of a video without one, the vector index, and speed."""

    device: DeviceName = field("auto", help="where S3D, the codebook and the dual encoder run (auto: CUDA when visible)")
    precision: Precision = field("auto", help="the dual encoder's precision (S3D runs in the precision its features "
                                              "were extracted in)")
    window: int = field(16, help="clips per segment of a video with neither --segments rows nor a transcript")
    stride: int | None = field(None, help="clips between the starts of a video's windows (none: half the window, so "
                                          "that they overlap; the window: they do not)")
    kind: Literal["auto", "flat", "ivf"] = field(
        "auto", help="vector index: flat (exact inner product), ivf (inverted lists), auto: flat up to flat_limit "
                     "segments, ivf beyond (recorded in index.json)")
    flat_limit: int = field(FLAT_LIMIT, help="auto: segments above which the vectors move into an IVF")
    nprobe: int = field(64, help="ivf: inverted lists a query visits (more: closer to exact, slower)")
    videos_per_part: int = field(256, speed_only=True, help="videos per part: the unit written whole and resumed")
    batch_size: int | None = field(None, speed_only=True, help="clips per S3D call (none: 64 on CUDA, 4 on CPU)")
    workers: int | None = field(None, speed_only=True, help="decoding processes beside S3D (none: extract's default)")
    batch_tokens: int = field(0, speed_only=True, help="tokens per dual-encoder pass (0: 131072 on GPU, 8192 on CPU)")

    def check(self) -> None:
        SentenceConfig.check(self)
        if self.stride is None:
            self.stride = max(1, self.window // 2)
        if min(self.window, self.stride, self.videos_per_part, self.nprobe, self.flat_limit) < 1:
            raise ConfigError("window, stride, videos_per_part, nprobe, flat_limit: need at least 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError("batch_size: need at least 1")
        if (self.workers is not None and self.workers < 0) or self.batch_tokens < 0:
            raise ConfigError("workers, batch_tokens: need 0 or more")


# ------------------------------------------------------------------------ segments
def cut_segments(words: np.ndarray, clip_seconds: float, window: int, stride: int,
                 listed: Sequence[dict[str, Any]] | None) -> list[tuple[float, float, str, np.ndarray]]:
    """(start, end, sentence, visual words) of a video's segments: those ``listed`` for it (rows of
    ``start``, ``end``, ``sentence`` — the ``--segments`` file's, or its transcript's sentences; a
    row that covers no clip is left out), else windows of ``window`` clips every ``stride`` clips."""
    out = []
    if listed:
        for row in listed:
            clips = overlapping_clips(float(row["start"]), float(row["end"]), len(words), clip_seconds)
            if clips:
                out.append((float(row["start"]), float(row["end"]), str(row.get("sentence", "")),
                            words[clips.start : clips.stop]))
        return out
    starts = range(0, max(1, len(words) - window + stride), stride) if len(words) > window else [0]
    for first in starts:
        clips = range(first, min(first + window, len(words)))
        if clips:
            out.append((clips.start * clip_seconds, clips.stop * clip_seconds, "", words[clips.start : clips.stop]))
    return out


def transcript_segments(entry: VideoEntry, cfg: IndexConfig) -> list[dict[str, Any]] | None:
    """A video's transcript as segments (its sentences with their times), or None where it has
    none or it cannot be read (said, and the video is cut into windows instead)."""
    if entry.transcript is None:
        return None
    try:
        sentences = split_sentences(read_transcript(entry.transcript), cfg.pause, cfg.max_words)
    except InputError as exc:
        log.warning("%s: its transcript cannot be read (%s); it is cut into windows instead", entry.video_id,
                    str(exc).splitlines()[0])
        return None
    return [{"start": cue.start, "end": cue.end, "sentence": cue.text} for cue in sentences] or None


def make_part(dual: LoadedDual, videos: Sequence[tuple[str, str, np.ndarray]], clip_seconds: float, window: int,
              listed: dict[str, list[dict[str, Any]]] | None, stride: int | None = None) -> NewPart:
    """A part of the videos given as (id, path, visual words): their segments (:func:`cut_segments`;
    ``listed``: rows per video id) and vectors."""
    ids, paths, video, start, end, sentences, words = [], [], [], [], [], [], []
    for video_id, path, video_words in videos:
        segments = cut_segments(np.asarray(video_words, np.int32), clip_seconds, window, stride or max(1, window // 2),
                                (listed or {}).get(video_id))
        ids.append(video_id)
        paths.append(str(path))
        for s, e, sentence, w in segments:
            video.append(len(ids) - 1)
            start.append(s)
            end.append(e)
            sentences.append(sentence)
            words.append(np.asarray(w, np.int32))
    vectors = video_vectors(dual.model, dual.loaded, words) if words else np.zeros((0, dual.dim), np.float32)
    return NewPart(ids, paths, np.array(video, np.int32), np.array(start, np.float64), np.array(end, np.float64),
                   sentences, words, vectors)


def index_meta(loaded: LoadedModel, dual: LoadedDual, clip_seconds: float, window: int,
               features: dict[str, Any] | None, cfg: IndexConfig) -> dict[str, Any]:
    """What ``index.json`` records of a model and a segmenting (module docstring of the folder)."""
    return {"format": FORMAT, "codebook": loaded.vocab.codebook, "visual_vocab_size": loaded.layout.visual_vocab_size,
            "dual": dual.identity, "dim": dual.dim, "clip_seconds": clip_seconds, "window": window,
            "stride": cfg.stride or max(1, window // 2),
            "features": features, "kind": "flat", "nprobe": cfg.nprobe}  # ivf once its vectors are there to train on


def claim_index_dir(out: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Record ``meta`` as the folder's ``index.json``, or check that the one there was made with the
    same model and segmenting (a folder never mixes two); returns the recorded one."""
    create_once_json(out / META_FILE, meta)
    recorded = read_meta(out)
    for key in IDENTITY:
        # an index made before windows overlapped records no stride: its windows followed each other
        value = recorded.get(key, recorded.get("window") if key == "stride" else None)
        if value != meta[key]:
            hint = f"add to it with --{key} {value}, or use" if key in ("window", "stride") else "use"
            raise ConfigError(f"{out} holds segments made with another {key} ({value!r}, this run "
                              f"{meta[key]!r}); {hint} another output folder")
    return recorded


def plan_add(out: Path, wanted: Sequence[VideoEntry], videos_per_part: int) -> list[list[VideoEntry]]:
    """The batches of ``wanted`` (videos the index lacks) that still need a part, each with its part
    number fixed by ``INDEX/adding.json``: an add planned before (and killed) is finished as planned,
    so that its parts are those an uninterrupted add writes."""
    path = out / PLAN_FILE
    by_id = {e.video_id: e for e in wanted}
    if path.is_file():
        plan = read_json(path, "index add plan")
        if not isinstance(plan, dict) or not isinstance(plan.get("videos"), list) or not isinstance(plan.get("first_part"), int):
            raise InputError(f"{path}: not an add plan of this index (delete it to start the add afresh)")
    else:
        numbers = part_numbers(out)
        plan = {"videos": [e.video_id for e in wanted], "first_part": (numbers[-1] + 1) if numbers else 0,
                "videos_per_part": videos_per_part}
        atomic_write_json(path, plan)
    ids, size = [str(v) for v in plan["videos"]], int(plan.get("videos_per_part") or videos_per_part)
    batches = []
    for b, first in enumerate(range(0, len(ids), size)):
        number = int(plan["first_part"]) + b
        if part_dir(out, number).is_dir():
            continue
        missing = [v for v in ids[first : first + size] if v not in by_id]
        if missing:
            raise ConfigError(f"{path}: an interrupted add of other videos ({missing[0]!r} is not in this manifest); "
                              "rerun that add, or delete the file to give it up")
        batches.append((number, [by_id[v] for v in ids[first : first + size]]))
    return batches


def run(model_dir: str | Path, videos: str | Path, out_dir: str | Path, cfg: IndexConfig, shard: Shard = Shard(),
        s3d_weights: str | Path | None = None, segments: str | Path | None = None) -> StageSummary:
    """Add the videos of ``videos`` (a manifest or a folder) that the index lacks — this worker's
    share of them — to ``out_dir`` (module docstring). ``segments``: a ``segments.jsonl`` whose rows
    (``video_id``, ``start``, ``end``, ``sentence``; any split) are the segments of their videos."""
    began = time.perf_counter()
    cfg.check()
    env = dist_env()
    worker = combined_shard(shard, env)
    entries = read_manifest(videos)
    loaded = load_model(model_dir, cfg.device, cfg.precision, cfg.batch_tokens)
    dual = load_dual(model_dir, loaded)
    if dual is None:
        raise InputError(f"{model_dir}: has no dual encoder (dual/) to index with; run 'videobert distil {model_dir} "
                         "--corpus CORPUS' first")
    tokenizer = VideoTokenizer(model_dir, loaded, s3d_weights, cfg.batch_size, cfg.workers)
    if not tokenizer.reads_videos:
        raise InputError(f"{model_dir}: holds no visual vocabulary and feature settings (visual_vocab/, features.json); "
                         "it cannot index videos")
    listed = None
    if segments is not None:
        listed = {}
        for split_rows in read_segments(segments, ("train", "val", "test")).values():
            for row in split_rows:
                listed.setdefault(row["video_id"], []).append(row)
    clip_seconds = tokenizer.clip_seconds()
    out = prepare_output_dir(out_dir)
    meta = index_meta(loaded, dual, clip_seconds, cfg.window, tokenizer.settings, cfg)
    failures_file = out / failures_name(worker.index, worker.count)
    done = failed = rows = skipped = 0
    with process_group(env.has_rendezvous, "gloo", LONG_BARRIER) as group:
        if env.is_main:
            claim_index_dir(out, meta)
            if worker.index == 0:
                cfgmod.save(cfg, out / "config.yaml")
        group.barrier()
        recorded = claim_index_dir(out, meta)
        with FailureLog(failures_file) as failure_log:
            held = held_videos(out)
            skipped = sum(e.video_id in held for e in entries)
            attempted: set[str] = set()
            while True:  # an interrupted add's plan first, then what the manifest adds beside it
                resuming = (out / PLAN_FILE).is_file()
                wanted = [e for e in entries if e.video_id not in held and e.video_id not in attempted]
                if not wanted and not resuming:
                    break
                if env.is_main:
                    plan_add(out, wanted, cfg.videos_per_part)
                group.barrier()
                batches = plan_add(out, wanted, cfg.videos_per_part)
                attempted.update(e.video_id for _, batch in batches for e in batch)
                template = read_template(out) if read_meta(out)["kind"] == "ivf" else None
                mine = worker.take(batches, key=lambda batch: batch[0])
                bar = progress(total=sum(len(b) for _, b in mine), desc="index", unit="video",
                               disable=not (env.is_main and progress_enabled()))
                for number, batch in mine:
                    found, rows_of = [], dict(listed or {})
                    for entry, words, error in tokenizer.iter_words(batch):
                        bar.update(1)
                        if error is not None:
                            failure_log.record_error(entry.video_id, error, video=str(entry.video))
                            failed += 1
                            continue
                        found.append((entry.video_id, str(entry.video), words))
                        if entry.video_id not in rows_of:
                            sentences = transcript_segments(entry, cfg)
                            if sentences:
                                rows_of[entry.video_id] = sentences
                    part = make_part(dual, found, clip_seconds, cfg.window, rows_of, cfg.stride)
                    write_part(out, number, part, dual.identity, template)
                    done += len(found)
                    rows += len(part)
                bar.close()
                group.barrier()
                if env.is_main:
                    (out / PLAN_FILE).unlink(missing_ok=True)
                group.barrier()
                held = held_videos(out)
                if not resuming:
                    break
        if env.is_main:
            total = sum(int(part_info(part_dir(out, n))["rows"]) for n in part_numbers(out))
            if recorded["kind"] == "flat" and (cfg.kind == "ivf" or (cfg.kind == "auto" and total > cfg.flat_limit)):
                to_ivf(out, cfg.nprobe)
        group.barrier()
        done, failed, rows = (int(v) for v in group.sum([done, failed, rows]))
    seconds = time.perf_counter() - began
    message = (f"index: {done} videos added ({rows} segments), {skipped} already there, {failed} failed (see "
               f"{failures_file.name}) in {seconds:.1f} s")
    if entries and not done and not skipped:
        raise StageError(f"no video could be indexed ({failed} failed; reasons in {failures_file})")
    return StageSummary("index", out, done, skipped, failed, seconds, message, {"segments": rows})


def run_remove(out_dir: str | Path, video_ids: Sequence[str]) -> StageSummary:
    """Take the videos ``video_ids`` out of the index ``out_dir``: their segments stop being found."""
    began = time.perf_counter()
    out = Path(out_dir)
    read_meta(out)
    removed, unknown = remove_videos(out, video_ids)
    if unknown:
        log.warning("%s: %d of the videos to remove are not in the index (%s)", out, len(unknown), ", ".join(unknown[:3]))
    message = f"index: {len(video_ids) - len(unknown)} videos removed ({removed} segments) in {time.perf_counter() - began:.1f} s"
    return StageSummary("index", out, len(video_ids) - len(unknown), 0, 0, time.perf_counter() - began, message,
                        {"segments_removed": removed, "unknown": unknown})
