"""Pictures of results: filmstrips of retrieved segments, contact sheets of hits, visual-word
exemplars. Images are uint8 RGB arrays [H, W, 3] (or PIL images for sheets)."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from videobert.errors import InputError

log = logging.getLogger(__name__)


def video_paths(corpus_dir: str | Path) -> dict[str, Path]:
    """``{video_id: video file}`` from the manifest the corpus was built from."""
    from videobert.evaluation import manifest_path
    from videobert.manifest import read_manifest

    return {entry.video_id: entry.video for entry in read_manifest(manifest_path(corpus_dir))}


def filmstrip(path: str | Path, start: float, end: float, frames: int = 6) -> np.ndarray:
    """``frames`` evenly spaced frames of ``[start, end)`` seconds of a video, uint8 [frames, H, W, 3]
    (decoded with pytorchvideo's ``EncodedVideo.get_clip``; a span past the end is cut to the video)."""
    from pytorchvideo.data.encoded_video import EncodedVideo

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
    from PIL import Image

    from videobert.exemplars import exemplar_path

    images: list[np.ndarray | None] = []
    for word in words:
        path = exemplar_path(vocab_dir, int(word)) if vocab_dir is not None else None
        if path is not None and path.is_file():
            images.append(np.asarray(Image.open(path).convert("RGB")))
        else:
            images.append(None)
    return images


def contact_sheet(images: Sequence[np.ndarray | None], captions: Sequence[str], size: int, columns: int = 5):
    """A grid of tiles ``size`` wide, each image scaled to fit ``size``×``size`` with its caption
    under it (a grey tile where the image is None); rows are as tall as their tallest image.
    Returns a PIL image."""
    from PIL import Image, ImageDraw

    columns = max(1, min(columns, len(images)))
    tiles = []
    for image in images:
        if image is None:
            tiles.append(None)
            continue
        tile = Image.fromarray(image)
        tile.thumbnail((size, size))
        tiles.append(tile)
    height = max([t.height for t in tiles if t is not None] or [size])
    rows = -(-len(images) // columns)
    caption_height = 14 * max(1, max(c.count("\n") + 1 for c in captions))
    sheet = Image.new("RGB", (columns * size, rows * (height + caption_height)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (tile, caption) in enumerate(zip(tiles, captions)):
        x, y = (i % columns) * size, (i // columns) * (height + caption_height)
        if tile is None:
            sheet.paste((200, 200, 200), (x + 1, y, x + size - 1, y + height))
        else:
            sheet.paste(tile, (x + (size - tile.width) // 2, y + (height - tile.height) // 2))
        left, _, right, _ = draw.multiline_textbbox((0, 0), caption, spacing=2, align="center")
        draw.multiline_text((x + max(2, (size - (right - left)) // 2), y + height + 1), caption, fill=(0, 0, 0),
                            spacing=2, align="center")
    return sheet


def hits_sheet(hits: Sequence, paths: dict[str, Path], size: int = 160):
    """Contact sheet of retrieval hits (:class:`videobert.evaluation.Hit`): the middle frame of
    each, captioned with rank, video, span and score. A hit whose video cannot be read gets a
    grey tile (logged)."""
    from videobert.video import grab_frame

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


def save_jpeg(image, path: str | Path, quality: int = 90) -> Path:
    """Write a PIL image as JPEG, atomically."""
    from videobert.store import atomic_write_bytes

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
