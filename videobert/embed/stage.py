"""The embed stage: RUN + SEGMENTS + TOKENS (+ FEATURES) -> EMB/, one feature row per annotated
segment (docs/formats.md), for captioning and other downstream tasks.

``EMB/`` holds, per split, ``<split>.npy`` (float16 [n, D]) and ``<split>.jsonl`` (row i's
``video_id``, ``start``, ``end``, ``sentence``, ``line`` — its line in SEGMENTS), and
``embed.json``: the parts of a row (``videobert`` H numbers, then ``s3d`` 1024 when FEATURES is
given), the model's codebook, the template, the segments file and the counts.

The work is cut into chunks of :data:`CHUNK` segments per split; a finished chunk is written as
``EMB/parts/<split>-NNNNNN.npy`` + ``.jsonl`` and never recomputed, so a killed run resumes where
it stopped. Workers (``--shard I/N``, torchrun ranks) each compute every N-th chunk; the worker that
finds every chunk done (after the ranks' barrier under torchrun) merges them into the split files,
streamed row block by row block, and removes the parts. Segments whose video has no visual words,
or that cover no clip of it, are left out and recorded in ``failures.jsonl`` with the line of
SEGMENTS they came from.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from videobert import config as cfgmod
from videobert.config import field
from videobert.corpus.align import overlapping_clips
from videobert.embed.features import (PAPER_TEMPLATE, embedding_input, mean_clip_features, template_ids,
                                      videobert_features)
from videobert.errors import ConfigError, InputError
from videobert.features.settings import IDENTITY_KEYS, feature_identity
from videobert.features.stage import extract_info, mapped_features
from videobert.manifest import SPLITS
from videobert.model_folder import read_feature_settings
from videobert.inference import InferenceConfig, LoadedModel, load_model
from videobert.readers import MAX_MAPPED_BYTES, Field, check_fields, load_npy, npy_header
from videobert.retrieval.gallery import check_model_tokens, read_segments
from videobert.runtime import LONG_BARRIER, Shard, combined_shard, dist_env, process_group
from videobert.store import (StageSummary, atomic_write, atomic_write_json, atomic_write_text, create_once_json,
                             failure_record, failures_name, jsonl_text, prepare_output_dir, read_failures, read_json,
                             read_jsonl)
from videobert.vocab.stage import load_tokens, tokens_meta

log = logging.getLogger(__name__)

CHUNK = 4096  # segments per part file: the unit of resuming and of sharing out
META_FILE = "embed.json"
PARTS = "parts"


@dataclass
class EmbedConfig(InferenceConfig):
    """Configuration of ``videobert embed``: where the model runs, which splits, the template."""

    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"],
                              help="splits of SEGMENTS to embed (a split without segments is skipped)")
    template: str = field(PAPER_TEMPLATE, help="fill-in-the-blank sentence before the video; its [MASK]s are read")
    s3d: Literal["auto", "yes", "no"] = field(
        "auto", help="append the segment's mean S3D feature (1024-d): auto = when FEATURES is given")

    def check(self) -> None:
        InferenceConfig.check(self)
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown or not self.splits:
            raise ConfigError(f"splits: need some of {', '.join(SPLITS)}, got {self.splits}")


# --------------------------------------------------------------------------- the inputs
def check_features(features_dir: Path, loaded_dir: Path, tokens_dir: Path) -> dict[str, Any]:
    """FEATURES/extract.json, checked against the settings the model's visual words came from
    (the model folder's ``features.json``) and the clip timing of TOKENS: a folder of another
    extract setting is refused, naming the setting."""
    info = extract_info(features_dir)
    where = features_dir / "extract.json"
    if not info:
        raise InputError(f"{where}: not found; FEATURES must be an extract folder", "missing")
    model_settings = feature_identity(read_feature_settings(loaded_dir) or {})
    for key, value in feature_identity(info).items():
        if value is not None and model_settings.get(key) is not None and model_settings[key] != value:
            raise ConfigError(f"{where}: features made with {key}={value!r}, but the model's visual words come from "
                              f"{key}={model_settings[key]!r} ({loaded_dir / 'features.json'}); give the features of "
                              "the model's extract settings")
    meta = tokens_meta(tokens_dir)
    for key in ("fps", "clip_frames"):
        if key in meta and key in info and meta[key] != info[key]:
            raise ConfigError(f"{where}: {key}={info[key]!r}, but the visual words in {tokens_dir} have "
                              f"{key}={meta[key]!r}; give the features those tokens were made from")
    return info


def _identity(model_dir: Path, segments: Path, tokens_dir: Path, features_dir: Path | None, cfg: EmbedConfig,
              loaded: LoadedModel) -> dict[str, Any]:
    """What defines the rows of EMB: a rerun must agree on it to resume."""
    stat = segments.stat()
    return {
        "model": str(model_dir.resolve()),
        "codebook": loaded.vocab.codebook,
        "hidden_size": loaded.model.config.hidden_size,
        "template": cfg.template,
        "segments": {"path": str(segments.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        "tokens": str(tokens_dir.resolve()),
        "features": str(features_dir.resolve()) if features_dir is not None else None,
        "chunk": CHUNK,
    }


# --------------------------------------------------------------------------- the stage
def run(model_dir: str | Path, segments: str | Path, tokens: str | Path, out_dir: str | Path, cfg: EmbedConfig,
        features: str | Path | None = None, overwrite: bool = False, shard: Shard = Shard()) -> StageSummary:
    """Embed the segments of ``cfg.splits`` into ``out_dir`` (module docstring); ``details`` is
    ``embed.json``. ``features``: FEATURES, for the S3D part. ``overwrite``: start afresh in a
    folder that holds embeddings made otherwise (else that is an error). ``shard``: this job's
    share of the chunks (job arrays), subdivided among torchrun ranks."""
    began = time.perf_counter()
    model_dir, segments, tokens_dir = Path(model_dir), Path(segments), Path(tokens)
    features_dir = Path(features) if features is not None else None
    if cfg.s3d == "yes" and features_dir is None:
        raise ConfigError("s3d: yes needs the FEATURES folder (--features)")
    if cfg.s3d == "no":
        features_dir = None
    env = dist_env()
    worker = combined_shard(shard, env)
    loaded = load_model(model_dir, cfg.device, cfg.precision, cfg.batch_tokens)
    template = template_ids(loaded, cfg.template)
    info = check_features(features_dir, model_dir, tokens_dir) if features_dir is not None else None
    clip_seconds = check_model_tokens(loaded, tokens_dir).clip_seconds
    by_split = read_segments(segments, cfg.splits)
    out = prepare_output_dir(out_dir)
    identity = _identity(model_dir, segments, tokens_dir, features_dir, cfg, loaded)
    _claim(out, identity, overwrite)
    cfgmod.save(cfg, out / "config.yaml")
    hidden = loaded.model.config.hidden_size
    parts = [{"name": "videobert", "dim": hidden}] + ([{"name": "s3d", "dim": 1024}] if features_dir is not None else [])
    width = sum(p["dim"] for p in parts)

    chunks = [(split, c) for split in cfg.splits for c in range(-(-len(by_split[split]) // CHUNK))]
    mine = chunks[worker.index :: worker.count]
    done = computed = 0
    for split, c in mine:
        if _part_done(out, split, c):
            done += 1
            continue
        rows = by_split[split][c * CHUNK : (c + 1) * CHUNK]
        matrix, kept, failed = embed_segments(loaded, template, rows, tokens_dir, clip_seconds, features_dir, segments)
        _write_part(out, split, c, matrix.reshape(-1, width), kept, failed)
        computed += 1
        log.info("embed: %s chunk %d (%d segments, %d left out) done", split, c, len(rows), len(failed))
    with process_group(env.has_rendezvous, "gloo", LONG_BARRIER) as group:
        group.barrier()
    left = sum(not _part_done(out, split, c) for split, c in chunks)
    if left or (env.has_rendezvous and not env.is_main):
        message = f"{computed} chunks embedded ({done} done earlier); {left} left to other workers"
        return StageSummary("embed", out, computed, done, 0, time.perf_counter() - began, message)
    splits = [split for split in cfg.splits if by_split[split]]
    counts = {split: _merge_split(out, split, sum(1 for s, _ in chunks if s == split), width) for split in splits}
    if (out / PARTS).is_dir():  # every chunk's records, in order, before the parts go
        atomic_write_text(out / failures_name(), "".join(
            _part_path(out, split, c).with_suffix(".failures.jsonl").read_text(encoding="utf-8") for split, c in chunks))
    failed = len(read_failures(out / failures_name())) if (out / failures_name()).exists() else 0
    shutil.rmtree(out / PARTS, ignore_errors=True)
    summary = {**identity, "parts": parts, "dim": width, "splits": counts, "left_out": failed,
               "clip_seconds": clip_seconds, "extract": {k: info.get(k) for k in (*IDENTITY_KEYS, "init_seed")} if info else None,
               "complete": True}
    atomic_write_json(out / META_FILE, summary)
    message = (f"{sum(counts.values())} segments embedded ({', '.join(f'{s} {n}' for s, n in counts.items())}), "
               f"{width} numbers each; {failed} left out (failures.jsonl)")
    return StageSummary("embed", out, sum(counts.values()), done, failed, time.perf_counter() - began, message, summary)


def embed_segments(loaded: LoadedModel, template: Sequence[int], rows: Sequence[dict[str, Any]], tokens_dir: Path,
                   clip_seconds: float, features_dir: Path | None,
                   segments: Path) -> tuple[np.ndarray, list[dict[str, Any]], list[dict[str, Any]]]:
    """float16 [kept, D] rows of one chunk, the index rows kept, and a failure record (id: the
    segment's line of SEGMENTS) for each row left out."""
    tokens = load_tokens(tokens_dir, {r["video_id"] for r in rows})
    sequences, kept, s3d, failures = [], [], [], []

    def leave_out(where: str, reason: str, kind: str) -> None:
        log.warning("%s: %s", where, reason)
        failures.append(failure_record(where, reason, kind, video_id=row["video_id"]))

    mapped: dict[str, np.ndarray] = {}
    for row in rows:
        where = f"{segments}:{row['line']}"
        words = tokens.get(row["video_id"])
        if words is None:
            leave_out(where, f"segment of {row['video_id']!r}: the video has no visual words in {tokens_dir}", "missing")
            continue
        clips = overlapping_clips(row["start"], row["end"], len(words), clip_seconds)
        if not len(clips):
            leave_out(where, f"segment of {row['video_id']!r} {row['start']:.2f}-{row['end']:.2f} s covers no "
                                   f"clip of its {len(words)} clips of {clip_seconds:g} s", "no_clip")
            continue
        if features_dir is not None:
            if row["video_id"] not in mapped:
                try:
                    mapped[row["video_id"]] = mapped_features(features_dir, row["video_id"])
                except InputError as error:
                    leave_out(where, str(error), error.kind)
                    continue
            features = mapped[row["video_id"]]
            if features.shape[0] != len(words):
                leave_out(where, f"{features_dir}/{row['video_id']}.npy has {features.shape[0]} clips, the visual "
                                       f"words {len(words)}: FEATURES is not the folder TOKENS was made from", "unreadable")
                continue
            s3d.append(mean_clip_features(features, clips))
        sequences.append(embedding_input(loaded, template, np.asarray(words[clips.start : clips.stop], np.int64)))
        kept.append(row)
    hidden = loaded.model.config.hidden_size
    if not sequences:
        return np.zeros((0, hidden + (1024 if features_dir is not None else 0)), np.float16), kept, failures
    matrix = videobert_features(loaded, sequences)
    if features_dir is not None:
        matrix = np.concatenate([matrix, np.stack(s3d)], axis=1)
    return matrix.astype(np.float16), kept, failures


# --------------------------------------------------------------------------- the folder
def _claim(out: Path, identity: dict[str, Any], overwrite: bool) -> None:
    """Record what the folder's rows are made of, or check a rerun agrees (so it can resume)."""
    path = out / META_FILE
    if overwrite and path.exists():
        for old in [*out.glob("*.npy"), *out.glob("*.jsonl"), path]:
            old.unlink(missing_ok=True)
        shutil.rmtree(out / PARTS, ignore_errors=True)
    create_once_json(path, identity)
    recorded = read_json(path, META_FILE)
    for key, value in identity.items():
        if recorded.get(key) != value:
            raise ConfigError(f"{out}: holds embeddings made with another {key} ({recorded.get(key)!r}, now {value!r}); "
                              "write to another folder, or --overwrite to start afresh")


def _part_path(out: Path, split: str, chunk: int) -> Path:
    return out / PARTS / f"{split}-{chunk:06d}.npy"


def _part_done(out: Path, split: str, chunk: int) -> bool:
    """A part is done when its index exists (written after its rows)."""
    return _part_path(out, split, chunk).with_suffix(".jsonl").exists() or (out / f"{split}.npy").exists()


def _write_part(out: Path, split: str, chunk: int, matrix: np.ndarray, kept: Sequence[dict[str, Any]],
                failed: Sequence[dict[str, Any]]) -> None:
    """A chunk's rows, failures, then index (its existence marks the chunk done)."""
    path = _part_path(out, split, chunk)
    path.parent.mkdir(exist_ok=True)
    with atomic_write(path) as handle:
        np.save(handle, matrix, allow_pickle=False)
    atomic_write_text(path.with_suffix(".failures.jsonl"), jsonl_text(failed))
    atomic_write_text(path.with_suffix(".jsonl"), jsonl_text(kept))


def _merge_split(out: Path, split: str, chunks: int, width: int) -> int:
    """Join a split's parts into ``<split>.npy`` + ``<split>.jsonl`` (one part in memory at a time);
    returns its row count. A split merged earlier is left as it is."""
    final = out / f"{split}.npy"
    if final.exists():
        return int(npy_header(final, "embeddings")[0][0])
    paths = [_part_path(out, split, c) for c in range(chunks)]
    sizes = [int(npy_header(p, "embeddings")[0][0]) for p in paths]
    with atomic_write(out / f"{split}.jsonl", "w", encoding="utf-8") as index:
        for path in paths:
            index.write(path.with_suffix(".jsonl").read_text(encoding="utf-8"))
    tmp = out / f".{split}.merging.npy"
    merged = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(sum(sizes), width))
    row = 0
    for path, size in zip(paths, sizes):
        merged[row : row + size] = load_npy(path, "embeddings", mmap=True, max_bytes=MAX_MAPPED_BYTES)
        row += size
    merged.flush()
    del merged
    tmp.replace(final)
    return row


# the fields of embed.json its readers use, by type and bounds
EMBED_FIELDS = {"dim": Field("int", 1, 1 << 20), "complete": Field("bool", required=False),
                "splits": Field("dict", required=False), "model": Field("str", required=False, nullable=True),
                "parts": Field("list", required=False)}


def load_embeddings(emb_dir: str | Path, split: str) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    """A split of an EMB folder: float16 [n, D] rows (memory-mapped), their index rows and
    ``embed.json``."""
    emb_dir = Path(emb_dir)
    meta = check_fields(read_json(emb_dir / META_FILE, "embeddings"), emb_dir / META_FILE, EMBED_FIELDS)
    for index, part in enumerate(meta.get("parts", [])):
        check_fields(part, f"{emb_dir / META_FILE}: parts[{index}]", {"name": Field("str"), "dim": Field("int", 1, 1 << 20)})
    if not meta.get("complete"):
        raise InputError(f"{emb_dir / META_FILE}: the embedding run did not finish; rerun videobert embed to resume")
    path = emb_dir / f"{split}.npy"
    if not path.exists():
        raise InputError(f"{path}: no {split} split in {emb_dir} (embedded: {', '.join(meta.get('splits', {}))})",
                         "missing")
    matrix = load_npy(path, "embeddings", mmap=True, max_bytes=MAX_MAPPED_BYTES)
    if matrix.ndim != 2:
        raise InputError(f"{path}: embeddings must be a matrix [rows, numbers], not {list(matrix.shape)}")
    rows = [row for _, row in read_jsonl(emb_dir / f"{split}.jsonl", "embedding index")]
    if len(rows) != matrix.shape[0] or matrix.shape[1] != meta["dim"]:
        raise InputError(f"{path}: {list(matrix.shape)} rows do not match its index ({len(rows)}) and embed.json "
                         f"({meta['dim']} numbers)")
    return matrix, rows, meta


def part_slices(meta: dict[str, Any], which: str) -> slice:
    """Columns of a row that hold ``which``: ``s3d``, ``videobert`` or ``both``."""
    spans, at = {}, 0
    for part in meta["parts"]:
        spans[part["name"]] = slice(at, at + part["dim"])
        at += part["dim"]
    if which == "both":
        if len(spans) < 2:
            raise ConfigError(f"features 'both' need S3D in the embeddings; these hold only {', '.join(spans)} "
                              "(videobert embed --features FEATURES)")
        return slice(0, at)
    if which not in spans:
        raise ConfigError(f"features {which!r}: the embeddings hold {', '.join(spans)} "
                          "(videobert embed --features FEATURES adds s3d)")
    return spans[which]
