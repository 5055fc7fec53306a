"""The clips a vocabulary is trained on: a seeded uniform sample of a FEATURES folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videobert.errors import InputError
from videobert.features.s3d import FEATURE_DIM
from videobert.features.stage import clip_count, feature_path, list_videos, mapped_features
from videobert.logs import progress
from videobert.vocab.normalise import video_mean

Failure = tuple[str, InputError]  # (video id, what is wrong with its features)


@dataclass
class ClipSample:
    """The clips the vocabulary is trained on, and where each comes from."""

    features: np.ndarray  # float32 [n, F], centred per video when asked
    video_ids: list[str]  # the corpus's videos (indexed by ``video``)
    video: np.ndarray  # int32 [n]
    clip: np.ndarray  # int32 [n]: clip index within its video
    corpus_clips: int


def scan_features(features_dir: str | Path) -> tuple[list[tuple[str, int]], list[Failure]]:
    """``(video_id, n_clips)`` of every readable feature file, and the unreadable ones."""
    listing, failures = [], []
    for video_id in list_videos(features_dir):
        try:
            listing.append((video_id, clip_count(features_dir, video_id)))
        except InputError as exc:
            failures.append((video_id, exc))
    return listing, failures


def sample_positions(total: int, sample: int, seed: int) -> np.ndarray:
    """Sorted positions (int64) of a uniform sample of ``sample`` of ``total`` items without
    replacement, drawn with ``seed`` — all of them when there are no more than ``sample``. Memory
    is proportional to the sample, not to ``total``: positions are drawn with replacement, the
    repeats topped up, and any excess dropped at random (each step treats every position alike,
    so every subset of that size is equally likely)."""
    if total <= sample:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    picked = np.unique(rng.integers(0, total, size=sample))
    while picked.size < sample:
        picked = np.union1d(picked, rng.integers(0, total, size=2 * (sample - picked.size) + 16))
    if picked.size > sample:
        picked = np.sort(rng.choice(picked, size=sample, replace=False))
    return picked.astype(np.int64)


def read_sample(
    features_dir: str | Path, listing: list[tuple[str, int]], sample: int, seed: int, center_per_video: bool
) -> tuple[ClipSample, list[Failure]]:
    """All clips of the corpus, or a uniform sample of ``sample`` of them drawn with ``seed``, and
    the videos left out because their file cannot be read or holds NaN or infinity.

    Only the sampled rows are read: each touched feature file is memory-mapped and its rows read
    in file order, and only they are checked for NaN and infinity. With ``center_per_video`` each
    clip has its video's mean (over all the video's clips) subtracted, so a touched video is read
    whole.
    """
    video_ids = [video_id for video_id, _ in listing]
    offsets = np.concatenate([[0], np.cumsum([count for _, count in listing])]).astype(np.int64)
    total = int(offsets[-1])
    picked = sample_positions(total, sample, seed)
    video = np.searchsorted(offsets, picked, side="right") - 1
    clip = picked - offsets[video]
    features = np.empty((len(picked), FEATURE_DIM), np.float32)
    keep = np.ones(len(picked), bool)
    failures: list[Failure] = []
    starts = np.flatnonzero(np.r_[True, video[1:] != video[:-1]])
    stops = np.r_[starts[1:], len(picked)]
    for start, stop in progress(list(zip(starts, stops)), desc="read sample", unit="video"):
        video_id = video_ids[video[start]]
        try:
            array = mapped_features(features_dir, video_id)
            rows = np.asarray(array[clip[start:stop]], dtype=np.float32)
            if center_per_video:
                whole = np.asarray(array, dtype=np.float32)
                if not np.isfinite(whole).all():
                    raise InputError(f"{feature_path(features_dir, video_id)}: features contain NaN or infinity", "non_finite")
                rows = rows - video_mean(whole)
            elif not np.isfinite(rows).all():
                raise InputError(f"{feature_path(features_dir, video_id)}: features contain NaN or infinity", "non_finite")
        except InputError as exc:
            failures.append((video_id, exc))
            keep[start:stop] = False
            continue
        features[start:stop] = rows
    sample_clips = ClipSample(features[keep], video_ids, video[keep].astype(np.int32), clip[keep].astype(np.int32), total)
    return sample_clips, failures
