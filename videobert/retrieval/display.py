"""Pictures of results: filmstrips of retrieved segments, contact sheets of hits, visual-word
exemplars. Images are uint8 RGB arrays [H, W, 3] (or PIL images for sheets); sheets are
:func:`videobert.media.contact_sheet`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from pytorchvideo.data.encoded_video import EncodedVideo

from videobert.errors import InputError
from videobert.manifest import read_manifest
from videobert.media import contact_sheet, grab_frame
from videobert.retrieval.gallery import Hit, manifest_path
from videobert.vocab.stage import exemplar_path

log = logging.getLogger(__name__)


def video_paths(corpus_dir: str | Path) -> dict[str, Path]:
    """``{video_id: video file}`` from the manifest the corpus was built from."""
    return {entry.video_id: entry.video for entry in read_manifest(manifest_path(corpus_dir))}


def filmstrip(path: str | Path, start: float, end: float, frames: int = 6) -> np.ndarray:
    """``frames`` evenly spaced frames of ``[start, end)`` seconds of a video, uint8 [frames, H, W, 3]
    (decoded with pytorchvideo's ``EncodedVideo.get_clip``; a span past the end is cut to the video)."""
    try:
        video = EncodedVideo.from_path(str(path), decoder="pyav", decode_audio=False)
    except Exception as exc:  # noqa: BLE001 - pytorchvideo raises bare RuntimeError/av errors
        raise InputError(f"{path}: cannot open the video ({exc})") from None
    try:
        end = min(float(end), float(video.duration))
        clip = video.get_clip(max(0.0, float(start)), end)["video"]  # float [3, T, H, W]
    finally:
        video.close()
    if clip is None or clip.shape[1] == 0:
        raise InputError(f"{path}: no frame in {start:.2f}-{end:.2f} s")
    picks = np.linspace(0, clip.shape[1] - 1, frames).round().astype(int)
    return clip[:, picks].permute(1, 2, 3, 0).clamp(0, 255).byte().numpy()


def exemplar_images(vocab_dir: str | Path | None, words: Sequence[int]) -> list[np.ndarray | None]:
    """Each word's exemplar thumbnail (uint8 [S, S, 3]), None where the vocabulary has none."""
    images: list[np.ndarray | None] = []
    for word in words:
        path = exemplar_path(vocab_dir, int(word)) if vocab_dir is not None else None
        if path is not None and path.is_file():
            images.append(np.asarray(Image.open(path).convert("RGB")))
        else:
            images.append(None)
    return images


def hits_sheet(hits: Sequence[Hit], paths: dict[str, Path], size: int = 160) -> Image.Image:
    """Contact sheet of retrieval hits: the middle frame of each, captioned with rank, video, span
    and score. A hit whose video cannot be read gets a grey tile (logged)."""
    images: list[np.ndarray | None] = []
    for hit in hits:
        path = paths.get(hit.video_id)
        try:
            if path is None:
                raise InputError(f"{hit.video_id}: not in the corpus manifest")
            images.append(grab_frame(path, (hit.start + hit.end) / 2))
        except InputError as exc:
            log.warning("contact sheet: %s", exc)
            images.append(None)
    captions = [f"#{h.rank} {h.video_id}\n{h.start:.1f}-{h.end:.1f}s p={h.score:.3f}" for h in hits]
    return contact_sheet(images, captions, size)
