"""The INDEX folder: segments of any videos, searched with a sentence — one folder that grows.

::

    INDEX/index.json              format 3; what the vectors and words were made with: the model's
                                  codebook and visual vocabulary size, its dual encoder (weights
                                  sha256, dim), clip_seconds, window, stride, feature settings; the kind of
                                  vector index (flat: exact inner product; ivf: inverted lists, nlist,
                                  nprobe, and the sha256 of ivf.faiss)
    INDEX/ivf.faiss               ivf only: the trained, empty IVF (its coarse quantiser), one for every part
    INDEX/parts/part-NNNNNN/      one per batch of added videos, written whole, then renamed into place:
        part.json                 rows, videos, dim, the dual encoder its vectors come from, and (ivf)
                                  the sha256 of the ivf.faiss its lists were assigned by
        segments/                 a columnar table (memory-mapped when read), one row a segment:
                                  video (int32: row of videos/), start, end (float64 seconds),
                                  sentence (UTF-8), words (int32 visual words 0 … V-1)
        videos/                   id and path (UTF-8) of each video of the part
        vectors.npy               the segments' video-tower vectors, float32 [rows, dim]
        lists.npy                 ivf only: int32 [rows], the inverted list of each vector
    INDEX/removed.npy             int64: rows removed (global numbers, ascending); absent when none
    INDEX/config.yaml, INDEX/failures*.jsonl

A segment's global row is its part's offset (the rows of the parts before it) plus its row in the
part. Opening an index (:func:`open_index`) checks every part against ``index.json`` and itself —
another model's vectors, a truncated vector file or a table whose rows disagree with its vectors
are refused naming the file — and assembles the searchable faiss index from the parts in order: the
same index, bit for bit, as one built from every vector at once. A part holds its vectors and (ivf)
their lists, not a faiss index: the coarse quantiser is stored once, and the inverted lists are
filled at open with each list's memory reserved whole (the vectors' own size, no growth slack).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np

from videobert.corpus.columns import Table, TableBuilder, write_table
from videobert.errors import InputError
from videobert.readers import MAX_MAPPED_BYTES, Field, check_fields, load_npy, read_bytes, read_json
from videobert.store import (
    atomic_save_npy, atomic_write_bytes, atomic_write_json, atomic_write_text, fsync_folder, temp_path_for, write_synced,
)

log = logging.getLogger(__name__)

FORMAT = 3
READABLE_FORMATS = (2, 3)  # format 2: flat indexes only (its IVF parts were faiss files; index again)
META_FILE = "index.json"
PARTS = "parts"
PART_FILE = "part.json"
REMOVED_FILE = "removed.npy"
IVF_FILE = "ivf.faiss"
LISTS_FILE = "lists.npy"
FLAT_LIMIT = 250_000  # segments an exact index searches within the first stage's time (d 128, 2-core CPU)
IVF_FILE_LIMIT = 512 << 20  # bytes ivf.faiss may hold (65 536 centroids of 1 024 numbers: 256 MiB)
_PART_NAME = re.compile(r"^part-(\d{6})$")


@dataclass
class NewPart:
    """Segments to add, with their videos and vectors (one part of an index, before it is written)."""

    video_ids: list[str]
    video_paths: list[str]
    video: np.ndarray  # int32 [n]: row of video_ids
    start: np.ndarray  # float64 [n]
    end: np.ndarray  # float64 [n]
    sentences: list[str]
    words: list[np.ndarray]  # int32 [clips] each
    vectors: np.ndarray  # float32 [n, dim], unit length

    def __len__(self) -> int:
        return int(self.video.size)


def ivf_lists(rows: int) -> int:
    """nlist of an IVF index of ``rows`` vectors: about 4·√rows, a power of two (1 024 … 65 536)."""
    return int(min(65_536, max(1_024, 2 ** round(np.log2(4 * np.sqrt(max(rows, 1)))))))


def train_ivf(sample: np.ndarray, nlist: int) -> faiss.Index:
    """An empty IVF-Flat inner-product index whose coarse quantiser is trained on ``sample``
    float32 [m, dim] (faiss's seeded k-means: the same sample gives the same bytes)."""
    index = faiss.index_factory(sample.shape[1], f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(sample, np.float32))
    return index


def part_dir(index_dir: str | Path, number: int) -> Path:
    return Path(index_dir) / PARTS / f"part-{number:06d}"


def part_numbers(index_dir: str | Path) -> list[int]:
    """The numbers of the complete parts (temporaries of killed writers have other names), ascending."""
    folder = Path(index_dir) / PARTS
    found = [_PART_NAME.match(p.name) for p in folder.iterdir()] if folder.is_dir() else []
    return sorted(int(m.group(1)) for m in found if m)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def write_part(index_dir: str | Path, number: int, part: NewPart, dual: str, template: faiss.Index | None) -> Path:
    """Write ``part`` as part ``number`` of the index (module docstring), whole under a temporary
    name, then renamed into place. ``dual``: the dual encoder's identity its vectors come from;
    ``template``: the index's trained empty IVF, whose quantiser assigns the vectors their lists
    (None: a flat index)."""
    target = part_dir(index_dir, number)
    tmp = temp_path_for(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_table(tmp / "segments", _segment_rows(part).arrays())
        videos = TableBuilder({}, {"id": "uint8", "path": "uint8"})
        for video_id, path in zip(part.video_ids, part.video_paths):
            videos.add(id=video_id, path=path)
        write_table(tmp / "videos", videos.arrays())
        vectors = np.ascontiguousarray(part.vectors, np.float32)
        write_synced(tmp / "vectors.npy", _npy_bytes(vectors))
        info = {"rows": len(part), "videos": len(part.video_ids), "dim": int(vectors.shape[1]), "dual": dual}
        if template is not None:
            write_synced(tmp / LISTS_FILE, _npy_bytes(assign_lists(template, vectors)))
            info["ivf"] = template_sha(template)
        write_synced(tmp / PART_FILE, json.dumps(info) + "\n")
        tmp.rename(target)
        fsync_folder(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def assign_lists(template: faiss.Index, vectors: np.ndarray) -> np.ndarray:
    """int32 [rows]: the inverted list of each of ``vectors`` (the IVF's coarse quantiser, as its add does)."""
    if not vectors.shape[0]:
        return np.zeros(0, np.int32)
    return faiss.extract_index_ivf(template).quantizer.assign(np.ascontiguousarray(vectors, np.float32), 1)[:, 0] \
        .astype(np.int32)


def template_sha(template: faiss.Index) -> str:
    """The sha256 of a trained empty IVF's bytes (``ivf.faiss``)."""
    return hashlib.sha256(faiss.serialize_index(template).tobytes()).hexdigest()


def _segment_rows(part: NewPart) -> TableBuilder:
    rows = TableBuilder({"video": "int32", "start": "float64", "end": "float64"}, {"sentence": "uint8", "words": "int32"})
    for i in range(len(part)):
        rows.add(video=int(part.video[i]), start=float(part.start[i]), end=float(part.end[i]),
                 sentence=part.sentences[i], words=part.words[i])
    return rows


@dataclass
class _Part:
    folder: Path | None
    offset: int
    rows: int
    segments: Table
    video_ids: list[str]
    video_paths: list[str]
    info: dict[str, Any]


class SearchIndex:
    """An index opened for search (module docstring): the segments of its parts, memory-mapped,
    the faiss index of their vectors, assembled in part order, and the rows removed. Build one
    from a folder with :func:`open_index`, or in memory from segments with :meth:`in_memory`."""

    def __init__(self, folder: Path | None, meta: dict[str, Any], parts: list[_Part], vectors: faiss.Index | None,
                 removed: np.ndarray):
        self.folder, self.meta, self.parts, self.vectors = folder, meta, parts, vectors
        self.offsets = np.array([p.offset for p in parts] + [sum(p.rows for p in parts)], np.int64)
        self.rows = int(self.offsets[-1])
        self.removed = removed
        self._selector = None
        if removed.size:
            self._selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(removed))
        self._paths: dict[str, str] = {}
        for part in parts:
            self._paths.update(zip(part.video_ids, part.video_paths))

    # ------------------------------------------------------------------ what it holds
    @property
    def live_rows(self) -> int:
        """Segments that can be found (every row but the removed ones)."""
        return self.rows - int(self.removed.size)

    def live_rows_array(self) -> np.ndarray:
        """int64: the rows that can be found, ascending."""
        keep = np.ones(self.rows, bool)
        keep[self.removed] = False
        return np.flatnonzero(keep)

    def _locate(self, row: int) -> tuple[_Part, int]:
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} of an index of {self.rows}")
        number = int(np.searchsorted(self.offsets, row, side="right")) - 1
        part = self.parts[number]
        return part, row - part.offset

    def segment(self, row: int) -> dict[str, Any]:
        """``video_id``, ``start``, ``end``, ``sentence`` of segment ``row``."""
        part, local = self._locate(row)
        fixed, ragged = part.segments.fixed, part.segments.ragged
        return {"video_id": part.video_ids[int(fixed["video"][local])], "start": float(fixed["start"][local]),
                "end": float(fixed["end"][local]), "sentence": ragged["sentence"].text(local)}

    def words(self, row: int) -> np.ndarray:
        """int64: the visual words of segment ``row``."""
        part, local = self._locate(row)
        return np.asarray(part.segments.ragged["words"][local], np.int64)

    def video_ids(self) -> list[str]:
        """The ids of the videos with a segment that can be found, in index order."""
        seen: dict[str, None] = {}
        for part in self.parts:
            live = np.ones(part.rows, bool)
            live[self.removed[(self.removed >= part.offset) & (self.removed < part.offset + part.rows)] - part.offset] = False
            for code in np.unique(np.asarray(part.segments.fixed["video"])[live]):
                seen.setdefault(part.video_ids[int(code)], None)
        return list(seen)

    def segments(self) -> list[dict[str, Any]]:
        """Every segment that can be found, in index order: ``video_id``, ``start``, ``end``,
        ``text`` (its sentence) and ``video_ids`` (its visual words) — a list for small indexes
        (the notebook's); search with :class:`videobert.search.Searcher`."""
        out = []
        for row in self.live_rows_array():
            segment = self.segment(int(row))
            out.append({"video_id": segment["video_id"], "start": segment["start"], "end": segment["end"],
                        "text": segment["sentence"], "video_ids": self.words(int(row)).tolist()})
        return out

    def video_paths(self) -> dict[str, Path]:
        """``{video_id: the file the index was made from}`` of every video it records."""
        return {video_id: Path(path) for video_id, path in self._paths.items() if path}

    def video_path(self, video_id: str) -> Path | None:
        """The file the index was made from for ``video_id`` (None for a video it does not hold)."""
        path = self._paths.get(video_id)
        return Path(path) if path else None

    # ------------------------------------------------------------------ the first stage
    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows of largest inner product with each of ``vectors`` float32 [q, dim], best
        first: (scores float32 [q, k], rows int64 [q, k]; -1 where fewer rows can be found)."""
        if self.vectors is None:
            raise InputError(f"{self.folder}: the index holds no vectors to search")
        vectors = np.ascontiguousarray(vectors, np.float32).reshape(-1, self.vectors.d)
        k = max(1, min(int(k), self.live_rows))
        params = None
        if faiss.try_extract_index_ivf(self.vectors) is not None:
            params = faiss.SearchParametersIVF(nprobe=int(self.meta.get("nprobe", 64)), sel=self._selector)
        elif self._selector is not None:
            params = faiss.SearchParameters(sel=self._selector)
        threads = faiss.omp_get_max_threads()
        if vectors.shape[0] == 1:  # one query does not parallelise, and spinning threads slow a busy machine
            faiss.omp_set_num_threads(1)
        try:
            scores, rows = self.vectors.search(vectors, k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        return scores, rows.astype(np.int64)

    def check_model(self, loaded, dual) -> None:
        """Refuse an index made with another model: its codebook, visual vocabulary size and dual
        encoder must be the model's (``loaded``: a LoadedModel; ``dual``: its LoadedDual or None)."""
        where = (self.folder / META_FILE) if self.folder is not None else "the index"
        ours = loaded.vocab.codebook
        if ours is not None and self.meta.get("codebook") is not None and self.meta["codebook"] != ours:
            raise InputError(f"{where}: made with codebook {self.meta['codebook']}, but the model's is {ours}; "
                             "index the videos with this model")
        if int(self.meta.get("visual_vocab_size", -1)) != loaded.layout.visual_vocab_size:
            raise InputError(f"{where}: visual words of a vocabulary of {self.meta.get('visual_vocab_size')}, the model "
                             f"has {loaded.layout.visual_vocab_size}; index the videos with this model")
        if dual is not None and self.vectors is not None and self.meta.get("dual") != dual.identity:
            raise InputError(f"{where}: vectors of another dual encoder ({self.meta.get('dual')}), the model's is "
                             f"{dual.identity}; index the videos with this model")

    @classmethod
    def in_memory(cls, meta: dict[str, Any], part: NewPart | None) -> "SearchIndex":
        """An index held in memory (a corpus split, a list of videos), one part, flat."""
        if part is None or not len(part):
            return cls(None, meta, [], None, np.zeros(0, np.int64))
        vectors = None
        if part.vectors is not None and part.vectors.size:
            vectors = faiss.IndexFlatIP(part.vectors.shape[1])
            vectors.add(np.ascontiguousarray(part.vectors, np.float32))
        return cls(None, meta, [_Part(None, 0, len(part), _segment_rows(part).table(), part.video_ids, part.video_paths,
                                      {})],
                   vectors, np.zeros(0, np.int64))


META_FIELDS = {
    "format": Field("int"), "codebook": Field("str", required=False, nullable=True),
    "visual_vocab_size": Field("int", 1, 10_000_000), "dual": Field("str", required=False, nullable=True),
    "dim": Field("int", 1, 65_536), "clip_seconds": Field("number", 0, 3600, above=True), "window": Field("int", 1, 100_000),
    "stride": Field("int", 1, 100_000, required=False),
    "features": Field("dict", required=False, nullable=True), "kind": Field("str"), "nprobe": Field("int", 1, 1_000_000),
    "nlist": Field("int", 1, 1 << 22, required=False), "ivf": Field("str", required=False),
}
PART_FIELDS = {"rows": Field("int", 0, 1 << 40), "videos": Field("int", 0, 1 << 32), "dim": Field("int", 1, 65_536),
               "dual": Field("str", nullable=True), "ivf": Field("str", required=False)}


def read_meta(index_dir: str | Path) -> dict[str, Any]:
    """``index.json`` of an index folder, checked field by field (format 3, or a flat one of format 2)."""
    folder = Path(index_dir)
    path = folder / META_FILE
    if not path.is_file():
        raise InputError(f"{folder}: not an index folder (no {META_FILE}; make one with 'videobert index')", "missing")
    meta = read_json(path, "index settings", expect=dict)
    if meta.get("format") not in READABLE_FORMATS or (meta.get("format") != FORMAT and meta.get("kind") != "flat"):
        raise InputError(f"{path}: an index of format {meta.get('format')!r} (kind {meta.get('kind')!r}); this version "
                         f"reads format {FORMAT} and flat indexes of format 2 (index the videos again with "
                         "'videobert index' into a new folder)")
    check_fields(meta, path, META_FIELDS)
    if meta["kind"] not in ("flat", "ivf"):
        raise InputError(f"{path}: kind: {meta['kind']!r} is neither flat nor ivf")
    if meta["kind"] == "ivf" and not (isinstance(meta.get("ivf"), str) and isinstance(meta.get("nlist"), int)):
        raise InputError(f"{path}: an ivf index records no ivf (the sha256 of {IVF_FILE}) or nlist")
    return meta


def open_index(index_dir: str | Path) -> SearchIndex:
    """An index folder opened for search: every part checked against ``index.json`` and itself
    (one-line :class:`InputError` naming the file), the faiss index assembled in part order."""
    folder = Path(index_dir)
    meta = read_meta(folder)
    dim = int(meta["dim"])
    parts, offset = [], 0
    for number in part_numbers(folder):
        part = _open_part(part_dir(folder, number), meta, offset)
        parts.append(part)
        offset += part.rows
    if meta["kind"] == "flat":
        vectors = faiss.IndexFlatIP(dim)
        for part in parts:
            vectors.add(_part_vectors(part.folder, part.rows, dim))
    else:
        vectors = _assemble_ivf(folder, meta, parts)
    removed = np.zeros(0, np.int64)
    if (folder / REMOVED_FILE).is_file():
        removed = load_npy(folder / REMOVED_FILE, "removed rows")
        if removed.ndim != 1 or removed.dtype.kind not in "iu" or (removed.size and (
                removed.min() < 0 or removed.max() >= offset or np.any(np.diff(removed) <= 0))):
            raise InputError(f"{folder / REMOVED_FILE}: not ascending row numbers of this index (0 … {offset - 1})")
        removed = removed.astype(np.int64)
    return SearchIndex(folder, meta, parts, vectors, removed)


def _part_vectors(folder: Path, rows: int, dim: int) -> np.ndarray:
    """float32 [rows, dim], memory-mapped: the ``vectors.npy`` of the part in ``folder``, checked
    (shape against its rows and the index's dim, type, finite)."""
    path = folder / "vectors.npy"

    def expected(shape, dtype):
        if shape != (rows, dim) or dtype != np.float32:
            raise InputError(f"{path}: float32 [{rows}, {dim}] vectors expected (the part's rows, the index's "
                             f"dim), got {dtype} {list(shape)}")

    array = load_npy(path, "segment vectors", check=expected, mmap=True, max_bytes=MAX_MAPPED_BYTES)
    if not np.isfinite(array).all():
        raise InputError(f"{path}: segment vectors hold NaN or infinity")
    return np.ascontiguousarray(array, np.float32).reshape(-1, dim)


def _part_lists(part: _Part, meta: dict[str, Any]) -> np.ndarray:
    """int64 [rows]: a part's ``lists.npy``, checked against the index's IVF."""
    path, nlist = part.folder / LISTS_FILE, int(meta["nlist"])
    if part.info.get("ivf") != meta["ivf"]:
        raise InputError(f"{part.folder / PART_FILE}: its vectors were given the lists of another IVF "
                         f"({part.info.get('ivf')}; the index's {IVF_FILE}: {meta['ivf']})")

    def expected(shape, dtype):
        if shape != (part.rows,) or dtype.kind not in "iu":
            raise InputError(f"{path}: integer [{part.rows}] list numbers expected (the part's rows), got {dtype} "
                             f"{list(shape)}")

    lists = np.array(load_npy(path, "inverted list numbers", check=expected, mmap=True, max_bytes=MAX_MAPPED_BYTES),
                     np.int64)
    if lists.size and (lists.min() < 0 or lists.max() >= nlist):
        raise InputError(f"{path}: list numbers outside 0 … {nlist - 1}")
    return lists


def _assemble_ivf(folder: Path, meta: dict[str, Any], parts: list[_Part]) -> faiss.Index:
    """The IVF of an index: its trained empty ``ivf.faiss``, each list's memory reserved for the
    vectors the parts give it, then the parts' vectors added in order with their stored lists."""
    data = read_bytes(folder / IVF_FILE, "faiss index", limit=IVF_FILE_LIMIT)
    if hashlib.sha256(data).hexdigest() != meta["ivf"]:
        raise InputError(f"{folder / IVF_FILE}: not the IVF {META_FILE} records (its sha256 differs)")
    index = _deserialize(folder / IVF_FILE, data, int(meta["dim"]))
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or ivf.nlist != int(meta["nlist"]) or index.ntotal:
        raise InputError(f"{folder / IVF_FILE}: not an empty IVF of {meta['nlist']} lists")
    lists = [_part_lists(part, meta) for part in parts]
    counts = np.bincount(np.concatenate(lists), minlength=ivf.nlist) if lists else np.zeros(ivf.nlist, np.int64)
    for number, count in enumerate(counts.tolist()):  # allocated once at its size: no slack from growing
        ivf.invlists.resize(number, count)
        ivf.invlists.resize(number, 0)
    for part, assigned in zip(parts, lists):
        vectors = _part_vectors(part.folder, part.rows, int(meta["dim"]))
        ids = np.arange(part.offset, part.offset + part.rows, dtype=np.int64)
        if part.rows:
            ivf.add_core(part.rows, faiss.swig_ptr(vectors), faiss.swig_ptr(ids), faiss.swig_ptr(assigned))
    return index


def part_info(folder: Path) -> dict[str, Any]:
    """A part's ``part.json``, checked field by field."""
    where = folder / PART_FILE
    return check_fields(read_json(where, "index part", expect=dict), where, PART_FIELDS)


def _read_faiss(path: Path, dim: int) -> faiss.Index:
    return _deserialize(path, read_bytes(path, "faiss index", limit=IVF_FILE_LIMIT), dim)


def _deserialize(path: Path, data: bytes, dim: int) -> faiss.Index:
    try:
        index = faiss.deserialize_index(np.frombuffer(data, np.uint8))
    except RuntimeError as exc:
        raise InputError(f"{path}: unreadable faiss index ({str(exc).splitlines()[0][:200]})") from None
    if index.d != dim:
        raise InputError(f"{path}: vectors of {index.d} numbers, the index's are {dim}")
    return index


def _open_part(folder: Path, meta: dict[str, Any], offset: int) -> _Part:
    where = folder / PART_FILE
    info = part_info(folder)
    if info["dim"] != meta["dim"] or info.get("dual") != meta.get("dual"):
        raise InputError(f"{where}: a part of another index (vectors of {info['dim']} numbers from dual encoder "
                         f"{info.get('dual')}; the index's: {meta['dim']}, {meta.get('dual')})")
    segments = Table.open(folder / "segments", ["video", "start", "end"], ["sentence", "words"], "index segments")
    videos = Table.open(folder / "videos", [], ["id", "path"], "index videos")
    if segments.rows != info["rows"] or videos.rows != info["videos"]:
        raise InputError(f"{folder / 'segments'}: {segments.rows} segments and {videos.rows} videos, {PART_FILE} says "
                         f"{info['rows']} and {info['videos']}")
    video = segments.fixed["video"]
    words = segments.ragged["words"].values
    if segments.rows and (video.min() < 0 or video.max() >= videos.rows):
        raise InputError(f"{folder / 'segments' / 'video.npy'}: video numbers outside 0 … {videos.rows - 1}")
    if words.size and (words.min() < 0 or words.max() >= int(meta["visual_vocab_size"])):
        raise InputError(f"{folder / 'segments' / 'words.values.npy'}: visual words outside 0 … "
                         f"{int(meta['visual_vocab_size']) - 1}")
    ids = [videos.ragged["id"].text(i) for i in range(videos.rows)]
    paths = [videos.ragged["path"].text(i) for i in range(videos.rows)]
    return _Part(folder, offset, segments.rows, segments, ids, paths, info)


# ------------------------------------------------------------------------ growing and shrinking
def _removed(index_dir: Path) -> np.ndarray:
    path = index_dir / REMOVED_FILE
    if not path.is_file():
        return np.zeros(0, np.int64)
    return np.asarray(load_npy(path, "removed rows"), np.int64)


def held_videos(index_dir: str | Path) -> set[str]:
    """The ids of the videos that have a segment the index can find."""
    folder = Path(index_dir)
    removed = _removed(folder)
    held: set[str] = set()
    offset = 0
    for number in part_numbers(folder):
        info = part_info(part_dir(folder, number))
        rows = int(info["rows"])
        segments = Table.open(part_dir(folder, number) / "segments", ["video"], [], "index segments")
        videos = Table.open(part_dir(folder, number) / "videos", [], ["id"], "index videos")
        live = np.ones(rows, bool)
        mine = removed[(removed >= offset) & (removed < offset + rows)] - offset
        live[mine] = False
        for code in np.unique(np.asarray(segments.fixed["video"])[live]):
            held.add(videos.ragged["id"].text(int(code)))
        offset += rows
    return held


def remove_videos(index_dir: str | Path, video_ids: Sequence[str]) -> tuple[int, list[str]]:
    """Mark every segment of ``video_ids`` removed (``removed.npy``, rewritten whole); returns the
    number of segments newly removed and the ids the index does not hold."""
    folder = Path(index_dir)
    wanted = set(video_ids)
    found: set[str] = set()
    removed = [_removed(folder)]
    offset = 0
    for number in part_numbers(folder):
        rows = int(part_info(part_dir(folder, number))["rows"])
        videos = Table.open(part_dir(folder, number) / "videos", [], ["id"], "index videos")
        codes = [i for i in range(videos.rows) if videos.ragged["id"].text(i) in wanted]
        if codes:
            found.update(videos.ragged["id"].text(i) for i in codes)
            segments = Table.open(part_dir(folder, number) / "segments", ["video"], [], "index segments")
            removed.append(offset + np.flatnonzero(np.isin(np.asarray(segments.fixed["video"]), codes)))
        offset += rows
    before = removed[0].size
    merged = np.unique(np.concatenate(removed)).astype(np.int64)
    if merged.size != before:
        atomic_save_npy(folder / REMOVED_FILE, merged)
    return int(merged.size - before), sorted(wanted - found)


def read_template(index_dir: str | Path) -> faiss.Index:
    """The trained empty IVF of an index whose vectors are in inverted lists."""
    meta = read_meta(index_dir)
    return _read_faiss(Path(index_dir) / IVF_FILE, int(meta["dim"]))


def to_ivf(index_dir: str | Path, nprobe: int, sample: int = 200_000, seed: int = 0) -> None:
    """Give a flat index's vectors inverted lists: an IVF trained on a seeded sample of them
    (``ivf.faiss``), each part's ``lists.npy`` and ``part.json`` naming that IVF, then ``index.json``
    says ivf — killed at any point, the index reads as before (flat; the lists written so far are
    made again by the rerun, the same bytes) or as after. The vectors stay where they are."""
    folder = Path(index_dir)
    meta = read_meta(folder)
    if meta["kind"] != "flat":
        return
    numbers = part_numbers(folder)
    arrays = [_part_vectors(part_dir(folder, n), int(part_info(part_dir(folder, n))["rows"]), int(meta["dim"]))
              for n in numbers]
    total = sum(a.shape[0] for a in arrays)
    nlist = min(ivf_lists(total), max(1, total // 39))
    rng = np.random.default_rng([seed, 0x1F])
    picks = np.sort(rng.choice(total, size=min(total, max(sample, 39 * nlist)), replace=False))
    offsets = np.cumsum([0] + [a.shape[0] for a in arrays])
    chosen = np.concatenate([np.asarray(arrays[p][picks[(picks >= offsets[p]) & (picks < offsets[p + 1])] - offsets[p]])
                             for p in range(len(arrays))]) if arrays else np.zeros((0, int(meta["dim"])), np.float32)
    log.info("%s: %d segments, more than an exact index searches quickly: training an IVF of %d lists on %d of them",
             folder, total, nlist, chosen.shape[0])
    template = train_ivf(chosen, nlist)
    sha = template_sha(template)
    atomic_write_bytes(folder / IVF_FILE, faiss.serialize_index(template).tobytes())
    for number, array in zip(numbers, arrays):
        where = part_dir(folder, number)
        atomic_save_npy(where / LISTS_FILE, assign_lists(template, np.asarray(array)))
        atomic_write_text(where / PART_FILE, json.dumps({**part_info(where), "ivf": sha}) + "\n")
    atomic_write_json(folder / META_FILE, {**meta, "format": FORMAT, "kind": "ivf", "nlist": nlist, "nprobe": nprobe,
                                           "ivf": sha})
