"""What the settings recorded beside clip features mean: the seconds a clip covers, and which
settings make two features of one kind. Read from ``FEATURES/extract.json``, ``TOKENS/tokens.json``,
a model folder's ``features.json``, a corpus's ``summary.json`` and an index's ``index.json`` alike:
:func:`clip_seconds` is the one reader of a clip's length, :func:`check_feature_settings` checks the
fields of such a file before they are used."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from videobert.errors import InputError
from videobert.features.s3d import RANDOM_INIT
from videobert.readers import Field, check_fields

MAX_CLIP_SECONDS = 3600.0  # a clip longer than an hour is no clip

# the fields of recorded feature settings, by type and bounds (others are kept as they are)
FEATURE_FIELDS = {
    "fps": Field("number", 0, 1000, above=True, required=False),
    "clip_frames": Field("int", 1, 1_000_000, required=False),
    "clip_seconds": Field("number", 0, MAX_CLIP_SECONDS, above=True, required=False, nullable=True),
    "size": Field("int", 1, 16_384, required=False),
    "model": Field("str", required=False, nullable=True),
    "weights": Field("str", required=False, nullable=True),
    "init_seed": Field("int", required=False, nullable=True),
    "precision": Field("str", required=False, nullable=True),
    "normalisation": Field("dict", required=False, nullable=True),
}


def check_feature_settings(settings: Any, source: str | Path) -> dict[str, Any]:
    """Recorded feature settings (``extract.json``, ``features.json``, ...) with their fields
    checked (:data:`FEATURE_FIELDS`): anything else is an :class:`InputError` naming ``source`` and
    the field, before a value is used."""
    return check_fields(settings, source, FEATURE_FIELDS)

# What two clip features must share to be of one kind — the same clips through the same network —
# so that one codebook's visual words mean the same for both (a seeded random init is named by its seed).
IDENTITY_KEYS = ("fps", "clip_frames", "size", "model", "weights")


def feature_identity(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``IDENTITY_KEYS`` (and ``init_seed`` for a random init) of recorded settings."""
    identity = {key: settings.get(key) for key in IDENTITY_KEYS}
    if settings.get("weights") == RANDOM_INIT:
        identity["init_seed"] = settings.get("init_seed")
    return identity


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def clip_seconds(settings: Any) -> float | None:
    """Seconds per clip from recorded settings (``clip_seconds``, else ``clip_frames / fps``); None
    where they record neither, or a length that is not a number of seconds more than 0 and at most
    ``MAX_CLIP_SECONDS`` (a string, NaN, 0 or a negative length is no length)."""
    if not isinstance(settings, Mapping):
        return None
    if settings.get("clip_seconds") is not None:
        seconds = _number(settings["clip_seconds"])
    else:
        frames, fps = _number(settings.get("clip_frames")), _number(settings.get("fps"))
        seconds = frames / fps if frames is not None and fps else None
    if seconds is None or not math.isfinite(seconds) or not 0 < seconds <= MAX_CLIP_SECONDS:
        return None
    return seconds


def require_clip_seconds(settings: Any, source: str | Path) -> float:
    """:func:`clip_seconds`, or an :class:`InputError` naming ``source`` and what it records."""
    seconds = clip_seconds(settings)
    if seconds is None:
        recorded = {key: settings.get(key) for key in ("clip_seconds", "clip_frames", "fps")} if isinstance(settings, Mapping) else settings
        raise InputError(f"{source}: clip_seconds: no clip length in {str(recorded)[:120]} (need a number of seconds "
                         f"more than 0 and at most {MAX_CLIP_SECONDS:g}, or clip_frames and fps)")
    return seconds
