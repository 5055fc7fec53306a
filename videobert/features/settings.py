"""What the settings recorded beside clip features mean: the seconds a clip covers, and which
settings make two features of one kind. Read from ``FEATURES/extract.json``, ``TOKENS/tokens.json``,
a model folder's ``features.json`` and an index's ``index.json`` alike."""

from __future__ import annotations

import math
from typing import Any, Mapping

from videobert.features.s3d import RANDOM_INIT

# What two clip features must share to be of one kind — the same clips through the same network —
# so that one codebook's visual words mean the same for both (a seeded random init is named by its seed).
IDENTITY_KEYS = ("fps", "clip_frames", "size", "model", "weights")


def feature_identity(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``IDENTITY_KEYS`` (and ``init_seed`` for a random init) of recorded settings."""
    identity = {key: settings.get(key) for key in IDENTITY_KEYS}
    if settings.get("weights") == RANDOM_INIT:
        identity["init_seed"] = settings.get("init_seed")
    return identity


def clip_seconds(settings: Mapping[str, Any]) -> float | None:
    """Seconds per clip from recorded settings (``clip_seconds``, else ``clip_frames / fps``); None
    where they record neither, or a length that is not a positive finite number."""
    try:
        if settings.get("clip_seconds"):
            seconds = float(settings["clip_seconds"])
        elif settings.get("clip_frames") and settings.get("fps"):
            seconds = float(settings["clip_frames"]) / float(settings["fps"])
        else:
            return None
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None
