"""A corpus as a retrieval gallery: its segments, the videos and labels it was built from, and
searching it with a sentence (``videobert retrieve``).

The retrieval gallery of a split is its text-video examples (sentences with their clips): query
i is example i's sentence and its true match example i's visual words, so the score matrix is
square; video-only examples are not queries. Searching a split ranks every segment with visual
words, text or not.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from videobert.config import field
from videobert.corpus.reader import CorpusSplit, corpus_summary, corpus_visual_words, load_corpus
from videobert.errors import ConfigError, InputError, StageError
from videobert.index.folder import check_index_codebook, load_index
from videobert.inference import InferenceConfig, LoadedModel, load_model
from videobert.manifest import LABELS_FILE, SPLITS, read_manifest
from videobert.model_folder import TEST_INDEX
from videobert.retrieval.scoring import align_probability, score_pairs
from videobert.retrieval.two_stage import first_stage_candidates
from videobert.retrieval.zeroshot import read_label_rows, segment_words
from videobert.readers import Field, check_fields
from videobert.store import read_json, read_jsonl
from videobert.vocab.stage import TokensInfo, load_tokens, read_tokens_info

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


def check_model_tokens(loaded: LoadedModel, tokens_dir: str | Path) -> TokensInfo:
    """A TOKENS folder's ``tokens.json``, which must record the model's visual vocabulary (its size
    and, where both record it, its codebook)."""
    info = read_tokens_info(tokens_dir)
    where = Path(tokens_dir) / "tokens.json"
    if info.vocab_size != loaded.layout.visual_vocab_size:
        raise InputError(f"{where}: {info.vocab_size} visual words, the model has "
                         f"{loaded.layout.visual_vocab_size}; tokenize with the model's vocabulary")
    if info.codebook and loaded.vocab.codebook and info.codebook != loaded.vocab.codebook:
        raise InputError(f"{where}: codebook {info.codebook}, the model's is {loaded.vocab.codebook}; tokenize "
                         "with the model's visual_vocab")
    return info


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
        candidate = manifest_path(corpus_dir).parent / LABELS_FILE
    except InputError:
        return None
    return candidate if candidate.is_file() else None


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


@dataclass
class Gallery:
    """What evaluation ranks: ``texts`` (WordPiece ids) and ``videos`` (visual words) of N
    segments, query i's true match item i; ``groups`` numbers each segment's video (negatives of
    the alignment accuracy come from other videos); ``labelled`` is what zero-shot classification
    reads (label rows, each video's visual words, the clip length, the split's videos)."""

    texts: list
    videos: list
    groups: np.ndarray
    source: dict[str, Any]
    labelled: tuple | None = None

    def sample(self, keep: np.ndarray) -> "Gallery":
        return Gallery([self.texts[i] for i in keep], [self.videos[i] for i in keep], self.groups[keep], self.source,
                       self.labelled)


def corpus_gallery(corpus_dir: str | Path, split: str, labels: str | Path | None) -> Gallery:
    """A corpus split's text-video examples (read through its mapped files) and, with ``labels``,
    the split's labelled segments."""
    corpus = CorpusSplit(corpus_dir, split)
    rows = text_video_rows(corpus)
    labelled = None
    if labels is not None:
        label_rows = read_label_rows(labels)
        videos = set(corpus.video_names())
        tokens, clip_seconds = corpus_visual_words(corpus_dir, {r["video_id"] for r in label_rows} & videos)
        labelled = (label_rows, tokens, clip_seconds, videos)
    return Gallery([corpus.text_ids(int(r)) for r in rows], [corpus.video_ids(int(r)) for r in rows],
                   corpus.video_codes[rows], {"corpus": str(Path(corpus_dir).absolute())}, labelled)


# the fields of a segments.jsonl row, by type and bounds (times as transcripts bound them)
SEGMENT_FIELDS = {
    "video_id": Field("str"), "start": Field("number", 0, 1e7), "end": Field("number", 0, 1e7),
    "sentence": Field("str"), "split": Field("str", required=False),
}


def read_segments(path: str | Path, splits: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Per split, the rows of a ``segments.jsonl`` (``video_id``, ``start``, ``end``, ``sentence``,
    ``split`` — one of train, val, test; test when absent — ``line`` added), in file order. A
    malformed row (a field of another type, a time that is not a number of seconds, a split that
    is none of the three) is an error naming its line."""
    path = Path(path)
    wanted: dict[str, list[dict[str, Any]]] = {split: [] for split in splits}
    for number, row in read_jsonl(path, "segments"):
        if not isinstance(row, dict) or not all(k in row for k in ("video_id", "start", "end", "sentence")):
            raise InputError(f"{path}:{number}: a segment needs video_id, start, end and sentence")
        check_fields(row, f"{path}:{number}", SEGMENT_FIELDS)
        start, end = float(row["start"]), float(row["end"])
        if not end > start:
            raise InputError(f"{path}:{number}: segment of {row['video_id']!r} ends ({end}) before it starts ({start})")
        split = row.get("split", "test")
        if split not in SPLITS:
            raise InputError(f"{path}:{number}: split: {split[:40]!r} is not one of {', '.join(SPLITS)}")
        if split in wanted:
            wanted[split].append({"video_id": row["video_id"], "start": start, "end": end,
                                  "sentence": row["sentence"], "line": number})
    return wanted


def segments_gallery(loaded: LoadedModel, segments_path: str | Path, tokens_dir: str | Path, split: str,
                     labels: str | Path | None) -> Gallery:
    """Annotated segments (``segments.jsonl``: ``video_id``, ``start``, ``end``, ``sentence``,
    ``split``) of ``split``: each sentence tokenized with the model's tokenizer, each segment's
    video the visual words of the clips it overlaps (TOKENS). Segments whose video has no visual
    words, that cover no clip, or whose sentence has no WordPiece are left out and counted; a
    malformed row is an error (:func:`read_segments`)."""
    segments_path = Path(segments_path)
    rows = read_segments(segments_path, [split])[split]
    clip_seconds = check_model_tokens(loaded, tokens_dir).clip_seconds
    videos = {r["video_id"] for r in rows}
    tokens = load_tokens(tokens_dir, videos)
    texts, words, groups, left_out = [], [], [], Counter()
    number_of: dict[str, int] = {}
    for row in rows:
        if row["video_id"] not in tokens:
            left_out["no visual words"] += 1
            continue
        video_words = segment_words(tokens, row["video_id"], float(row["start"]), float(row["end"]), clip_seconds)
        text = loaded.vocab.encode_text(str(row["sentence"]))
        if not video_words.size:
            left_out["no clip"] += 1
            continue
        if not text:
            left_out["no WordPiece"] += 1
            continue
        texts.append(text)
        words.append(video_words)
        groups.append(number_of.setdefault(row["video_id"], len(number_of)))
    if left_out:
        log.warning("%s: %d of the %s split's %d segments left out (%s)", segments_path, sum(left_out.values()), split,
                    len(rows), ", ".join(f"{k}: {v}" for k, v in left_out.items()))
    labelled = (read_label_rows(labels), tokens, clip_seconds, videos) if labels is not None else None
    source = {"segments": str(segments_path.absolute()), "tokens": str(Path(tokens_dir).absolute()),
              "left_out": dict(left_out)}
    return Gallery(texts, words, np.array(groups, dtype=np.int64), source, labelled)


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


@dataclass
class SearchResult:
    """What ``videobert retrieve`` found: the hits, how many segments were searched and where, and
    the video file of each video id (read only when asked for)."""

    hits: list[Hit]
    searched: int
    where: str
    video_paths: Callable[[], dict[str, Path]]


def search_collection(model_dir: str | Path, query: str, cfg: RetrieveConfig, index: str | Path | None = None,
                      corpus: str | Path | None = None) -> SearchResult:
    """The ``cfg.top_k`` segments best matching ``query`` among those of ``corpus``'s ``cfg.split``,
    of ``index`` (``videobert index``), or by default of the model folder's own ``test_index``."""
    loaded = load_model(model_dir, cfg.device, cfg.precision, cfg.batch_tokens)
    if corpus is not None:
        check_same_vocabulary(loaded, corpus)
        segments = gallery_segments(corpus, cfg.split)
        where = f"the {cfg.split} split of {corpus}"
        paths = lambda: video_paths(corpus)  # noqa: E731 - read only when asked for
    else:
        found = index if index is not None else Path(model_dir) / TEST_INDEX
        if index is None and not Path(found).is_dir():
            raise InputError(f"{model_dir}: carries no test_index; give an index (videobert index) or a corpus")
        opened = check_index_codebook(load_index(found), loaded.vocab.codebook)
        segments, where, paths = opened.segments(), str(opened.folder), opened.video_paths
    if not segments:
        raise StageError(f"{where}: no segment with visual words")
    return SearchResult(retrieve(loaded, query, segments, cfg.top_k, cfg.two_stage), len(segments), where, paths)


def video_paths(corpus_dir: str | Path) -> dict[str, Path]:
    """``{video_id: video file}`` from the manifest the corpus was built from."""
    return {entry.video_id: entry.video for entry in read_manifest(manifest_path(corpus_dir))}


def format_hits(hits: Sequence[Hit]) -> list[str]:
    """A table of hits: rank, video, start, end, alignment probability, sentence."""
    lines = [f"{'rank':>4}  {'video_id':<24}{'start':>8}{'end':>8}{'score':>8}  sentence"]
    lines += [f"{hit.rank:>4}  {hit.video_id:<24}{hit.start:>8.2f}{hit.end:>8.2f}{hit.score:>8.4f}  {hit.text}"
              for hit in hits]
    return lines
