"""A corpus as a retrieval gallery: its segments, and the videos and labels it was built from.

The retrieval gallery of a split is its text-video examples (sentences with their clips): query
i is example i's sentence and its true match example i's visual words, so the score matrix is
square; video-only examples are not queries. Searching a split (:mod:`videobert.search`) ranks
every segment with visual words, text or not.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from videobert.corpus.reader import CorpusSplit, corpus_summary, corpus_visual_words, load_corpus
from videobert.errors import InputError
from videobert.inference import LoadedModel
from videobert.manifest import LABELS_FILE, SPLITS, read_manifest
from videobert.retrieval.zeroshot import read_label_rows, segment_words
from videobert.readers import Field, check_fields
from videobert.store import read_json, read_jsonl
from videobert.vocab.stage import TokensInfo, load_tokens, read_tokens_info

log = logging.getLogger(__name__)


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


def video_paths(corpus_dir: str | Path) -> dict[str, Path]:
    """``{video_id: video file}`` from the manifest the corpus was built from."""
    return {entry.video_id: entry.video for entry in read_manifest(manifest_path(corpus_dir))}
