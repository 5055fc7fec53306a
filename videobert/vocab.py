"""Visual words: hierarchical k-means over clip features, and per-video token sequences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from videobert.errors import InputError


def load_tokens(tokens_dir: str | Path) -> dict[str, np.ndarray]:
    """``{video_id: int array [n_clips]}`` of visual words (0 … V-1) from a tokenize folder."""
    tokens_dir = Path(tokens_dir)
    if not (tokens_dir / "tokens.json").exists():
        raise InputError(f"{tokens_dir}: not a tokens folder (no tokens.json; run 'videobert tokenize')")
    tokens = {}
    for path in sorted(tokens_dir.glob("*.npy")):
        if path.name.startswith("."):
            continue
        try:
            tokens[path.stem] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable tokens ({exc})") from None
    return tokens


def tokens_meta(tokens_dir: str | Path) -> dict:
    """``tokens.json`` of a tokenize folder: vocab, vocab_size, fps, clip_frames, clip_seconds."""
    path = Path(tokens_dir) / "tokens.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found (run 'videobert tokenize')") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None
