"""Clip features: S3D activations, one 1024-d vector per 1.5 s clip (see docs/formats.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videobert.errors import InputError

FEATURE_DIM = 1024


def feature_path(features_dir: str | Path, video_id: str) -> Path:
    return Path(features_dir) / f"{video_id}.npy"


def load_features(features_dir: str | Path, video_id: str) -> np.ndarray:
    """float16 ``[n_clips, 1024]`` features of one video."""
    path = feature_path(features_dir, video_id)
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no features for video {video_id!r}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable features ({exc})") from None
    if array.ndim != 2 or array.shape[1] != FEATURE_DIM:
        raise InputError(f"{path}: expected shape [n_clips, {FEATURE_DIM}], got {list(array.shape)}")
    return array


def list_videos(features_dir: str | Path) -> list[str]:
    """Ids of the videos that have features in ``features_dir``, sorted."""
    return sorted(p.stem for p in Path(features_dir).glob("*.npy") if not p.name.startswith("."))
