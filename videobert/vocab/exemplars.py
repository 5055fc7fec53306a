"""Exemplars of visual words: the clip nearest each word's centroid, its middle frame as a small
square picture, and a contact sheet of the most frequent words — the picture the paper shows of
its vocabulary. The vocab stage writes them (``VOCAB/exemplars/<word>.jpg``, ``VOCAB/exemplars.jpg``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image

from videobert.errors import InputError
from videobert.media import contact_sheet, grab_frame
from videobert.runtime import cpu_cores

SHEET_COLUMNS = 8


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


def exemplar_entries(rows: np.ndarray, distances: np.ndarray, counts: np.ndarray, video_ids: Sequence[str],
                     clip_video: np.ndarray, clip_index: np.ndarray, clip_seconds: float | None) -> list[dict]:
    """One entry per word that has training clips (``exemplars.json``): ``word``, ``count``,
    ``video_id``, ``clip``, ``seconds`` (middle of the clip; None when the clip length is unknown)
    and ``distance``. ``rows``/``distances`` come from :func:`nearest_clips`; a sample row ``r`` is
    clip ``clip_index[r]`` of video ``video_ids[clip_video[r]]``."""
    entries = []
    for word, row in enumerate(rows.tolist()):
        if row < 0:
            continue
        clip = int(clip_index[row])
        entries.append({
            "word": word,
            "count": int(counts[word]),
            "video_id": video_ids[clip_video[row]],
            "clip": clip,
            "seconds": round((clip + 0.5) * clip_seconds, 3) if clip_seconds else None,
            "distance": float(distances[word]),
        })
    return entries


def grab_exemplars(
    entries: Sequence[Mapping], videos: Mapping[str, Path], size: int, workers: int = 0,
    progress: Callable | None = None,
) -> Iterator[tuple[Mapping, np.ndarray | None, InputError | None]]:
    """``(entry, frame, error)`` for each entry: the frame at ``entry["seconds"]`` of
    ``entry["video_id"]`` (uint8 ``[size, size, 3]``, the centre square), grabbed ``workers`` at a
    time (0: one per core), or why it could not be."""

    def grab(entry: Mapping) -> tuple[np.ndarray | None, InputError | None]:
        path = videos.get(entry["video_id"])
        if path is None:
            return None, InputError(f"video {entry['video_id']!r} is not in the manifest", "missing")
        try:
            return grab_frame(path, entry["seconds"], size), None
        except InputError as exc:
            return None, exc

    with ThreadPoolExecutor(max_workers=workers or cpu_cores()) as pool:
        results = pool.map(grab, entries)
        if progress is not None:
            results = progress(results, total=len(entries), desc="exemplars", unit="word")
        for entry, (frame, error) in zip(entries, results):
            yield entry, frame, error


def exemplar_sheet(thumbnails: Sequence[Image.Image], entries: Sequence[Mapping], size: int) -> Image.Image:
    """The contact sheet of ``thumbnails`` (one per entry), each labelled ``v<word> n=<count>``."""
    captions = [f"v{entry['word']} n={entry['count']}" for entry in entries]
    return contact_sheet(list(thumbnails), captions, size, columns=SHEET_COLUMNS)
