"""The CORPUS folder's layout, and reading it: :class:`CorpusSplit` (lazy, random access by row,
memory-mapped) and :func:`load_corpus` (a split as a list of dicts, for small corpora).

A corpus is written in shards (``shards/shard-SSSSS-of-NNNNN/``), each holding every split's
examples of a contiguous run of the manifest's videos as a columnar table
(:mod:`videobert.corpus.columns`)::

    shards/shard-00000-of-00004/train/   video.npy index.npy start.npy end.npy first_clip.npy
                                         text.values.npy text.offsets.npy
                                         text_ids.values.npy text_ids.offsets.npy
                                         video_ids.values.npy video_ids.offsets.npy
                                         video_name.values.npy video_name.offsets.npy
                                  val/ test/ stats.json failures.jsonl

A split's rows are the shards' rows in shard order, so corpus order is manifest order: by video,
then time. ``video`` numbers a row's video among its table's ``video_name`` rows; a
:class:`CorpusSplit` numbers the videos of the whole split (``video_codes``) in order of
appearance. Every process that opens a split maps the same files: ranks and data-loader workers
share one copy through the page cache and read only the rows they use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from videobert.corpus.align import EXAMPLE_KEYS
from videobert.corpus.columns import Table, TableBuilder
from videobert.errors import InputError
from videobert.features.settings import MAX_CLIP_SECONDS, require_clip_seconds
from videobert.manifest import SPLITS
from videobert.readers import Field, check_field, check_fields
from videobert.store import read_json
from videobert.vocab.stage import load_tokens

FORMAT = 2  # corpus.json / summary.json "format": the columnar shards of this module
SUMMARY_FILE = "summary.json"
PLAN_FILE = "corpus.json"
SPLITS_FILE = "splits.jsonl"  # every video's split, and whether it was drawn (videobert.corpus.splits)
SHARDS = "shards"
FIXED_COLUMNS = {"video": "int32", "index": "int32", "start": "float64", "end": "float64", "first_clip": "int32"}
RAGGED_COLUMNS = {"text": "uint8", "text_ids": "int32", "video_ids": "int32"}
VIDEO_COLUMNS = {"video_name": "uint8"}


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}"


def shard_path(corpus_dir: str | Path, index: int, count: int) -> Path:
    return Path(corpus_dir) / SHARDS / shard_name(index, count)


def shard_folders(corpus_dir: str | Path) -> list[Path]:
    """The finished shards of a corpus, in order (unfinished ones are under temporary names)."""
    folder = Path(corpus_dir) / SHARDS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("shard-"))


def check_complete(corpus_dir: str | Path) -> None:
    """Raise :class:`InputError` unless the corpus stage finished writing ``corpus_dir`` (its
    ``summary.json``, written last, is there) in this version's format."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise InputError(f"{corpus_dir}: corpus folder not found", "missing")
    if not (corpus_dir / SUMMARY_FILE).is_file():
        raise InputError(f"{corpus_dir}: not a finished corpus (no {SUMMARY_FILE}: the corpus stage was interrupted "
                         "or did not write it); run 'videobert corpus' again", "missing")
    if (corpus_dir / "train.jsonl").exists() and not (corpus_dir / SHARDS).is_dir():
        raise InputError(f"{corpus_dir}: a corpus of an earlier videobert (JSONL splits), which this version does not "
                         "read; rebuild it with 'videobert corpus' into a new folder (videobert run reruns the stage)")


class CorpusSplit(Sequence):
    """One split of a finished corpus, read lazily: ``split[i]`` is example ``i`` as a dict (the
    keys of :data:`EXAMPLE_KEYS`), and the accessors below return single columns without building
    dicts. The per-row index arrays (``text_lengths`` …) are computed once, 20 bytes a row.
    :meth:`from_examples` holds a list of example dicts the same way, in memory."""

    def __init__(self, corpus_dir: str | Path, split: str):
        if split not in SPLITS:
            raise InputError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        check_complete(corpus_dir)
        self.corpus_dir, self.split = Path(corpus_dir), split
        what = f"corpus {split} table"
        folders = [shard / split for shard in shard_folders(corpus_dir)]
        self._setup([Table.open(f, FIXED_COLUMNS, RAGGED_COLUMNS, what) for f in folders],
                    [Table.open(f, (), VIDEO_COLUMNS, what) for f in folders])

    @classmethod
    def from_examples(cls, examples: Sequence[dict[str, Any]]) -> "CorpusSplit":
        """Example dicts (as :func:`load_corpus` returns them, in corpus order) as a split."""
        rows, names = TableBuilder(FIXED_COLUMNS, RAGGED_COLUMNS), TableBuilder({}, VIDEO_COLUMNS)
        number: dict[str, int] = {}
        for example in examples:
            if example["video_id"] not in number:
                number[example["video_id"]] = names.rows
                names.add(video_name=example["video_id"])
            rows.add(video=number[example["video_id"]], **{k: example[k] for k in (*FIXED_COLUMNS, *RAGGED_COLUMNS)
                                                              if k != "video"})
        split = cls.__new__(cls)
        split.corpus_dir, split.split = None, None
        split._setup([rows.table()], [names.table()])
        return split

    def _setup(self, tables: list[Table], names: list[Table]) -> None:
        self._tables, self._names = tables, names
        self._row_start = np.concatenate([[0], np.cumsum([t.rows for t in tables], dtype=np.int64)]).astype(np.int64)
        self._video_start = np.concatenate([[0], np.cumsum([t.rows for t in names], dtype=np.int64)]).astype(np.int64)

        def joined(take) -> np.ndarray:
            parts = [np.asarray(take(i, t)) for i, t in enumerate(tables)]
            return np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)

        self.text_lengths = joined(lambda i, t: t.ragged["text_ids"].lengths())
        self.video_lengths = joined(lambda i, t: t.ragged["video_ids"].lengths())
        self.video_codes = joined(lambda i, t: t.fixed["video"] + self._video_start[i])
        self.sentence_index = joined(lambda i, t: t.fixed["index"])
        self.first_clips = joined(lambda i, t: t.fixed["first_clip"])
        for table, video_names in zip(tables, names):
            codes = table.fixed["video"]
            if len(codes) and (codes.min() < 0 or codes.max() >= video_names.rows):
                raise InputError(f"{table.folder}: unreadable corpus table (video numbers outside its video_name rows)")

    def __len__(self) -> int:
        return int(self._row_start[-1])

    @property
    def videos(self) -> int:
        """Videos with at least one example in the split."""
        return int(self._video_start[-1])

    def _locate(self, row: int) -> tuple[Table, int]:
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} of a {len(self)}-row split")
        shard = int(np.searchsorted(self._row_start, row, side="right") - 1)
        return self._tables[shard], row - int(self._row_start[shard])

    def text_ids(self, row: int) -> np.ndarray:
        """int32 [n]: the WordPiece ids of example ``row`` (a view of the mapped file)."""
        table, local = self._locate(row)
        return table.ragged["text_ids"][local]

    def video_ids(self, row: int) -> np.ndarray:
        """int32 [n]: the visual words (0 … V-1) of example ``row``."""
        table, local = self._locate(row)
        return table.ragged["video_ids"][local]

    def text(self, row: int) -> str:
        table, local = self._locate(row)
        return table.ragged["text"].text(local)

    def video_name(self, code: int) -> str:
        """The ``video_id`` of video number ``code`` (:attr:`video_codes`)."""
        if not 0 <= code < self.videos:
            raise IndexError(f"video {code} of {self.videos}")
        shard = int(np.searchsorted(self._video_start, code, side="right") - 1)
        return self._names[shard].ragged["video_name"].text(code - int(self._video_start[shard]))

    def video_id(self, row: int) -> str:
        return self.video_name(int(self.video_codes[row]))

    def video_names(self) -> list[str]:
        """Every video of the split by number (one string per video: for selections, not per row)."""
        return [self.video_name(code) for code in range(self.videos)]

    def times(self, row: int) -> tuple[float, float]:
        table, local = self._locate(row)
        return float(table.fixed["start"][local]), float(table.fixed["end"][local])

    def __getitem__(self, row: int) -> dict[str, Any]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = int(row)
        if row < 0:
            row += len(self)
        table, local = self._locate(row)
        return {
            "video_id": self.video_id(row),
            "index": int(table.fixed["index"][local]),
            "start": float(table.fixed["start"][local]),
            "end": float(table.fixed["end"][local]),
            "text": table.ragged["text"].text(local),
            "text_ids": table.ragged["text_ids"][local].tolist(),
            "video_ids": table.ragged["video_ids"][local].tolist(),
            "first_clip": int(table.fixed["first_clip"][local]),
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in range(len(self)):
            yield self[row]

    def rows_with(self, text: bool | None = None, video: bool | None = None) -> np.ndarray:
        """int64: the rows that have (True) or lack (False) text and video (None: either)."""
        keep = np.ones(len(self), bool)
        if text is not None:
            keep &= (self.text_lengths > 0) == text
        if video is not None:
            keep &= (self.video_lengths > 0) == video
        return np.flatnonzero(keep)


def load_corpus(corpus_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The examples of one split of a finished corpus (:func:`check_complete`) as dicts, in corpus
    order (by video, then time): for small corpora and notebooks. Training, evaluation and large
    corpora read rows lazily through :class:`CorpusSplit`."""
    return list(CorpusSplit(corpus_dir, split))


# the fields of summary.json that readers of a corpus use, by type and bounds
SUMMARY_FIELDS = {
    "clip_seconds": Field("number", 0, MAX_CLIP_SECONDS, above=True),
    "visual_vocab_size": Field("int", 1, 10_000_000, required=False),
    "joint_vocab_size": Field("int", 1, 20_000_000, required=False),
    "examples": Field("int", 0, required=False),
    "inputs": Field("dict", required=False),
}


def corpus_summary(corpus_dir: str | Path) -> dict[str, Any]:
    """The corpus's ``summary.json``, its fields checked (:data:`SUMMARY_FIELDS`; the folders it
    names under ``inputs`` must be strings)."""
    path = Path(corpus_dir) / SUMMARY_FILE
    summary = check_fields(read_json(path, "corpus summary"), path, SUMMARY_FIELDS)
    for key, value in (summary.get("inputs") or {}).items():
        check_field(value, Field("str", nullable=True), path, f"inputs.{key}")
    return summary


def corpus_tokens_dir(corpus_dir: str | Path) -> Path | None:
    """The TOKENS folder the corpus was built from (``summary.json`` → ``inputs.tokens``); None
    where the summary records none or the folder is gone."""
    tokens = (corpus_summary(corpus_dir).get("inputs") or {}).get("tokens")
    return Path(tokens) if tokens and Path(tokens).is_dir() else None


def corpus_visual_words(corpus_dir: str | Path, video_ids: Iterable[str] | None = None) -> tuple[dict[str, np.ndarray], float]:
    """Every clip's visual word per video (the TOKENS folder the corpus was built from; only of
    ``video_ids`` when given) and the clip length in seconds."""
    summary = corpus_summary(corpus_dir)
    tokens = (summary.get("inputs") or {}).get("tokens")
    if not tokens:
        raise InputError(f"{Path(corpus_dir) / 'summary.json'}: records no tokens folder (rebuild the corpus)")
    return load_tokens(tokens, video_ids), require_clip_seconds(summary, Path(corpus_dir) / SUMMARY_FILE)


__all__: Sequence[str] = ("EXAMPLE_KEYS", "CorpusSplit", "check_complete", "corpus_summary", "load_corpus")
