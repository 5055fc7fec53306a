"""Searching segments with a sentence: the dual encoder's first stage on a faiss index, the
cross-encoder re-ranking its top K.

A query costs one text-tower pass (its vector), one faiss search over the index's segment vectors
(the first stage's K best), and K cross-encoder passes ``[CLS] query [>] segment words [SEP]`` (the
alignment head re-ranks them); the hits are the re-ranked best ``top_k``. ``exhaustive`` scores
every segment with the cross-encoder instead (a pass per segment: the reference the first stage is
measured against). Equal scores keep index order.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from videobert.config import field
from videobert.dual import LoadedDual, load_dual, text_vectors, video_vectors
from videobert.errors import ConfigError, InputError
from videobert.index.folder import NewPart, SearchIndex, open_index
from videobert.inference import InferenceConfig, LoadedModel, load_model
from videobert.model_folder import TEST_INDEX
from videobert.retrieval.gallery import check_same_vocabulary, gallery_segments, video_paths
from videobert.retrieval.scoring import align_probability, score_pairs

log = logging.getLogger(__name__)

EXHAUSTIVE_BLOCK = 4096  # segments scored by the cross-encoder at a time in an exhaustive search


@dataclass(frozen=True)
class Hit:
    """One retrieved segment: 1-based rank, where it is, its cross-encoder alignment probability,
    its first-stage similarity (cosine of the dual encoder's vectors; None in an exhaustive search),
    its sentence, and its row in the index."""

    rank: int
    video_id: str
    start: float
    end: float
    score: float
    text: str
    first_stage: float | None = None
    row: int = -1


def query_ids(loaded: LoadedModel, query: str) -> list[int]:
    """The WordPiece ids of a query; one the model knows nothing of is a :class:`ConfigError`, and
    one whose words are mostly not in the vocabulary is a warning with their count."""
    if not isinstance(query, str) or not query.strip():
        raise ConfigError("the query is empty")
    text = loaded.vocab.encode_text(query)
    unknown = sum(1 for i in text if i == loaded.vocab.unk_id)
    if not text or unknown == len(text):
        why = " (every piece is [UNK]): its ranking would not depend on it" if text else ""
        raise ConfigError(f"the query {query!r} has no WordPiece the model knows{why}")
    loaded.vocab.warn_unknown(query, "query")
    return text


class Searcher:
    """Two-stage search of one index with one model (module docstring): open it once, ask many
    queries. ``dual`` None (a model folder without ``dual/``) searches exhaustively. The index must
    have been made with this model's codebook and dual encoder, else :class:`InputError`."""

    def __init__(self, loaded: LoadedModel, dual: LoadedDual | None, index: SearchIndex):
        self.loaded, self.dual, self.index = loaded, dual, index
        index.check_model(loaded, dual)
        self.timings: dict[str, float] = {}  # of the last query, seconds: text_tower, first_stage, rerank

    @property
    def default_k(self) -> int:
        """The first stage's K chosen on the val split when the dual encoder was trained."""
        return int(self.dual.info.get("k", 100)) if self.dual is not None else 0

    def search(self, query: str, top_k: int = 5, k: int | None = None, exhaustive: bool = False) -> list[Hit]:
        """The ``top_k`` segments that best match ``query``: the cross-encoder's order among the first
        stage's ``k`` best (default: :attr:`default_k`), or among every segment with ``exhaustive``."""
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ConfigError(f"top_k: need a whole number >= 1, got {top_k!r}")
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise ConfigError(f"k: need a whole number >= 1, got {k!r}")
        text = query_ids(self.loaded, query)
        if not self.index.live_rows:
            raise InputError(f"{self.index.folder}: the index has no segment to search")
        self.timings = {}
        if exhaustive or self.dual is None:
            began = time.perf_counter()
            rows, logits = self._exhaustive(text, top_k)
            self.timings["rerank"] = time.perf_counter() - began
            sims = None
        else:
            began = time.perf_counter()
            vector = text_vectors(self.dual.model, self.loaded, [text])
            self.timings["text_tower"] = time.perf_counter() - began
            began = time.perf_counter()
            sims, rows = self.index.search(vector, max(top_k, k or self.default_k))
            sims, rows = sims[0], rows[0]
            keep = rows >= 0
            sims, rows = sims[keep], rows[keep]
            self.timings["first_stage"] = time.perf_counter() - began
            began = time.perf_counter()
            logits = self._cross(text, rows)
            self.timings["rerank"] = time.perf_counter() - began
        order = np.lexsort((rows, -logits))[:top_k]
        probabilities = align_probability(logits[order])
        hits = []
        for rank, (o, p) in enumerate(zip(order, probabilities), start=1):
            segment = self.index.segment(int(rows[o]))
            hits.append(Hit(rank, segment["video_id"], segment["start"], segment["end"], float(p), segment["sentence"],
                            None if sims is None else float(sims[o]), int(rows[o])))
        return hits

    def _cross(self, text: list[int], rows: np.ndarray) -> np.ndarray:
        """Alignment logits float32 [len(rows)] of ``text`` with each row's segment."""
        if not rows.size:
            return np.zeros(0, np.float32)
        videos = [self.index.words(int(r)) for r in rows]
        pairs = np.stack([np.zeros(rows.size, np.int64), np.arange(rows.size)], axis=1)
        return score_pairs(self.loaded, [text], videos, pairs)

    def _exhaustive(self, text: list[int], top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``top_k`` best rows by the cross-encoder over every live segment, block by block."""
        best_rows, best_logits = np.zeros(0, np.int64), np.zeros(0, np.float32)
        live = self.index.live_rows_array()
        for start in range(0, live.size, EXHAUSTIVE_BLOCK):
            rows = live[start : start + EXHAUSTIVE_BLOCK]
            logits = self._cross(text, rows)
            rows, logits = np.concatenate([best_rows, rows]), np.concatenate([best_logits, logits])
            keep = np.lexsort((rows, -logits))[:top_k]
            best_rows, best_logits = rows[keep], logits[keep]
        return best_rows, best_logits


# ------------------------------------------------------------------------ what is searched
@dataclass
class RetrieveConfig(InferenceConfig):
    """Configuration of ``videobert retrieve``: where the model runs, then what is searched and shown."""

    split: Literal["train", "val", "test", "all"] = field("test", help="with --corpus: the split searched (all: every split)")
    top_k: int = field(5, help="hits to show")
    two_stage: int | None = field(None, help="K: the first stage (the dual encoder) keeps the K nearest segments for "
                                             "the cross-encoder to re-rank (none: the K chosen on val when the dual "
                                             "encoder was trained)")
    exhaustive: bool = field(False, help="score every segment with the cross-encoder instead (no first stage: a pass "
                                         "per segment)")
    sheet_size: int = field(160, help="side of each frame of the contact sheet, pixels")

    def check(self) -> None:
        InferenceConfig.check(self)
        if self.top_k < 1 or (self.two_stage is not None and self.two_stage < 1) or self.sheet_size < 16:
            raise ConfigError("top_k: need >= 1; two_stage: need >= 1; sheet_size: need >= 16")


def model_index(model_dir: str | Path, index: str | Path | None = None) -> SearchIndex:
    """An index folder opened for search, by default the model folder's own ``test_index``."""
    if index is None:
        index = Path(model_dir) / TEST_INDEX
        if not index.is_dir():
            raise InputError(f"{model_dir}: carries no test_index (videobert distil writes it); give an index "
                             "(videobert index) or a corpus")
    return open_index(index)


def segments_index(dual: LoadedDual | None, loaded: LoadedModel, segments: Sequence[dict[str, Any]],
                   paths: dict[str, Path] | None = None) -> SearchIndex:
    """An index in memory of ``segments`` (``video_id``, ``start``, ``end``, ``text``, ``video_ids``:
    visual words), with the dual encoder's vectors (none without one: searched exhaustively)."""
    ids: dict[str, int] = {}
    for s in segments:
        ids.setdefault(str(s["video_id"]), len(ids))
    words = [np.asarray(s["video_ids"], np.int32) for s in segments]
    vectors = video_vectors(dual.model, loaded, words) if dual is not None and words else None
    part = NewPart(list(ids), [str((paths or {}).get(v, "")) for v in ids],
                   np.array([ids[str(s["video_id"])] for s in segments], np.int32),
                   np.array([float(s["start"]) for s in segments]), np.array([float(s["end"]) for s in segments]),
                   [str(s.get("text", "")) for s in segments], words, vectors)
    meta = {"codebook": loaded.vocab.codebook, "visual_vocab_size": loaded.layout.visual_vocab_size,
            "dual": dual.identity if dual is not None else None}
    return SearchIndex.in_memory(meta, part)


@dataclass
class SearchResult:
    """What ``videobert retrieve`` found: the hits, how many segments were searched and where, and
    the video file of each video id."""

    hits: list[Hit]
    searched: int
    where: str
    video_path: Callable[[str], Path | None]


def search_collection(model_dir: str | Path, query: str, cfg: RetrieveConfig, index: str | Path | None = None,
                      corpus: str | Path | None = None) -> SearchResult:
    """The ``cfg.top_k`` segments best matching ``query`` among those of ``corpus``'s ``cfg.split``,
    of ``index`` (``videobert index``), or by default of the model folder's own ``test_index``."""
    cfg.check()
    loaded = load_model(model_dir, cfg.device, cfg.precision, cfg.batch_tokens)
    dual = None if cfg.exhaustive else load_dual(model_dir, loaded)
    if corpus is not None:
        check_same_vocabulary(loaded, corpus)
        paths = video_paths(corpus)
        searched = segments_index(dual, loaded, gallery_segments(corpus, cfg.split), paths)
        where = f"the {cfg.split} split of {corpus}"
    else:
        searched = model_index(model_dir, index)
        where = str(searched.folder)
    if dual is None and not cfg.exhaustive:
        log.warning("%s has no dual encoder (videobert distil): every segment is scored by the cross-encoder", model_dir)
    searcher = Searcher(loaded, dual, searched)
    hits = searcher.search(query, cfg.top_k, cfg.two_stage, exhaustive=cfg.exhaustive or dual is None)
    return SearchResult(hits, searched.live_rows, where, searched.video_path)


def format_hits(hits: Sequence[Hit]) -> list[str]:
    """A table of hits: rank, video, start, end, cross-encoder probability, first-stage similarity, sentence."""
    lines = [f"{'rank':>4}  {'video_id':<24}{'start':>8}{'end':>8}{'score':>8}{'first':>8}  sentence"]
    for hit in hits:
        first = f"{hit.first_stage:>8.3f}" if hit.first_stage is not None else f"{'-':>8}"
        lines.append(f"{hit.rank:>4}  {hit.video_id:<24}{hit.start:>8.2f}{hit.end:>8.2f}{hit.score:>8.4f}{first}  {hit.text}")
    return lines
