"""Exemplars of visual words: the clip nearest each word's centroid, its middle frame as a small
JPEG (``VOCAB/exemplars/<word>.jpg``), and a contact sheet of the most frequent words
(``VOCAB/exemplars.jpg``) — the picture the paper shows of its vocabulary."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from videobert.errors import InputError

log = logging.getLogger(__name__)

LABEL_HEIGHT = 14


def nearest_clips(z: np.ndarray, words: np.ndarray, word_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each word, the row of ``z`` [n, D] nearest its vector among the rows tokenized to it.

    Returns (row int64 [V], squared distance float64 [V]); −1 and inf for a word with no rows.
    """
    vocab_size = len(word_vectors)
    distance = np.empty(len(z), np.float64)
    for lo in range(0, len(z), 65536):
        diff = z[lo : lo + 65536] - word_vectors[words[lo : lo + 65536]]
        distance[lo : lo + 65536] = np.einsum("ij,ij->i", diff, diff, dtype=np.float64)
    order = np.lexsort((distance, words))  # by word, then by distance
    first = np.ones(len(order), bool)
    first[1:] = words[order][1:] != words[order][:-1]
    rows = np.full(vocab_size, -1, np.int64)
    best = np.full(vocab_size, np.inf)
    rows[words[order][first]] = order[first]
    best[words[order][first]] = distance[order][first]
    return rows, best


def exemplar_path(vocab_dir: str | Path, word: int) -> Path:
    return Path(vocab_dir) / "exemplars" / f"{word}.jpg"


def _save_jpeg(path: Path, image) -> None:
    from videobert.store import atomic_write

    with atomic_write(path, "wb") as handle:
        image.save(handle, format="JPEG", quality=90)


def write_thumbnails(
    vocab_dir: str | Path,
    entries: Sequence[Mapping],
    videos: Mapping[str, Path],
    size: int,
    workers: int = 0,
    failures=None,
    progress=None,
) -> tuple[int, int]:
    """Grab the frame at ``entry["seconds"]`` of ``entry["video_id"]`` for each entry (one per
    word, with ``word``) and save it as ``exemplars/<word>.jpg``, ``size`` pixels square. Existing
    thumbnails are kept (a rerun resumes). Failures go to ``failures`` (a :class:`FailureLog`).

    Returns (thumbnails on disk, failures).
    """
    from PIL import Image

    from videobert.video import grab_frame

    def present(entry: Mapping) -> bool:  # written earlier, at this size
        try:
            with Image.open(exemplar_path(vocab_dir, entry["word"])) as thumb:
                return thumb.size == (size, size)
        except (OSError, ValueError):
            return False

    todo = [e for e in entries if not present(e)]
    done = len(entries) - len(todo)

    def grab(entry: Mapping) -> str | None:
        path = videos.get(entry["video_id"])
        if path is None:
            return f"video {entry['video_id']!r} is not in the manifest"
        try:
            frame = grab_frame(path, entry["seconds"], size)
        except InputError as exc:
            return str(exc)
        _save_jpeg(exemplar_path(vocab_dir, entry["word"]), Image.fromarray(frame))
        return None

    failed = 0
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = pool.map(grab, todo)
        if progress is not None:
            results = progress(results, total=len(todo), desc="exemplars", unit="word")
        for entry, problem in zip(todo, results):
            if problem is None:
                done += 1
                continue
            failed += 1
            if failures is not None:
                failures.record(f"exemplar-{entry['word']}", problem, video_id=entry["video_id"], seconds=entry["seconds"])
    return done, failed


def contact_sheet(vocab_dir: str | Path, entries: Sequence[Mapping], words: int, size: int, columns: int = 8) -> Path | None:
    """``exemplars.jpg``: the thumbnails of the ``words`` most frequent words (``entry["count"]``)
    that have one, in a grid, each labelled with its word id and training-clip count."""
    from PIL import Image, ImageDraw, ImageFont

    ranked = sorted(entries, key=lambda e: (-e["count"], e["word"]))
    tiles = [e for e in ranked if exemplar_path(vocab_dir, e["word"]).exists()][:words]
    if not tiles:
        return None
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    cell_h = size + LABEL_HEIGHT
    sheet = Image.new("RGB", (columns * size, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, entry in enumerate(tiles):
        x, y = (i % columns) * size, (i // columns) * cell_h
        with Image.open(exemplar_path(vocab_dir, entry["word"])) as thumb:
            sheet.paste(thumb.convert("RGB").resize((size, size)), (x, y))
        draw.text((x + 3, y + size + 1), f"v{entry['word']} n={entry['count']}", fill=(0, 0, 0), font=font)
    path = Path(vocab_dir) / "exemplars.jpg"
    _save_jpeg(path, sheet)
    return path
