"""Evaluating a trained run on a corpus split, and searching it: what ``videobert evaluate`` and
``videobert retrieve`` compute, and what the notebook calls.

The retrieval gallery of a split is its text-video examples (sentences with their clips): query
i is example i's sentence and its true match example i's visual words, so the score matrix is
square; video-only examples are not queries. ``metrics.json`` holds (see :func:`evaluate`):

* ``t2v`` / ``v2t``: ``r1``, ``r5``, ``r10``, ``median_rank``, ``mean_rank`` and their chance
  levels ``chance_r1`` … ``chance_mean_rank`` (tie rule in :mod:`videobert.retrieval`);
* ``align_accuracy`` (and ``align`` with its parts), chance 0.5;
* ``zero_shot``: per attribute ``top1``, ``top5``, ``chance_top1``, ``chance_top5``,
  ``prior_top1``, ``prior_top5`` (:mod:`videobert.zeroshot`);
* ``two_stage`` when asked: the two-stage metrics, the first stage's recall of the true item
  within K, and the recall cost against exhaustive scoring.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from videobert.config import field
from videobert.corpus import SPLITS, load_corpus
from videobert.errors import ConfigError, InputError, StageError
from videobert.retrieval import (
    LoadedModel, RECALL_AT, align_accuracy, chance_metrics, load_model, metrics_from_counts, score_matrix, search,
    true_match_counts, two_stage_search,
)
from videobert.store import read_json

log = logging.getLogger(__name__)


@dataclass
class EvaluateConfig:
    """Configuration of ``videobert evaluate``."""

    split: Literal["train", "val", "test"] = field("test", help="corpus split whose text-video examples are the gallery")
    ties: Literal["average", "pessimistic"] = field(
        "average", help="tied scores: the true item's expected rank under random tie-breaking, or last among its ties")
    two_stage: int = field(0, help="also rank two-stage: a first stage keeps K candidates per query for the cross-encoder (0: off)")
    exhaustive: bool = field(True, help="score every text-video pair (N² passes); --no-exhaustive with --two-stage for large galleries")
    max_queries: int = field(0, help="evaluate on a seeded sample of this many text-video examples (0: all)")
    seed: int = field(0, help="seed of the alignment negatives and of the query sample")
    device: Literal["auto", "cpu", "cuda"] = field("auto", help="auto: the GPU if there is one")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = field("auto", help="auto: bf16 autocast on GPU, fp32 on CPU")
    batch_tokens: int = field(0, help="tokens per forward pass, padding included (0: 131072 on GPU, 8192 on CPU)")

    def check(self) -> None:
        if self.two_stage < 0 or self.max_queries < 0 or self.batch_tokens < 0:
            raise ConfigError("two_stage, max_queries, batch_tokens: need >= 0")
        if not self.exhaustive and not self.two_stage:
            raise ConfigError("exhaustive: false needs --two-stage K (otherwise nothing ranks the gallery)")
        if self.max_queries == 1:
            raise ConfigError("max_queries: need at least 2 (or 0 for all)")


@dataclass
class RetrieveConfig:
    """Configuration of ``videobert retrieve``."""

    split: Literal["train", "val", "test", "all"] = field("test", help="corpus split to search (all: every split)")
    top_k: int = field(5, help="hits to show")
    two_stage: int = field(0, help="score only the first stage's K best segments with the cross-encoder (0: all)")
    sheet_size: int = field(160, help="side of each frame of the contact sheet, pixels")
    device: Literal["auto", "cpu", "cuda"] = field("auto", help="auto: the GPU if there is one")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = field("auto", help="auto: bf16 autocast on GPU, fp32 on CPU")
    batch_tokens: int = field(0, help="tokens per forward pass, padding included (0: 131072 on GPU, 8192 on CPU)")

    def check(self) -> None:
        if self.top_k < 1 or self.two_stage < 0 or self.batch_tokens < 0 or self.sheet_size < 16:
            raise ConfigError("top_k: need >= 1; two_stage, batch_tokens: need >= 0; sheet_size: need >= 16")


# ------------------------------------------------------------------------ corpus side
def corpus_summary(corpus_dir: str | Path) -> dict[str, Any]:
    return read_json(Path(corpus_dir) / "summary.json", "corpus summary")


def check_same_vocabulary(loaded: LoadedModel, corpus_dir: str | Path) -> None:
    """The corpus must use the run's joint vocabulary (same text and visual sizes)."""
    corpus = read_json(Path(corpus_dir) / "vocabulary.json", "joint vocabulary")
    ours = loaded.vocab.to_json()
    for key in ("text_vocab_size", "visual_vocab_size"):
        if corpus.get(key) != ours[key]:
            raise InputError(f"{Path(corpus_dir) / 'vocabulary.json'}: {key} {corpus.get(key)} differs from the run's "
                             f"{ours[key]}; evaluate on the corpus the run was trained with (or one built alike)")


def text_video_examples(corpus_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The split's examples that have both a sentence and visual words."""
    return [e for e in load_corpus(corpus_dir, split) if e["text_ids"] and e["video_ids"]]


def gallery_segments(corpus_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The segments with visual words of a split (``all``: of every split), text or not."""
    splits = SPLITS if split == "all" else (split,)
    return [e for s in splits for e in load_corpus(corpus_dir, s) if e["video_ids"]]


def manifest_path(corpus_dir: str | Path) -> Path:
    """The manifest the corpus was built from (``summary.json`` → ``inputs.manifest``)."""
    summary = corpus_summary(corpus_dir)
    path = (summary.get("inputs") or {}).get("manifest")
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


def read_label_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a labels JSONL: each needs ``video_id``, ``start``, ``end``."""
    import json

    path = Path(path)
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: labels file not found") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not all(k in row for k in ("video_id", "start", "end")):
            raise InputError(f"{path}:{number}: a label row needs video_id, start and end")
        rows.append(row)
    return rows


def corpus_visual_words(corpus_dir: str | Path) -> tuple[dict[str, np.ndarray], float]:
    """Every clip's visual word per video (the TOKENS folder the corpus was built from) and the
    clip length in seconds."""
    from videobert.vocab import load_tokens

    summary = corpus_summary(corpus_dir)
    tokens = (summary.get("inputs") or {}).get("tokens")
    if not tokens:
        raise InputError(f"{Path(corpus_dir) / 'summary.json'}: records no tokens folder (rebuild the corpus)")
    return load_tokens(tokens), float(summary["clip_seconds"])


# ------------------------------------------------------------------------ evaluation
def _sample(examples: list[dict], count: int, seed: int) -> list[dict]:
    if not count or count >= len(examples):
        return examples
    keep = np.sort(np.random.default_rng([seed, 0x5A3]).choice(len(examples), size=count, replace=False))
    return [examples[i] for i in keep]


def _with_chance(metrics: dict[str, float], n: int) -> dict[str, float]:
    return {**metrics, **chance_metrics(n)}


def evaluate(
    run_dir: str | Path,
    corpus_dir: str | Path,
    cfg: EvaluateConfig,
    labels: str | Path | None = None,
    zero_shot_spec: str | Path | None = None,
    progress: Callable | None = None,
    loaded: LoadedModel | None = None,
) -> dict[str, Any]:
    """Retrieval both ways, alignment accuracy and (with ``labels`` and a spec) zero-shot
    classification of ``run_dir`` on ``corpus_dir``'s split. Returns the content of ``metrics.json``.

    ``progress`` wraps the batches of the exhaustive scoring; ``loaded`` reuses a loaded model.
    """
    from videobert.zeroshot import labelled_segments, load_spec, zero_shot

    began = time.perf_counter()
    if loaded is None:
        loaded = load_model(run_dir, cfg.device, cfg.precision, cfg.batch_tokens)
    check_same_vocabulary(loaded, corpus_dir)
    zero_shot_inputs = None
    if labels is not None and zero_shot_spec is not None:  # read before the long scoring: errors come first
        tokens, clip_seconds = corpus_visual_words(corpus_dir)
        zero_shot_inputs = (load_spec(zero_shot_spec), read_label_rows(labels), tokens, clip_seconds)
    examples = _sample(text_video_examples(corpus_dir, cfg.split), cfg.max_queries, cfg.seed)
    if len(examples) < 2:
        raise StageError(f"{corpus_dir}: the {cfg.split} split has {len(examples)} text-video examples; retrieval needs 2 or more")
    texts = [e["text_ids"] for e in examples]
    videos = [e["video_ids"] for e in examples]
    n = len(examples)
    metrics: dict[str, Any] = {
        "run": str(Path(run_dir).absolute()),
        "corpus": str(Path(corpus_dir).absolute()),
        "split": cfg.split,
        "gallery": n,
        "videos": len({e["video_id"] for e in examples}),
        "ties": cfg.ties,
        "device": str(loaded.device),
        "precision": loaded.precision,
    }
    seconds: dict[str, float] = {}

    exhaustive = None
    if cfg.exhaustive:
        start = time.perf_counter()
        exhaustive = score_matrix(loaded, texts, videos, progress)
        seconds["exhaustive"] = time.perf_counter() - start
        metrics["t2v"] = _with_chance(metrics_from_counts(*true_match_counts(exhaustive), cfg.ties), n)
        metrics["v2t"] = _with_chance(metrics_from_counts(*true_match_counts(exhaustive.T), cfg.ties), n)
        metrics["pairs_scored"] = n * n
    if cfg.two_stage:
        start = time.perf_counter()
        result = two_stage_search(loaded, texts, videos, cfg.two_stage, exhaustive=None, progress=progress)
        seconds["two_stage"] = time.perf_counter() - start
        two_stage = {
            "k": cfg.two_stage,
            "first_stage": "predicted visual words · visual-word histogram (faiss IndexFlatIP)",
            "t2v": _with_chance(metrics_from_counts(*result.t2v, cfg.ties), n),
            "v2t": _with_chance(metrics_from_counts(*result.v2t, cfg.ties), n),
            "first_stage_recall": result.first_stage_recall,
            "pairs_scored": result.pairs_scored,
        }
        if exhaustive is not None:
            two_stage["recall_cost"] = {
                direction: {f"r{k}": metrics[direction][f"r{k}"] - two_stage[direction][f"r{k}"] for k in RECALL_AT}
                for direction in ("t2v", "v2t")
            }
        else:
            metrics["t2v"], metrics["v2t"] = two_stage["t2v"], two_stage["v2t"]
            metrics["pairs_scored"] = result.pairs_scored
        metrics["two_stage"] = two_stage

    start = time.perf_counter()
    align = align_accuracy(loaded, texts, videos, [e["video_id"] for e in examples], cfg.seed)
    seconds["align"] = time.perf_counter() - start
    metrics["align_accuracy"] = align["accuracy"]
    metrics["align"] = align

    metrics["zero_shot"] = {}
    if zero_shot_inputs is not None:
        start = time.perf_counter()
        specs, rows, tokens, clip_seconds = zero_shot_inputs
        split_videos = {e["video_id"] for e in load_corpus(corpus_dir, cfg.split)}
        segments = labelled_segments(rows, tokens, clip_seconds, split_videos)
        if segments:
            metrics["zero_shot"] = zero_shot(loaded, specs, segments)
        else:
            log.warning("zero-shot: %s labels no segment of the %s split's videos", labels, cfg.split)
        metrics["zero_shot_labels"] = str(Path(labels).absolute())
        metrics["zero_shot_spec"] = str(Path(zero_shot_spec).absolute())
        seconds["zero_shot"] = time.perf_counter() - start
    seconds["total"] = time.perf_counter() - began
    metrics["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    return metrics


def format_report(metrics: dict[str, Any]) -> str:
    """The metrics as a table, each figure beside its chance level."""
    n = metrics["gallery"]
    lines = [
        f"{metrics['split']} split: {n} text-video segments from {metrics['videos']} videos "
        f"(gallery of {n}; ties {metrics['ties']}; {metrics['device']} {metrics['precision']})",
        "",
        f"{'retrieval':<22}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'median rank':>13}{'mean rank':>11}",
    ]

    def row(name: str, m: dict[str, float], prefix: str = "") -> str:
        return (f"{name:<22}" + "".join(f"{m[f'{prefix}r{k}']:>8.3f}" for k in RECALL_AT)
                + f"{m[prefix + 'median_rank']:>13.1f}{m[prefix + 'mean_rank']:>11.1f}")

    two_stage = metrics.get("two_stage")
    if two_stage is None or "recall_cost" in two_stage:
        lines.append(row("text → video", metrics["t2v"]))
        lines.append(row("video → text", metrics["v2t"]))
    if two_stage is not None:
        lines.append(row(f"two-stage K={two_stage['k']} t→v", two_stage["t2v"]))
        lines.append(row(f"two-stage K={two_stage['k']} v→t", two_stage["v2t"]))
    lines.append(row("chance", metrics["t2v"], "chance_"))
    if two_stage:
        recall = two_stage["first_stage_recall"]
        lines.append(f"two-stage: the first stage keeps the true item in its {two_stage['k']} candidates for "
                     f"{recall['t2v']:.1%} (t→v) / {recall['v2t']:.1%} (v→t) of queries; "
                     f"{two_stage['pairs_scored']} pairs scored instead of {n * n}")
    align = metrics["align"]
    lines += ["", f"alignment accuracy {align['accuracy']:.3f} (chance {align['chance']:.3f}) on {align['pairs']} pairs, "
                  f"half aligned: aligned {align['positive_accuracy']:.3f}, misaligned {align['negative_accuracy']:.3f}"]
    zero = metrics.get("zero_shot") or {}
    if zero:
        lines += ["", f"{'zero-shot':<14}{'top-1':>7}{'chance':>8}{'prior':>7}   {'top-5':>7}{'chance':>8}{'prior':>7}"
                      f"{'classes':>9}{'segments':>10}"]
        for name, z in zero.items():
            lines.append(f"{name:<14}{z['top1']:>7.3f}{z['chance_top1']:>8.3f}{z['prior_top1']:>7.3f}   "
                         f"{z['top5']:>7.3f}{z['chance_top5']:>8.3f}{z['prior_top5']:>7.3f}{z['classes']:>9}{z['segments']:>10}")
        lines.append("(prior: the same template without video — what the text alone predicts)")
    else:
        lines += ["", "zero-shot: not evaluated (no labels)"]
    return "\n".join(lines)


# ------------------------------------------------------------------------ search
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
