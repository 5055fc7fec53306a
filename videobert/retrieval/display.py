"""Pictures of results: filmstrips of retrieved segments and contact sheets of hits. Images are
uint8 RGB arrays [H, W, 3] (or PIL images for sheets); sheets are :func:`videobert.media.contact_sheet`;
a visual word's exemplar is :func:`videobert.vocab.stage.exemplar_images`."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from videobert.errors import InputError
from videobert.media import contact_sheet, frames_across, grab_frame, probe
from videobert.search import Hit

log = logging.getLogger(__name__)


def filmstrip(path: str | Path, start: float, end: float, frames: int = 6) -> np.ndarray:
    """``frames`` evenly spaced frames of ``[start, end)`` seconds of a video, uint8 [frames, H, W, 3]
    (a span past the end is cut to the video). The video is read as the stages read videos
    (:func:`videobert.media.probe` and :func:`videobert.media.grab_frame`): a regular file only,
    through the demuxers of :data:`videobert.media.DEMUXERS`; anything else is an :class:`InputError`."""
    info = probe(path)
    start = max(0.0, float(start))
    last = float(end)
    if math.isfinite(info.duration):
        last = min(last, info.duration)
    if not math.isfinite(last) or last <= start:
        raise InputError(f"{path}: no frame in {start:.2f}-{float(end):.2f} s")
    return frames_across(path, start, last, frames)


def hits_sheet(hits: Sequence[Hit], video_path: Callable[[str], Path | None], size: int = 160) -> Image.Image:
    """Contact sheet of retrieval hits: the middle frame of each (its file from ``video_path(id)``),
    captioned with rank, video, span and score. A hit whose video cannot be read gets a grey tile
    (logged)."""
    images: list[np.ndarray | None] = []
    for hit in hits:
        path = video_path(hit.video_id)
        try:
            if path is None:
                raise InputError(f"{hit.video_id}: no video file is recorded for it")
            images.append(grab_frame(path, (hit.start + hit.end) / 2))
        except InputError as exc:
            log.warning("contact sheet: %s", exc)
            images.append(None)
    captions = [f"#{h.rank} {h.video_id}\n{h.start:.1f}-{h.end:.1f}s p={h.score:.3f}" for h in hits]
    return contact_sheet(images, captions, size)
