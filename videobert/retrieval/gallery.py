"""A corpus as a retrieval gallery: its segments, the videos and labels it was built from, and
searching it with a sentence (``videobert retrieve``).

The retrieval gallery of a split is its text-video examples (sentences with their clips): query
i is example i's sentence and its true match example i's visual words, so the score matrix is
square; video-only examples are not queries. Searching a split ranks every segment with visual
words, text or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import logging
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np

from videobert.config import field
from videobert.corpus.reader import CorpusSplit, corpus_summary, load_corpus
from videobert.errors import ConfigError, InputError
from videobert.manifest import SPLITS
from videobert.retrieval.inference import InferenceConfig, LoadedModel
from videobert.retrieval.scoring import align_probability, score_pairs
from videobert.retrieval.two_stage import first_stage_candidates
from videobert.store import read_json
from videobert.vocab.stage import load_tokens

log = logging.getLogger(__name__)


@dataclass
class RetrieveConfig(InferenceConfig):
    """Configuration of ``videobert retrieve``: where the model runs, then what is searched and shown."""

    split: Literal["train", "val", "test", "all"] = field("test", help="corpus split to search (all: every split)")
    top_k: int = field(5, help="hits to show")
    two_stage: int = field(0, help="score only the first stage's K best segments with the cross-encoder (0: all)")
    sheet_size: int = field(160, help="side of each frame of the contact sheet, pixels")

    def check(self) -> None:
        InferenceConfig.check(self)
        if self.top_k < 1 or self.two_stage < 0 or self.sheet_size < 16:
            raise ConfigError("top_k: need >= 1; two_stage: need >= 0; sheet_size: need >= 16")


def check_same_vocabulary(loaded: LoadedModel, corpus_dir: str | Path) -> None:
    """The corpus must use the run's joint vocabulary (same text and visual sizes)."""
    corpus = read_json(Path(corpus_dir) / "vocabulary.json", "joint vocabulary")
    ours = loaded.vocab.to_json()
    for key in ("text_vocab_size", "visual_vocab_size"):
        if corpus.get(key) != ours[key]:
            raise InputError(f"{Path(corpus_dir) / 'vocabulary.json'}: {key} {corpus.get(key)} differs from the run's "
                             f"{ours[key]}; evaluate on the corpus the run was trained with (or one built alike)")


def text_video_examples(corpus_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The split's examples that have both a sentence and visual words, as dicts (small splits;
    :func:`text_video_rows` for any size)."""
    return [e for e in load_corpus(corpus_dir, split) if e["text_ids"] and e["video_ids"]]


def text_video_rows(split: CorpusSplit) -> np.ndarray:
    """int64: the rows of ``split`` that have both a sentence and visual words (the gallery)."""
    return split.rows_with(text=True, video=True)


def gallery_segments(corpus_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The segments with visual words of a split (``all``: of every split), text or not."""
    splits = SPLITS if split == "all" else (split,)
    return [e for s in splits for e in load_corpus(corpus_dir, s) if e["video_ids"]]


def manifest_path(corpus_dir: str | Path) -> Path:
    """The manifest the corpus was built from (``summary.json`` → ``inputs.manifest``)."""
    path = (corpus_summary(corpus_dir).get("inputs") or {}).get("manifest")
    if not path:
        raise InputError(f"{Path(corpus_dir) / 'summary.json'}: records no manifest (rebuild the corpus with 'videobert corpus')")
    return Path(path)


def default_labels(corpus_dir: str | Path) -> Path | None:
    """``labels.jsonl`` beside the corpus's manifest (where ``videobert synth`` writes it), if any."""
    try:
        candidate = manifest_path(corpus_dir).parent / "labels.jsonl"
    except InputError:
        return None
    return candidate if candidate.is_file() else None


def corpus_visual_words(corpus_dir: str | Path, video_ids: Iterable[str] | None = None) -> tuple[dict[str, np.ndarray], float]:
    """Every clip's visual word per video (the TOKENS folder the corpus was built from; only of
    ``video_ids`` when given) and the clip length in seconds."""
    summary = corpus_summary(corpus_dir)
    tokens = (summary.get("inputs") or {}).get("tokens")
    if not tokens:
        raise InputError(f"{Path(corpus_dir) / 'summary.json'}: records no tokens folder (rebuild the corpus)")
    return load_tokens(tokens, video_ids), float(summary["clip_seconds"])


def search(
    loaded: LoadedModel,
    query: str,
    videos: Sequence[Sequence[int]],
    top_k: int = 5,
    two_stage: int = 0,
    progress: Callable | None = None,
) -> list[tuple[int, float]]:
    """The ``top_k`` gallery videos for a text query, best first: (gallery index, alignment
    probability). With ``two_stage`` K > 0 only the first stage's K best are scored by the
    cross-encoder. Equal scores keep gallery order."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ConfigError(f"top_k: need a whole number >= 1, got {top_k!r}")
    text = loaded.vocab.encode_text(query)
    unknown = sum(1 for i in text if i == loaded.vocab.unk_id)
    if not text or unknown == len(text):
        why = " (every piece is [UNK]): its ranking would not depend on it" if text else ""
        raise ConfigError(f"the query {query!r} has no WordPiece the model knows{why}")
    if unknown:
        log.warning("%d of the %d word pieces of the query %r are unknown to the model ([UNK])", unknown, len(text), query)
    if not videos:
        raise InputError("the gallery is empty")
    candidates = np.arange(len(videos))
    if two_stage:
        candidates = first_stage_candidates(loaded, text, videos, max(two_stage, top_k))
    pairs = np.stack([np.zeros_like(candidates), candidates], axis=1)
    logits = score_pairs(loaded, [text], videos, pairs, progress)
    order = np.lexsort((candidates, -logits))[:top_k]
    probabilities = align_probability(logits[order])
    return [(int(candidates[o]), float(p)) for o, p in zip(order, probabilities)]


@dataclass(frozen=True)
class Hit:
    """One retrieved segment: 1-based rank, where it is, its alignment probability and its sentence."""

    rank: int
    video_id: str
    start: float
    end: float
    score: float
    text: str


def retrieve(
    loaded: LoadedModel, query: str, segments: Sequence[dict[str, Any]], top_k: int = 5, two_stage: int = 0
) -> list[Hit]:
    """The ``top_k`` segments (corpus examples with visual words) that best match ``query``."""
    found = search(loaded, query, [s["video_ids"] for s in segments], top_k, two_stage)
    return [
        Hit(rank, segments[i]["video_id"], float(segments[i]["start"]), float(segments[i]["end"]), score,
            segments[i]["text"])
        for rank, (i, score) in enumerate(found, start=1)
    ]
