"""The vocab and tokenize stages: FEATURES -> VOCAB -> TOKENS (docs/formats.md), and the layout
of both folders.

``run`` (``videobert vocab``) creates VOCAB, writes ``config.yaml``, owns its failure log, samples
clips, fits the normalisation, grows the tree (:mod:`~videobert.vocab.kmeans`), saves the
codebook, reports its quantisation error against flat k-means, writes the exemplars and
``vocab.json``. A rerun whose codebook settings (:class:`CodebookConfig`) and feature files are
unchanged keeps the codebook and only finishes the missing exemplars.

``run_tokenize`` (``videobert tokenize``) writes every video's word sequence
(``TOKENS/<video_id>.npy``, int32 [n_clips]), shardable by ``--shard I/N`` and torchrun rank like
extract, and resumable: a video whose tokens are already there and valid is skipped.
``tokens.json`` records the codebook's hash; a folder made with another vocabulary is refused
unless ``overwrite`` is given, so that token files of two vocabularies never mix.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from videobert import config as cfgmod
from videobert.config import field
from videobert.errors import ConfigError, InputError, StageError
from videobert.features.s3d import FEATURE_DIM
from videobert.features.settings import clip_seconds, require_clip_seconds
from videobert.features.stage import clip_count, extract_info, feature_path, list_videos, load_features
from videobert.logs import progress
from videobert.manifest import read_manifest
from videobert.media import save_jpeg
from videobert.readers import Field, check_fields, read_image
from videobert.runtime import DeviceName, Shard, combined_shard
from videobert.store import (
    FailureLog, StageSummary, atomic_save_npy, atomic_write_json, failures_name, library_versions, prepare_output_dir,
    load_npy, read_json,
)
from videobert.vocab.codebook import Codebook
from videobert.vocab.exemplars import exemplar_entries, exemplar_sheet, grab_exemplars, nearest_clips
from videobert.vocab.kmeans import Init, faiss_gpu_wanted, flat_comparison, hierarchical_kmeans, quantisation_mse
from videobert.vocab.normalise import Normalise, fit_normalisation
from videobert.vocab.sample import read_sample, scan_features

log = logging.getLogger(__name__)


@dataclass
class CodebookConfig:
    """The settings that decide the codebook: the sample, the tree, the normalisation. A rerun that
    changes none of them, on the same feature files, keeps the codebook."""

    k: int = field(12, help="children of every split node (the paper: 12)")
    depth: int = field(4, help="levels of the tree (the paper: 4): at most k^depth visual words")
    sample: int = field(1_000_000, help="clips the tree is trained on: a seeded uniform sample when the corpus has more")
    niter: int = field(20, help="k-means iterations at every node")
    seed: int = field(0, help="random seed of the sample, the subsets and the initialisation (same seed, same codebook)")
    init: Init = field("kmeans++", help="initialisation of every node's k-means: kmeans++ (seeded, computed here) or random (faiss's own)")
    min_points_per_centroid: int = field(
        39, help="a node with fewer than k x this many clips (or fewer than k) is not split: it becomes a word (faiss's minimum: 39)"
    )
    max_points_per_centroid: int = field(
        256, help="a node with more clips than k x this fits its k-means on a seeded subset of that size (faiss's default: 256)"
    )
    normalise: Normalise = field(
        "standardise", help="before clustering: standardise (per-dimension z-score from the sample), l2 (unit length), none"
    )
    center_per_video: bool = field(False, help="subtract each video's mean feature first (removes what is constant within a video)")
    pca_dim: int = field(0, help="PCA-whiten to this many dimensions after normalising (0: off)")
    fit_split: Literal["all", "train"] = field(
        "all", neutral=True,
        help="videos the normalisation and the tree are fitted on: all (every video of FEATURES) or train (only the "
             "manifest's train videos, so nothing of val or test is seen upstream; every video needs its split in the "
             "manifest)")


@dataclass
class VocabConfig(CodebookConfig):
    """Configuration of ``videobert vocab``: the codebook's settings, then where it is computed and
    what is reported beside it."""

    device: DeviceName = field(
        "auto", help="faiss GPU for large nodes and the flat comparison: auto (when faiss has one), cpu, cuda (small nodes always use CPU threads)"
    )
    flat_compare_max_words: int = field(
        4096, help="compare with flat faiss k-means of as many centroids when there are at most this many words (0: never)"
    )
    flat_sample: int = field(100_000, help="clips of the sample the flat k-means comparison trains and measures on")
    exemplars: bool = field(True, help="write each word's exemplar thumbnail and the contact sheet (needs the videos)")
    exemplar_size: int = field(96, help="side of exemplar thumbnails, pixels")
    sheet_words: int = field(64, help="most frequent words shown on the contact sheet")
    workers: int = field(0, speed_only=True, help="threads for small k-means nodes and exemplar frame grabs (0: one per CPU core)")

    def check(self) -> None:
        if self.k < 2:
            raise ConfigError("k: need at least 2 children per node")
        if self.depth < 1:
            raise ConfigError("depth: need at least 1 level")
        if self.k**self.depth >= 2**31:
            raise ConfigError(f"k^depth = {self.k ** self.depth}: too many visual words (int32 ids)")
        if self.sample < 1:
            raise ConfigError("sample: need at least 1 clip")
        if self.niter < 1:
            raise ConfigError("niter: need at least 1 iteration")
        if self.min_points_per_centroid < 1:
            raise ConfigError("min_points_per_centroid: need at least 1")
        if self.max_points_per_centroid < self.min_points_per_centroid:
            raise ConfigError("max_points_per_centroid: must be at least min_points_per_centroid")
        if self.pca_dim < 0:
            raise ConfigError("pca_dim: need 0 (off) or a positive number of dimensions")
        if self.flat_compare_max_words < 0 or self.flat_sample < 1:
            raise ConfigError("flat_compare_max_words: need >= 0; flat_sample: need >= 1")
        if self.exemplar_size < 16 or self.sheet_words < 0 or self.workers < 0:
            raise ConfigError("exemplar_size: need >= 16; sheet_words, workers: need >= 0")


@dataclass
class TokenizeConfig:
    """Configuration of ``videobert tokenize``."""

    device: DeviceName = field("auto", help="where the tree is descended: auto (CUDA when available), cpu, cuda")
    batch_clips: int = field(262_144, speed_only=True, help="clips descended together (several videos share a batch)")

    def check(self) -> None:
        if self.batch_clips < 1:
            raise ConfigError("batch_clips: need at least 1")


# --------------------------------------------------------------------------------------------- vocab
def run(features_dir: str | Path, out_dir: str | Path, cfg: VocabConfig, manifest: str | Path | None = None) -> StageSummary:
    """FEATURES -> VOCAB (codebook.npz, vocab.json, exemplars). ``manifest``: where the videos are,
    for the exemplar frames (default: the one ``extract.json`` records). ``details`` is vocab.json."""
    began = time.perf_counter()
    features_dir = Path(features_dir)
    if not features_dir.is_dir():
        raise InputError(f"{features_dir}: features folder not found", "missing")
    out = prepare_output_dir(out_dir)
    cfgmod.save(cfg, out / "config.yaml")
    info = extract_info(features_dir)
    gpu = faiss_gpu_wanted(cfg.device)
    with FailureLog(out / failures_name()) as failures:
        listing, unreadable = scan_features(features_dir)
        for video_id, error in unreadable:
            failures.record_error(video_id, error)
        if not listing:
            raise StageError(f"{features_dir}: no readable feature files (<video_id>.npy); run 'videobert extract'")
        if not sum(count for _, count in listing):
            raise StageError(f"{features_dir}: the feature files hold no clips")
        if cfg.fit_split != "all":
            listing = fit_videos(listing, cfg.fit_split, Path(manifest) if manifest else None, info, features_dir)
        key = build_key(cfg, features_dir, listing)
        summary = _previous_build(out, key)
        if summary is not None:
            try:
                entries = read_exemplars(out / "exemplars.json", summary["vocab_size"])
            except InputError as exc:
                log.warning("%s; building the codebook again", exc)
                summary = None
        if summary is not None:
            log.info("%s: codebook already built from the same features and settings; kept", out)
            log.info("quantisation MSE %s", quantisation_text(summary["quantisation"]))
            already = {video_id for video_id, _ in unreadable}
            for record in summary.get("failed_videos", []):
                if record["id"] not in already:
                    failures.record(record["id"], record["reason"], record.get("kind", "unreadable"))
        else:
            summary, entries = _build(features_dir, out, cfg, listing, unreadable, info, gpu, failures, key)
        summary["exemplars"] = _exemplars(out, cfg, entries, info, Path(manifest) if manifest else None, failures)
        atomic_write_json(out / "vocab.json", summary)
        failed = failures.count
    message = (f"{summary['vocab_size']} visual words (per level {summary['words_per_level']}) from "
               f"{summary['sample']['clips']} clips of {summary['sample']['videos']} videos")
    return StageSummary("vocab", out, 1, 0, failed, time.perf_counter() - began, message, summary)


def fit_videos(listing: list[tuple[str, int]], split: str, manifest: Path | None, info: dict,
               features_dir: Path) -> list[tuple[str, int]]:
    """The videos of ``listing`` that the manifest (``manifest``, else the one ``extract.json``
    records) puts in ``split``. A manifest that leaves a video's split to the corpus stage's draw
    is refused: the draw comes after the vocabulary, which would see the videos it puts in val and
    test."""
    source = manifest or info.get("manifest")
    if not source:
        raise ConfigError(f"fit_split: {split} needs the manifest that says each video's split (pass --manifest; "
                          f"{features_dir}/extract.json records none)")
    entries = read_manifest(source)
    unsplit = [entry.video_id for entry in entries if entry.split is None]
    if unsplit:
        raise ConfigError(f"fit_split: {split}: {source} gives {len(unsplit)} video(s) no split (e.g. {unsplit[0]!r}), "
                          "and the corpus stage draws theirs only after the vocabulary is fitted: give every video "
                          "its split in the manifest, or use fit_split: all")
    splits = {entry.video_id: entry.split for entry in entries}
    kept = [(video_id, count) for video_id, count in listing if splits.get(video_id) == split]
    if not kept:
        raise StageError(f"fit_split: {split}: none of the {len(listing)} videos of {features_dir} is in the {split} split "
                         f"of {source}")
    log.info("fitting on the %s split: %d of %d videos", split, len(kept), len(listing))
    return kept


def build_key(cfg: VocabConfig, features_dir: str | Path, listing: list[tuple[str, int]]) -> str:
    """Hash of what decides the codebook: the settings of :class:`CodebookConfig` and the feature
    files (ids, clip counts, sizes, modification times)."""
    files = []
    for video_id, count in listing:
        stat = feature_path(features_dir, video_id).stat()
        files.append([video_id, count, stat.st_size, stat.st_mtime_ns])
    return cfgmod.config_hash({"settings": cfgmod.settings(cfg, CodebookConfig), "files": files})


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
    thumbnails = out / "exemplars"
    for path in thumbnails.glob("*.jpg") if thumbnails.is_dir() else []:
        if path.stem.isdigit() and path.is_file():  # <word>.jpg: what this stage writes, nothing else
            path.unlink()
    with contextlib.suppress(OSError):
        thumbnails.rmdir()  # only when empty


def _build(features_dir: Path, out: Path, cfg: VocabConfig, listing, unreadable, info: dict, gpu: bool,
           failures: FailureLog, key: str) -> tuple[dict, list[dict]]:
    began = time.perf_counter()
    _clear_outputs(out)
    sample, failed = read_sample(features_dir, listing, cfg.sample, cfg.seed, cfg.center_per_video)
    for video_id, error in failed:
        failures.record_error(video_id, error)
    if not len(sample.features):
        raise StageError(f"{features_dir}: no usable features (see failures.jsonl)")
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
    codebook.save(out / "codebook.npz")
    build_seconds = time.perf_counter() - began
    words = tree.node_word[leaves]
    vectors = codebook.word_vectors()
    quantisation = {"clips": len(z), "hierarchical_mse": quantisation_mse(z, words, vectors)}
    quantisation["flat"] = flat_comparison(z, words, vectors, cfg.niter, cfg.seed, cfg.flat_sample,
                                           cfg.flat_compare_max_words, gpu)
    log.info("quantisation MSE %s", quantisation_text(quantisation))

    rows, distances = nearest_clips(z, words, vectors)
    counts = codebook.word_counts
    entries = exemplar_entries(rows, distances, counts, sample.video_ids, sample.video, sample.clip, clip_seconds(info))
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
            "fit_split": cfg.fit_split,
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
        "failed_videos": [{"id": video_id, "reason": str(error), "kind": error.kind}
                          for video_id, error in [*unreadable, *failed]],
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


def _exemplars(out: Path, cfg: VocabConfig, entries: list[dict], info: dict, manifest: Path | None,
               failures: FailureLog) -> dict:
    """Write the thumbnails that are missing (a rerun resumes) and the contact sheet; vocab.json's
    ``exemplars`` entry."""
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

    def present(entry: Mapping) -> bool:  # written earlier, at this size (anything else is written again)
        try:
            thumb = read_image(exemplar_path(out, entry["word"]), "thumbnail")
        except InputError:
            return False
        return thumb.shape[:2] == (cfg.exemplar_size, cfg.exemplar_size)

    todo = [entry for entry in entries if not present(entry)]
    written, failed = len(entries) - len(todo), 0
    for entry, frame, error in grab_exemplars(todo, videos, cfg.exemplar_size, cfg.workers, progress=progress):
        if error is not None:
            failures.record_error(f"exemplar-{entry['word']}", error, video_id=entry["video_id"], seconds=entry["seconds"])
            failed += 1
            continue
        save_jpeg(Image.fromarray(frame), exemplar_path(out, entry["word"]))
        written += 1
    sheet = _contact_sheet(out, entries, cfg.sheet_words, cfg.exemplar_size) if cfg.sheet_words else None
    log.info("exemplars: %d of %d words have a thumbnail (%d failed)%s", written, len(entries), failed,
             f"; contact sheet {sheet}" if sheet else "")
    return {"written": written, "failed": failed, "sheet": sheet.name if sheet else None, "manifest": str(source)}


def _contact_sheet(out: Path, entries: list[dict], words: int, size: int) -> Path | None:
    """``exemplars.jpg``: the thumbnails of the ``words`` most frequent words that have one."""
    ranked = sorted(entries, key=lambda e: (-e["count"], e["word"]))
    tiles = [e for e in ranked if exemplar_path(out, e["word"]).exists()][:words]
    if not tiles:
        return None
    thumbnails = []
    for entry in tiles:
        try:
            thumbnails.append(Image.fromarray(read_image(exemplar_path(out, entry["word"]), "thumbnail")).resize((size, size)))
        except InputError as exc:
            log.warning("contact sheet: %s", exc)
            thumbnails.append(None)
    return save_jpeg(exemplar_sheet(thumbnails, tiles, size), out / "exemplars.jpg")


def exemplar_path(vocab_dir: str | Path, word: int) -> Path:
    """Where a word's exemplar thumbnail is in a VOCAB folder (``word`` must be an int: a name is
    never built from text read back from a file)."""
    if isinstance(word, bool) or not isinstance(word, (int, np.integer)) or word < 0:
        raise TypeError(f"a visual word is a non-negative int, not {word!r}")
    return Path(vocab_dir) / "exemplars" / f"{int(word)}.jpg"


def exemplar_images(vocab_dir: str | Path | None, words: Sequence[int]) -> list[np.ndarray | None]:
    """Each word's exemplar thumbnail (uint8 [S, S, 3]), None where the vocabulary has none."""
    images: list[np.ndarray | None] = []
    for word in words:
        path = exemplar_path(vocab_dir, int(word)) if vocab_dir is not None else None
        try:
            images.append(read_image(path, "thumbnail") if path is not None and path.exists() else None)
        except InputError as exc:
            log.warning("%s", exc)
            images.append(None)
    return images


def read_exemplars(path: Path, vocab_size: int) -> list[dict]:
    """``exemplars.json`` as written by the vocab stage; an entry that is not what it wrote (a word
    that is not an id of the vocabulary, a video id that is not a string, ...) raises
    :class:`InputError` naming the file and the entry."""
    entries = read_json(path, "exemplars.json")
    if not isinstance(entries, list):
        raise InputError(f"{path}: expected a list of exemplar entries")
    for index, entry in enumerate(entries):
        ok = (isinstance(entry, dict) and type(entry.get("word")) is int and 0 <= entry["word"] < vocab_size
              and isinstance(entry.get("video_id"), str) and type(entry.get("count")) is int
              and type(entry.get("clip")) is int
              and (entry.get("seconds") is None or type(entry["seconds"]) in (int, float)))
        if not ok:
            raise InputError(f"{path}: entry {index} is not an exemplar of this vocabulary ({str(entry)[:80]})")
    return entries


def load(vocab_dir: str | Path, device: str = "auto", batch_clips: int = 262_144) -> Codebook:
    """The visual vocabulary of a ``videobert vocab`` folder; tokenizes on ``device`` (auto: CUDA
    when available)."""
    path = Path(vocab_dir) / "codebook.npz"
    if not path.exists():
        raise InputError(f"{vocab_dir}: not a vocabulary folder (no codebook.npz; run 'videobert vocab')", "missing")
    return Codebook.load(path, device, batch_clips)


def load_centroids(vocab_dir: str | Path) -> np.ndarray:
    """Word vectors float32 [V, D] of a VOCAB folder (each word's centroid)."""
    return np.asarray(load(vocab_dir, device="cpu").word_vectors(), dtype=np.float32)


# --------------------------------------------------------------------------------------------- tokenize
def run_tokenize(
    features_dir: str | Path,
    vocab_dir: str | Path,
    out_dir: str | Path,
    cfg: TokenizeConfig,
    shard: Shard = Shard(),
    overwrite: bool = False,
) -> StageSummary:
    """FEATURES + VOCAB -> TOKENS for this worker's share of the videos (``shard`` subdivided among
    torchrun ranks); ``overwrite`` retokenizes every video, also in a folder of another vocabulary.
    ``details``: ``videos`` (this worker's), ``clips`` (tokenized now)."""
    began = time.perf_counter()
    features_dir, vocab_dir = Path(features_dir), Path(vocab_dir)
    if not features_dir.is_dir():
        raise InputError(f"{features_dir}: features folder not found", "missing")
    codebook = load(vocab_dir, device=cfg.device, batch_clips=cfg.batch_clips)
    if codebook.feature_dim != FEATURE_DIM:
        raise InputError(f"{vocab_dir}: the codebook reads {codebook.feature_dim}-d features, not {FEATURE_DIM}-d clip features")
    all_ids = list_videos(features_dir)
    if not all_ids:
        raise StageError(f"{features_dir}: no feature files (<video_id>.npy); run 'videobert extract'")
    worker = combined_shard(shard)
    mine = worker.take(all_ids, key=str)
    out = prepare_output_dir(out_dir)
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
    ours = meta_path.exists()  # only a folder this stage wrote has tokens of its own to remove
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
        if worker.index == 0 and ours:  # one worker also removes tokens of videos no longer in FEATURES
            stale |= {p.stem for p in out.glob("*.npy") if not p.name.startswith(".")} - set(all_ids)
        for video_id in stale:
            token_path(out, video_id).unlink(missing_ok=True)
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
            atomic_save_npy(token_path(out, video_id), tokens)
            tokenized += 1
            clips += len(tokens)
        bar.update(len(pending))
        pending.clear()

    failures_file = out / failures_name(worker.index, worker.count)
    with FailureLog(failures_file) as failures, bar:
        pending_clips = 0
        for video_id in mine:
            try:
                count = clip_count(features_dir, video_id)
                if not overwrite and _valid_tokens(token_path(out, video_id), count, codebook.size):
                    skipped += 1
                    bar.update(1)
                    continue
                features = load_features(features_dir, video_id)
                if not np.isfinite(features).all():
                    raise InputError(f"{feature_path(features_dir, video_id)}: features contain NaN or infinity", "non_finite")
            except InputError as exc:
                failures.record_error(video_id, exc)
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
        raise StageError(f"all {failed} videos failed; see {failures_file}")
    rate = clips / seconds if seconds > 0 else 0.0
    message = (f"{len(mine)} videos: {tokenized} tokenized ({clips} clips, {rate:.0f} clips/s), {skipped} already done, "
               f"{failed} failed in {seconds:.1f} s")
    return StageSummary("tokenize", out, tokenized, skipped, failed, seconds, message, {"videos": len(mine), "clips": clips})


def token_path(tokens_dir: str | Path, video_id: str) -> Path:
    return Path(tokens_dir) / f"{video_id}.npy"


def _valid_tokens(path: Path, clips: int, vocab_size: int) -> bool:
    """Whether ``path`` holds complete tokens for a video of ``clips`` clips."""
    try:
        tokens = load_npy(path, "tokens")
    except InputError:
        return False
    return (
        tokens.dtype == np.int32 and tokens.shape == (clips,)
        and (clips == 0 or (int(tokens.min()) >= 0 and int(tokens.max()) < vocab_size))
    )


def load_tokens(tokens_dir: str | Path, video_ids: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """``{video_id: int array [n_clips]}`` of visual words (0 … V-1) from a tokenize folder: of
    every video, or of those of ``video_ids`` that have them. Each file must hold a 1-d integer
    array, its words inside the ``vocab_size`` that ``tokens.json`` records: else an
    :class:`InputError` naming the file."""
    tokens_dir = Path(tokens_dir)
    if not (tokens_dir / "tokens.json").exists():
        raise InputError(f"{tokens_dir}: not a tokens folder (no tokens.json; run 'videobert tokenize')", "missing")
    meta_path = tokens_dir / "tokens.json"
    meta = check_fields(read_json(meta_path, "tokens.json"), meta_path, TOKENS_FIELDS)
    if video_ids is not None:
        paths = [token_path(tokens_dir, v) for v in sorted(set(video_ids))]
        paths = [p for p in paths if p.is_file()]
    else:
        paths = [p for p in sorted(tokens_dir.glob("*.npy")) if not p.name.startswith(".")]
    return {path.stem: checked_words(path, meta.get("vocab_size")) for path in paths}


def checked_words(path: Path, vocab_size: int | None) -> np.ndarray:
    """The visual words of one ``.npy`` file: a 1-d integer array, each word in ``0 … vocab_size-1``
    (when the size is known); anything else is an :class:`InputError` naming the file."""
    words = load_npy(path, "visual words")
    if words.ndim != 1 or words.dtype.kind not in "iu":
        raise InputError(f"{path}: visual words must be a 1-d integer array, not {words.dtype} {list(words.shape)}")
    if vocab_size is not None and words.size and (int(words.min()) < 0 or int(words.max()) >= vocab_size):
        raise InputError(f"{path}: visual words outside 0 … {vocab_size - 1} (found {int(words.min())} … "
                         f"{int(words.max())}): another vocabulary's words, or a damaged file")
    return words


# the fields of tokens.json that readers use, by type and bounds (the clip length: clip_seconds)
TOKENS_FIELDS = {
    "vocab_size": Field("int", 1, 10_000_000, required=False),
    "vocab": Field("str", required=False, nullable=True),
    "codebook": Field("str", required=False, nullable=True),
}


def tokens_meta(tokens_dir: str | Path) -> dict:
    """``tokens.json`` of a tokenize folder: vocab, vocab_size, fps, clip_frames, clip_seconds."""
    path = Path(tokens_dir) / "tokens.json"
    if not path.exists():
        raise InputError(f"{path}: not found (run 'videobert tokenize')", "missing")
    return read_json(path, "tokens.json")


@dataclass(frozen=True)
class TokensInfo:
    """What ``tokens.json`` says about a TOKENS folder."""

    folder: Path
    vocab: str | None
    vocab_size: int
    clip_seconds: float
    codebook: str | None = None


def read_tokens_info(tokens_dir: str | Path) -> TokensInfo:
    """``tokens.json`` of a TOKENS folder, checked: the vocabulary size and clip length it records."""
    tokens_dir = Path(tokens_dir)
    meta = tokens_meta(tokens_dir)
    where = tokens_dir / "tokens.json"
    check_fields(meta, where, {**TOKENS_FIELDS, "vocab_size": Field("int", 1, 10_000_000)})
    seconds = require_clip_seconds(meta, where)
    vocab, codebook = meta.get("vocab"), meta.get("codebook")
    return TokensInfo(tokens_dir, vocab, meta["vocab_size"], seconds, codebook or None)


def video_tokens(info: TokensInfo, video_id: str) -> np.ndarray:
    """The visual words (int64 ``[n_clips]``) of one video; raises :class:`InputError` with the reason."""
    path = token_path(info.folder, video_id)
    if not path.exists():
        raise InputError(f"no visual words in {info.folder} (tokenize failed or did not include this video)", "missing")
    return checked_words(path, info.vocab_size).astype(np.int64)
