"""The vocab and tokenize stages over folders.

``build_vocab`` samples clips from a features folder, fits the normalisation, grows the tree
(:mod:`videobert.vocab`), saves the codebook, reports its quantisation error against flat k-means
and writes the exemplars (:mod:`videobert.exemplars`). A rerun with the same config and the same
feature files keeps the codebook and only finishes the missing exemplars.

``tokenize_folder`` writes every video's word sequence (``TOKENS/<video_id>.npy``, int32
[n_clips]), shardable by ``--shard I/N`` and torchrun rank like extract, and resumable: a video whose
tokens are already there and valid is skipped. ``tokens.json`` records the codebook's hash; a
folder made with another vocabulary is refused unless ``overwrite`` is given, so that token files
of two vocabularies never mix.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from videobert import config as cfgmod
from videobert.distributed import Shard, combined_shard
from videobert.errors import ConfigError, InputError, StageError
from videobert.exemplars import contact_sheet, nearest_clips, write_thumbnails
from videobert.features import FEATURE_DIM, feature_path, list_videos, load_features
from videobert.logs import progress
from videobert.manifest import read_manifest
from videobert.store import (
    FailureLog,
    atomic_save_npy,
    atomic_write_json,
    failures_name,
    library_versions,
    prepare_output_dir,
    read_json,
)
from videobert.vocab import (
    Codebook,
    TokenizeConfig,
    VocabConfig,
    faiss_gpu_wanted,
    fit_normalisation,
    flat_comparison,
    hierarchical_kmeans,
    load,
    quantisation_mse,
    video_mean,
)

log = logging.getLogger(__name__)

# Config fields that do not change the codebook (a rerun that changes only these keeps it).
_PRESENTATION_FIELDS = ("device", "flat_compare_max_words", "flat_sample", "exemplars", "exemplar_size", "sheet_words", "workers")


def clip_count(features_dir: str | Path, video_id: str) -> int:
    """Number of clips of a video's feature file, read from the ``.npy`` header only."""
    path = feature_path(features_dir, video_id)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = reader(handle)
    except FileNotFoundError:
        raise InputError(f"{path}: no features for video {video_id!r}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable features ({exc})") from None
    if len(shape) != 2 or shape[1] != FEATURE_DIM or dtype.kind != "f":
        raise InputError(f"{path}: expected float [n_clips, {FEATURE_DIM}], got {dtype} {list(shape)}")
    return int(shape[0])


def extract_info(features_dir: str | Path) -> dict:
    """``FEATURES/extract.json`` (fps, clip_frames, clip_seconds, manifest, …), or {} without one."""
    path = Path(features_dir) / "extract.json"
    if not path.exists():
        log.warning("%s: not found; clip timing and the manifest are unknown", path)
        return {}
    return read_json(path, "extract.json")


def clip_seconds(info: dict) -> float | None:
    """Seconds per clip from extract.json (``clip_seconds``, else ``clip_frames / fps``)."""
    if info.get("clip_seconds"):
        return float(info["clip_seconds"])
    if info.get("clip_frames") and info.get("fps"):
        return float(info["clip_frames"]) / float(info["fps"])
    return None


def scan_features(features_dir: str | Path, failures: FailureLog) -> list[tuple[str, int]]:
    """``(video_id, n_clips)`` of every readable feature file; unreadable ones go to ``failures``."""
    listing = []
    for video_id in list_videos(features_dir):
        try:
            listing.append((video_id, clip_count(features_dir, video_id)))
        except InputError as exc:
            failures.record(video_id, str(exc))
    return listing


@dataclass
class ClipSample:
    """The clips the vocabulary is trained on, and where each comes from."""

    features: np.ndarray  # float32 [n, F], centred per video when asked
    video_ids: list[str]  # the corpus's videos (indexed by ``video``)
    video: np.ndarray  # int32 [n]
    clip: np.ndarray  # int32 [n]: clip index within its video
    corpus_clips: int


def read_sample(
    features_dir: str | Path,
    listing: list[tuple[str, int]],
    sample: int,
    seed: int,
    center_per_video: bool,
    failures: FailureLog,
) -> ClipSample:
    """All clips of the corpus, or a uniform sample of ``sample`` of them drawn with ``seed``.

    With ``center_per_video`` each clip has its video's mean (over all the video's clips)
    subtracted. A video whose file cannot be read or holds NaN/infinity is recorded in
    ``failures`` and its clips are left out.
    """
    video_ids = [video_id for video_id, _ in listing]
    offsets = np.concatenate([[0], np.cumsum([count for _, count in listing])]).astype(np.int64)
    total = int(offsets[-1])
    if total == 0:
        raise StageError(f"{features_dir}: the feature files hold no clips")
    picked = np.arange(total)
    if total > sample:
        picked = np.sort(np.random.default_rng(seed).choice(total, sample, replace=False))
    video = np.searchsorted(offsets, picked, side="right") - 1
    clip = picked - offsets[video]
    features = np.empty((len(picked), FEATURE_DIM), np.float32)
    keep = np.ones(len(picked), bool)
    starts = np.flatnonzero(np.r_[True, video[1:] != video[:-1]])
    stops = np.r_[starts[1:], len(picked)]
    for start, stop in progress(list(zip(starts, stops)), desc="read sample", unit="video"):
        video_id = video_ids[video[start]]
        try:
            array = load_features(features_dir, video_id)
            if not np.isfinite(array).all():
                raise InputError(f"{feature_path(features_dir, video_id)}: features contain NaN or infinity")
        except InputError as exc:
            failures.record(video_id, str(exc))
            keep[start:stop] = False
            continue
        rows = array[clip[start:stop]].astype(np.float32)
        features[start:stop] = rows - video_mean(array) if center_per_video else rows
    if not keep.any():
        raise StageError(f"{features_dir}: no usable features (see failures.jsonl)")
    return ClipSample(features[keep], video_ids, video[keep].astype(np.int32), clip[keep].astype(np.int32), total)


def build_key(cfg: VocabConfig, features_dir: str | Path, listing: list[tuple[str, int]]) -> str:
    """Hash of what decides the codebook: the clustering settings and the feature files (ids, clip
    counts, sizes, modification times)."""
    settings = {k: v for k, v in cfgmod.to_dict(cfg).items() if k not in _PRESENTATION_FIELDS}
    files = []
    for video_id, count in listing:
        stat = feature_path(features_dir, video_id).stat()
        files.append([video_id, count, stat.st_size, stat.st_mtime_ns])
    return cfgmod.config_hash({"settings": settings, "files": files})


def _size_histogram(sizes: np.ndarray) -> dict[str, int]:
    """Counts of sizes in bins 0, 1, 2-3, 4-7, … (powers of two)."""
    histogram = {"0": int((sizes == 0).sum())}
    low = 1
    while low <= max(int(sizes.max(initial=0)), 1):
        high = 2 * low - 1
        label = str(low) if low == high else f"{low}-{high}"
        histogram[label] = int(((sizes >= low) & (sizes <= high)).sum())
        low *= 2
    return histogram


def _previous_build(out: Path, key: str) -> dict | None:
    """vocab.json of an earlier build with the same key whose codebook is intact, else None."""
    summary_path = out / "vocab.json"
    if not summary_path.exists() or not (out / "exemplars.json").exists():
        return None
    try:
        summary = read_json(summary_path, "vocab.json")
        same = summary.get("build_key") == key and load(out, device="cpu").hash == summary.get("codebook")
    except InputError:
        return None
    return summary if same else None


def _clear_outputs(out: Path) -> None:
    """Remove what an earlier build wrote, so that nothing of another codebook survives a crash."""
    for name in ("vocab.json", "exemplars.json", "exemplars.jpg", "codebook.npz"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "exemplars", ignore_errors=True)


def _build(features_dir: Path, out: Path, cfg: VocabConfig, listing, info: dict, gpu: bool,
           failures: FailureLog, key: str) -> tuple[dict, list[dict]]:
    began = time.perf_counter()
    _clear_outputs(out)
    sample = read_sample(features_dir, listing, cfg.sample, cfg.seed, cfg.center_per_video, failures)
    log.info(
        "clustering %d clips of %d videos (corpus: %d clips) with k=%d, depth=%d on %s",
        len(sample.features), len(np.unique(sample.video)), sample.corpus_clips, cfg.k, cfg.depth,
        "faiss (GPU for large nodes)" if gpu else "faiss CPU",
    )
    norm = fit_normalisation(sample.features, cfg.normalise, cfg.center_per_video, cfg.pca_dim)
    z = norm.apply(torch.from_numpy(sample.features)).numpy()
    sample.features = np.empty((0, FEATURE_DIM), np.float32)  # free the raw copy before clustering
    tree, leaves = hierarchical_kmeans(
        z, cfg.k, cfg.depth, cfg.niter, cfg.seed, cfg.init, cfg.min_points_per_centroid, cfg.max_points_per_centroid,
        gpu, workers=cfg.workers, progress=progress,
    )
    codebook = Codebook(tree, norm, cfg.depth, cfg.seed, device="cpu")
    codebook.save(out)
    build_seconds = time.perf_counter() - began
    words = tree.node_word[leaves]
    vectors = codebook.word_vectors()
    quantisation = {"clips": len(z), "hierarchical_mse": quantisation_mse(z, words, vectors)}
    quantisation["flat"] = flat_comparison(z, words, vectors, cfg, gpu)
    log.info("quantisation MSE %s", quantisation_text(quantisation))

    rows, distances = nearest_clips(z, words, vectors)
    counts = codebook.word_counts
    seconds_per_clip = clip_seconds(info)
    entries = []
    for word, row in enumerate(rows.tolist()):
        if row < 0:
            continue
        clip = int(sample.clip[row])
        entries.append({
            "word": word,
            "count": int(counts[word]),
            "video_id": sample.video_ids[sample.video[row]],
            "clip": clip,
            "seconds": round((clip + 0.5) * seconds_per_clip, 3) if seconds_per_clip else None,
            "distance": float(distances[word]),
        })
    atomic_write_json(out / "exemplars.json", entries)

    levels = tree.node_level[tree.word_node]
    summary = {
        "vocab_size": codebook.size,
        "k": cfg.k,
        "depth": cfg.depth,
        "levels": tree.levels,
        "nodes": len(tree.first_child),
        "words_per_level": {str(level): int((levels == level).sum()) for level in range(tree.levels + 1)},
        "empty_words": int((counts == 0).sum()),
        "leaf_size_histogram": _size_histogram(counts),
        "sample": {
            "clips": len(z),
            "videos": int(len(np.unique(sample.video))),
            "corpus_clips": sample.corpus_clips,
            "corpus_videos": len(listing),
            "subsampled": sample.corpus_clips > cfg.sample,
        },
        "dim": codebook.dim,
        "feature_dim": codebook.feature_dim,
        "normalisation": {"method": cfg.normalise, "center_per_video": cfg.center_per_video, "pca_dim": cfg.pca_dim},
        "quantisation": quantisation,
        "codebook": codebook.hash,
        "build_key": key,
        "seed": cfg.seed,
        "clustering": "faiss GPU for large nodes, CPU threads for small ones" if gpu else "faiss CPU",
        "build_seconds": round(build_seconds, 3),
        "features": str(features_dir.resolve()),
        "extract": {k: info[k] for k in ("model", "weights", "fps", "clip_frames", "clip_seconds") if k in info},
        "failed_videos": [{"id": r["id"], "reason": r["reason"]} for r in _records(failures)],
        "versions": library_versions(),
    }
    atomic_write_json(out / "vocab.json", summary)
    return summary, entries


def quantisation_text(quantisation: dict) -> str:
    """One line for the log: the hierarchy's MSE beside flat k-means's (or why there is no comparison)."""
    flat = quantisation["flat"]
    if "flat_mse" not in flat:
        return f"{quantisation['hierarchical_mse']:.4g} on {quantisation['clips']} clips (no flat k-means comparison: {flat['skipped']})"
    ratio = f"{flat['ratio']:.3f}" if flat["ratio"] is not None else "n/a"
    return (
        f"on {flat['clips']} clips: hierarchical {flat['hierarchical_mse']:.4g}, "
        f"flat k-means with {flat['centroids']} centroids {flat['flat_mse']:.4g} (ratio {ratio})"
    )


def _records(failures: FailureLog) -> list[dict]:
    return [json.loads(line) for line in failures.path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _exemplars(out: Path, cfg: VocabConfig, entries: list[dict], info: dict, manifest: Path | None,
               failures: FailureLog) -> dict:
    if not cfg.exemplars:
        return {"skipped": "exemplars is false"}
    if not entries:
        return {"skipped": "no word has training clips"}
    if entries[0]["seconds"] is None:
        log.warning("exemplars skipped: FEATURES/extract.json gives no clip_seconds (or clip_frames and fps)")
        return {"skipped": "clip timing unknown (no extract.json)"}
    source = manifest or info.get("manifest")
    if not source:
        log.warning("exemplars skipped: no manifest (extract.json records none; pass --manifest)")
        return {"skipped": "no manifest"}
    try:
        videos = {entry.video_id: entry.video for entry in read_manifest(source)}
    except InputError as exc:
        if manifest is not None:
            raise
        log.warning("exemplars skipped: the manifest recorded in extract.json is unusable (%s); pass --manifest", exc)
        return {"skipped": f"manifest unusable: {exc}"}
    written, failed = write_thumbnails(
        out, entries, videos, cfg.exemplar_size, cfg.workers, failures, progress=progress,
    )
    sheet = contact_sheet(out, entries, cfg.sheet_words, cfg.exemplar_size) if cfg.sheet_words else None
    log.info("exemplars: %d of %d words have a thumbnail (%d failed)%s", written, len(entries), failed,
             f"; contact sheet {sheet}" if sheet else "")
    return {"written": written, "failed": failed, "sheet": sheet.name if sheet else None, "manifest": str(source)}


def build_vocab(features_dir: str | Path, vocab_dir: str | Path, cfg: VocabConfig, manifest: str | Path | None = None) -> dict:
    """Run the vocab stage: FEATURES -> VOCAB (codebook.npz, vocab.json, exemplars). Returns vocab.json's content."""
    features_dir = Path(features_dir)
    if not features_dir.is_dir():
        raise InputError(f"{features_dir}: features folder not found")
    out = prepare_output_dir(vocab_dir)
    cfgmod.save(cfg, out / "config.yaml")
    info = extract_info(features_dir)
    gpu = faiss_gpu_wanted(cfg.device)
    with FailureLog(out / failures_name()) as failures:
        listing = scan_features(features_dir, failures)
        if not listing:
            raise StageError(f"{features_dir}: no readable feature files (<video_id>.npy); run 'videobert extract'")
        key = build_key(cfg, features_dir, listing)
        summary = _previous_build(out, key)
        if summary is not None:
            log.info("%s: codebook already built from the same features and settings; kept", out)
            log.info("quantisation MSE %s", quantisation_text(summary["quantisation"]))
            already = {record["id"] for record in _records(failures)}
            for record in summary.get("failed_videos", []):
                if record["id"] not in already:
                    failures.record(record["id"], record["reason"])
            entries = read_json(out / "exemplars.json", "exemplars.json")
        else:
            summary, entries = _build(features_dir, out, cfg, listing, info, gpu, failures, key)
        summary["exemplars"] = _exemplars(out, cfg, entries, info, Path(manifest) if manifest else None, failures)
        atomic_write_json(out / "vocab.json", summary)
    return summary


# ---------------------------------------------------------------------------------------------
# tokenize


def _valid_tokens(path: Path, clips: int, vocab_size: int) -> bool:
    """Whether ``path`` holds complete tokens for a video of ``clips`` clips."""
    try:
        tokens = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return False
    return (
        tokens.dtype == np.int32 and tokens.shape == (clips,)
        and (clips == 0 or (int(tokens.min()) >= 0 and int(tokens.max()) < vocab_size))
    )


def tokenize_folder(
    features_dir: str | Path,
    vocab_dir: str | Path,
    tokens_dir: str | Path,
    cfg: TokenizeConfig,
    shard: Shard = Shard(),
    overwrite: bool = False,
) -> dict:
    """Run the tokenize stage for this worker's share of the videos (``shard`` subdivided among
    torchrun ranks). Returns counts: videos, tokenized, skipped, failed, clips, seconds."""
    began = time.perf_counter()
    features_dir, vocab_dir = Path(features_dir), Path(vocab_dir)
    if not features_dir.is_dir():
        raise InputError(f"{features_dir}: features folder not found")
    codebook = load(vocab_dir, device=cfg.device, batch_clips=cfg.batch_clips)
    if codebook.feature_dim != FEATURE_DIM:
        raise InputError(f"{vocab_dir}: the codebook reads {codebook.feature_dim}-d features, not {FEATURE_DIM}-d clip features")
    all_ids = list_videos(features_dir)
    if not all_ids:
        raise StageError(f"{features_dir}: no feature files (<video_id>.npy); run 'videobert extract'")
    worker = combined_shard(shard)
    mine = worker.take(all_ids, key=str)
    out = prepare_output_dir(tokens_dir)
    info = extract_info(features_dir)
    timing = {"fps": info.get("fps"), "clip_frames": info.get("clip_frames"), "clip_seconds": clip_seconds(info)}
    meta = {
        "vocab": str(vocab_dir.resolve()),
        "vocab_size": codebook.size,
        "codebook": codebook.hash,
        **{key: value for key, value in timing.items() if value is not None},  # unknown without extract.json
        "features": str(features_dir.resolve()),
    }
    meta_path = out / "tokens.json"
    if meta_path.exists():
        previous = read_json(meta_path, "tokens.json")
        if previous.get("codebook") != meta["codebook"] and not overwrite:
            raise ConfigError(
                f"{out}: holds tokens of another vocabulary ({previous.get('vocab')}, codebook {previous.get('codebook')}); "
                "pass --overwrite to retokenize every video, or write to another folder"
            )
    if overwrite:
        # Old files go before the new tokens.json appears, so no rerun can take them for current ones.
        stale = set(mine)
        if worker.index == 0:  # one worker also removes tokens of videos no longer in FEATURES
            stale |= {p.stem for p in out.glob("*.npy") if not p.name.startswith(".")} - set(all_ids)
        for video_id in stale:
            (out / f"{video_id}.npy").unlink(missing_ok=True)
    atomic_write_json(meta_path, meta)
    cfgmod.save(cfg, out / "config.yaml")
    log.info(
        "tokenizing %d of %d videos (worker %s) with %d visual words on %s",
        len(mine), len(all_ids), worker, codebook.size, codebook.device,
    )

    tokenized = skipped = clips = 0
    pending: list[tuple[str, np.ndarray]] = []
    bar = progress(total=len(mine), desc="tokenize", unit="video")

    def flush() -> None:
        nonlocal tokenized, clips
        words = codebook.tokenize_many([features for _, features in pending])
        for (video_id, features), tokens in zip(pending, words):
            atomic_save_npy(out / f"{video_id}.npy", tokens)
            tokenized += 1
            clips += len(tokens)
        bar.update(len(pending))
        pending.clear()

    with FailureLog(out / failures_name(worker.index, worker.count)) as failures, bar:
        pending_clips = 0
        for video_id in mine:
            try:
                count = clip_count(features_dir, video_id)
                if not overwrite and _valid_tokens(out / f"{video_id}.npy", count, codebook.size):
                    skipped += 1
                    bar.update(1)
                    continue
                features = load_features(features_dir, video_id)
                if not np.isfinite(features).all():
                    raise InputError(f"{feature_path(features_dir, video_id)}: features contain NaN or infinity")
            except InputError as exc:
                failures.record(video_id, str(exc))
                bar.update(1)
                continue
            pending.append((video_id, features))
            pending_clips += len(features)
            if pending_clips >= cfg.batch_clips:
                flush()
                pending_clips = 0
        if pending:
            flush()
        failed = failures.count
    seconds = time.perf_counter() - began
    if mine and failed and not tokenized and not skipped:
        raise StageError(f"all {failed} videos failed; see {out / failures_name(worker.index, worker.count)}")
    return {"videos": len(mine), "tokenized": tokenized, "skipped": skipped, "failed": failed, "clips": clips, "seconds": seconds}
