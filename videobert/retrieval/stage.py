"""The evaluate stage: RUN + CORPUS -> RUN/eval-<split> (docs/formats.md): what ``videobert
evaluate`` computes, and what the notebook calls.

``run`` creates the folder, writes ``config.yaml`` and ``metrics.json`` (and adds the figures to the
model folder's card, :mod:`videobert.model_card`); :func:`evaluate` computes
the metrics (see :mod:`videobert.retrieval.gallery` for the gallery):

* ``t2v`` / ``v2t``: ``r1``, ``r5``, ``r10``, ``median_rank``, ``mean_rank`` and their chance
  levels ``chance_r1`` … ``chance_mean_rank`` (tie rule in :mod:`videobert.retrieval.metrics`);
* ``align_accuracy`` (and ``align`` with its parts), chance 0.5;
* ``zero_shot``: per attribute ``top1``, ``top5``, ``chance_top1``, ``chance_top5``,
  ``prior_top1``, ``prior_top5`` (:mod:`videobert.retrieval.zeroshot`);
* ``two_stage`` when the model has a dual encoder (``MODEL/dual``, videobert distil): the two-stage
  metrics (its first stage keeps K candidates, the cross-encoder re-ranks them), the first stage's
  recall of the true item within K beside chance, the dual encoder's own ``dual`` ``t2v``/``v2t``
  metrics beside chance, and the recall cost against exhaustive scoring;
* ``queries``: how many queries were ranked and how they were chosen — every one, or above
  ``exhaustive_limit`` gallery items a seeded sample, each against the whole gallery (the
  metrics then estimate the gallery's from those queries).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from videobert import config as cfgmod
from videobert import logs
from videobert.benchmarks.published import comparison
from videobert.config import field
from videobert.corpus.reader import check_complete
from videobert.errors import ConfigError, StageError
from videobert.dual import load_dual, text_vectors, video_vectors
from videobert.inference import InferenceConfig, LoadedModel, load_model
from videobert.manifest import LABELS_FILE, ZERO_SHOT_FILE, spec_beside
from videobert.model_card import record_evaluation
from videobert.model_folder import read_feature_settings
from videobert.retrieval.exhaustive import exhaustive_counts
from videobert.retrieval.gallery import check_same_vocabulary, corpus_gallery, default_labels, segments_gallery
from videobert.retrieval.metrics import RECALL_AT, chance_metrics, metrics_from_counts
from videobert.retrieval.scoring import align_accuracy
from videobert.retrieval.two_stage import DualFirstStage, two_stage_ladder
from videobert.retrieval.zeroshot import labelled_segments, load_spec, read_label_rows, spec_note, zero_shot
from videobert.runtime import LONG_BARRIER, ProcessGroup, dist_env, process_group
from videobert.store import StageSummary, atomic_write_json, prepare_output_dir, read_json

log = logging.getLogger(__name__)


@dataclass
class EvaluateConfig(InferenceConfig):
    """Configuration of ``videobert evaluate``: where the model runs, then the gallery and what is
    measured on it."""

    split: Literal["train", "val", "test"] = field("test", help="corpus split whose text-video examples are the gallery")
    ties: Literal["average", "pessimistic"] = field(
        "average", help="tied scores: the true item's expected rank under random tie-breaking, or last among its ties")
    two_stage: int | None = field(None, help="also rank two-stage: the first stage (the model's dual encoder, videobert "
                                             "distil) keeps K candidates per query for the cross-encoder (none: the K "
                                             "chosen on val when the model has a dual encoder, else off; 0: off)")
    exhaustive: bool | None = field(
        None, help="rank queries against the whole gallery with the cross-encoder: --exhaustive every query whatever "
                   "the gallery's size, --no-exhaustive none (the two-stage ranking only, with --two-stage K); unset: "
                   "every query up to exhaustive_limit gallery items, above that a seeded sample of sample_queries")
    exhaustive_limit: int = field(10_000, help="largest gallery whose every query is ranked (N² pairs) unless --exhaustive")
    sample_queries: int = field(1_000, help="above exhaustive_limit: queries ranked, a seeded sample, each against the "
                                            "whole gallery (2 × queries × N pairs)")
    max_queries: int = field(0, help="evaluate on a seeded sample of this many text-video examples (0: all)")
    seed: int = field(0, help="seed of the alignment negatives and of the samples")

    def check(self) -> None:
        InferenceConfig.check(self)
        if (self.two_stage is not None and self.two_stage < 0) or self.max_queries < 0:
            raise ConfigError("two_stage, max_queries: need >= 0")
        if self.exhaustive is False and self.two_stage == 0:
            raise ConfigError("exhaustive: false needs the two-stage ranking (otherwise nothing ranks the gallery)")
        if self.max_queries == 1:
            raise ConfigError("max_queries: need at least 2 (or 0 for all)")
        if self.exhaustive_limit < 2 or self.sample_queries < 1:
            raise ConfigError("exhaustive_limit: need >= 2; sample_queries: need >= 1")


def run(model_dir: str | Path, corpus_dir: str | Path | None, out_dir: str | Path | None, cfg: EvaluateConfig,
        labels: str | Path | None = None, zero_shot_spec: str | Path | None = None, segments: str | Path | None = None,
        tokens: str | Path | None = None) -> StageSummary:
    """Evaluate ``model_dir`` on ``corpus_dir``'s split — or on annotated ``segments`` with their
    visual words in ``tokens`` — into ``out_dir`` (default: ``RUN/eval-<split>``); ``details`` is
    ``metrics.json``. Zero-shot classification needs both ``labels`` (default: ``labels.jsonl``
    beside the corpus's manifest, as ``videobert synth`` writes it, or beside ``segments``, as
    ``videobert prepare`` writes it) and ``zero_shot_spec`` (default: ``zeroshot.yaml`` beside the
    labels, where both write it). Under torchrun every rank scores its share of the pairs and rank
    0 writes the folder."""
    began = time.perf_counter()
    env = dist_env()
    given = labels
    if labels is None and segments is not None and (Path(segments).parent / LABELS_FILE).is_file():
        labels = Path(segments).parent / LABELS_FILE
    if labels is None and corpus_dir is not None:
        labels = default_labels(corpus_dir)
    if labels is not None and zero_shot_spec is None:
        zero_shot_spec = spec_beside(labels)
    if given is not None and zero_shot_spec is None:
        read_label_rows(given)  # a missing or malformed file is its own error
        raise ConfigError(f"--labels {given}: needs the zero-shot spec that classifies it (--zero-shot SPEC, or a "
                          f"{ZERO_SHOT_FILE} beside it)")
    if labels is None:
        log.info("no labels (--labels): zero-shot classification is skipped")
    elif zero_shot_spec is None:
        log.warning("%s: no zero-shot spec (--zero-shot SPEC, or %s beside the labels): zero-shot classification is "
                    "skipped", labels, ZERO_SHOT_FILE)
    else:
        log.info("zero-shot labels %s, spec %s", labels, zero_shot_spec)
    out = Path(out_dir) if out_dir is not None else Path(model_dir) / f"eval-{cfg.split}"
    if env.is_main:
        prepare_output_dir(out)
        cfgmod.save(cfg, out / "config.yaml")
    with process_group(env.has_rendezvous, "gloo", LONG_BARRIER) as group:
        metrics = evaluate(model_dir, corpus_dir, cfg, labels=labels, zero_shot_spec=zero_shot_spec, segments=segments,
                           tokens=tokens,
                           progress=lambda batches, total=None: logs.progress(
                               batches, total=total, desc="scoring pairs", unit="batch",
                               disable=not (env.is_main and logs.progress_enabled())),
                           group=group)
    if env.is_main:
        atomic_write_json(out / "metrics.json", metrics)
        record_evaluation(model_dir, metrics)  # the model card's model-index
    return StageSummary("evaluate", out, metrics["gallery"], 0, 0, time.perf_counter() - began,
                        format_report(metrics), metrics)


def _sample(count: int, size: int, seed: int, stream: int) -> np.ndarray:
    """Sorted indices of a seeded sample of ``size`` of ``count`` items (all when ``size`` is 0 or
    at least ``count``)."""
    if not size or size >= count:
        return np.arange(count, dtype=np.int64)
    return np.sort(np.random.default_rng([seed, stream]).choice(count, size=size, replace=False)).astype(np.int64)


def _with_chance(metrics: dict[str, float], n: int) -> dict[str, float]:
    return {**metrics, **chance_metrics(n)}


def evaluate(
    model_dir: str | Path,
    corpus_dir: str | Path | None,
    cfg: EvaluateConfig,
    labels: str | Path | None = None,
    zero_shot_spec: str | Path | None = None,
    progress: Callable | None = None,
    loaded: LoadedModel | None = None,
    group: ProcessGroup | None = None,
    segments: str | Path | None = None,
    tokens: str | Path | None = None,
) -> dict[str, Any]:
    """Retrieval both ways, alignment accuracy and (with ``labels`` and a spec) zero-shot
    classification of ``model_dir`` on ``corpus_dir``'s split — or, with ``segments`` and
    ``tokens``, on the annotated segments of that split (a benchmark's ``segments.jsonl``, their
    visual words from TOKENS). Returns the content of ``metrics.json``.

    ``progress`` wraps the batches of the exhaustive scoring; ``loaded`` reuses a loaded model;
    ``group`` shares the exhaustive scoring among torchrun ranks. Memory grows with the gallery,
    never with its square: a corpus split is read through its mapped files and the ranking keeps
    two counts per query (:mod:`videobert.retrieval.exhaustive`).
    """
    began = time.perf_counter()
    if (segments is None) == (corpus_dir is None) or (segments is None) != (tokens is None):
        raise ConfigError("evaluate a corpus (--corpus) or annotated segments (--segments with --tokens), one of the two")
    if corpus_dir is not None:
        check_complete(corpus_dir)
    if loaded is None:
        loaded = load_model(model_dir, cfg.device, cfg.precision, cfg.batch_tokens)
    labels = labels if zero_shot_spec is not None else None  # read before the long scoring: errors come first
    specs = load_spec(zero_shot_spec) if labels is not None else None
    if corpus_dir is not None:
        check_same_vocabulary(loaded, corpus_dir)
        gallery = corpus_gallery(corpus_dir, cfg.split, labels)
    else:
        gallery = segments_gallery(loaded, segments, tokens, cfg.split, labels)
    gallery = gallery.sample(_sample(len(gallery.texts), cfg.max_queries, cfg.seed, 0x5A3))
    texts, videos = gallery.texts, gallery.videos
    n = len(texts)
    where = corpus_dir if corpus_dir is not None else segments
    if n < 2:
        raise StageError(f"{where}: the {cfg.split} split has {n} text-video segments; retrieval needs 2 or more (give "
                         "videos a split in the manifest, or raise the corpus's test_share, the share of videos without "
                         "one drawn into test)")
    queries, how = _queries(n, cfg)
    metrics: dict[str, Any] = {
        "run": str(Path(model_dir).absolute()),
        **({"corpus": str(Path(corpus_dir).absolute())} if corpus_dir is not None else gallery.source),
        "split": cfg.split,
        "gallery": n,
        "videos": int(np.unique(gallery.groups).size),
        "queries": {"ranked": int(queries.size), "scoring": how, "seed": cfg.seed},
        "ties": cfg.ties,
        "device": str(loaded.device),
        "precision": loaded.precision,
    }
    if segments is not None and (Path(segments).parent / "benchmark.json").is_file():
        metrics["benchmark"] = read_json(Path(segments).parent / "benchmark.json", "benchmark summary")
    seconds: dict[str, float] = {}

    if cfg.exhaustive is not False:
        start = time.perf_counter()
        counts = exhaustive_counts(loaded, texts, videos, queries, progress, group)
        seconds["exhaustive"] = time.perf_counter() - start
        metrics["t2v"] = _with_chance(metrics_from_counts(*counts.t2v, cfg.ties), n)
        metrics["v2t"] = _with_chance(metrics_from_counts(*counts.v2t, cfg.ties), n)
        q = int(queries.size)
        metrics["pairs_scored"] = n * n if q == n else 2 * q * n - q * q  # gallery pairs ranked
        metrics["unique_pairs_scored"] = counts.pairs_scored  # forward passes (equal contents scored once)
    dual = load_dual(model_dir, loaded) if cfg.two_stage != 0 else None
    if cfg.two_stage and dual is None:
        raise ConfigError(f"--two-stage {cfg.two_stage}: {model_dir} has no dual encoder (run videobert distil)")
    if dual is None and cfg.exhaustive is False:
        raise ConfigError(f"exhaustive: false needs the two-stage ranking, and {model_dir} has no dual encoder")
    if dual is not None:
        start = time.perf_counter()
        k = int(cfg.two_stage or dual.info.get("k") or 16)
        first = DualFirstStage(text_vectors(dual.model, loaded, texts), video_vectors(dual.model, loaded, videos))
        ladder = two_stage_ladder(loaded, texts, videos, [k], first, queries)
        result = ladder.by_k[k]
        seconds["two_stage"] = time.perf_counter() - start
        two_stage = {
            "k": k,
            "k_chosen_on": None if cfg.two_stage else dual.info.get("split"),
            "first_stage": "dual encoder (MODEL/dual)",
            "t2v": _with_chance(metrics_from_counts(*result.t2v, cfg.ties), n),
            "v2t": _with_chance(metrics_from_counts(*result.v2t, cfg.ties), n),
            "first_stage_recall": result.first_stage_recall,
            "chance_first_stage_recall": min(k, n) / n,
            "dual": {d: _with_chance(metrics_from_counts(*ladder.first_stage[d], cfg.ties), n) for d in ("t2v", "v2t")},
            "pairs_scored": result.pairs_scored,
        }
        if cfg.exhaustive is not False:
            two_stage["recall_cost"] = {
                direction: {f"r{k}": metrics[direction][f"r{k}"] - two_stage[direction][f"r{k}"] for k in RECALL_AT}
                for direction in ("t2v", "v2t")
            }
        else:
            metrics["t2v"], metrics["v2t"] = two_stage["t2v"], two_stage["v2t"]
            metrics["pairs_scored"] = result.pairs_scored
        metrics["two_stage"] = two_stage

    start = time.perf_counter()
    align = align_accuracy(loaded, texts, videos, gallery.groups, cfg.seed)
    seconds["align"] = time.perf_counter() - start
    metrics["align_accuracy"] = align["accuracy"]
    metrics["align"] = align

    metrics["zero_shot"] = {}
    if gallery.labelled is not None:
        start = time.perf_counter()
        rows, tokens_of, clip_seconds, split_videos = gallery.labelled
        labelled = labelled_segments(rows, tokens_of, clip_seconds, split_videos)
        if labelled:
            metrics["zero_shot"] = zero_shot(loaded, specs, labelled)
        else:
            log.warning("zero-shot: %s labels no segment of the %s split's videos", labels, cfg.split)
        metrics["zero_shot_labels"] = str(Path(labels).absolute())
        metrics["zero_shot_spec"] = str(Path(zero_shot_spec).absolute())
        note = spec_note(zero_shot_spec)
        if note:
            metrics["zero_shot_note"] = note
        seconds["zero_shot"] = time.perf_counter() - start
    metrics["features"] = read_feature_settings(Path(model_dir))
    seconds["total"] = time.perf_counter() - began
    metrics["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    return metrics


def _queries(n: int, cfg: EvaluateConfig) -> tuple[np.ndarray, str]:
    """The gallery items ranked as queries, and how they were chosen."""
    if cfg.exhaustive or n <= cfg.exhaustive_limit:
        return np.arange(n, dtype=np.int64), "every query"
    sample = _sample(n, cfg.sample_queries, cfg.seed, 0x9E5)
    log.warning("a gallery of %d items is more than exhaustive_limit %d: ranking a seeded sample of %d queries, each "
                "against the whole gallery (--exhaustive ranks all %d, %d pairs)", n, cfg.exhaustive_limit, sample.size,
                n, n * n)
    return sample, "seeded query sample"


def format_report(metrics: dict[str, Any]) -> str:
    """The metrics as a table, each figure beside its chance level."""
    n = metrics["gallery"]
    queries = metrics.get("queries") or {"ranked": n, "scoring": "every query"}
    ranked = "" if queries["ranked"] == n else f"; {queries['ranked']} queries ranked, a seeded sample"
    lines = [
        f"{metrics['split']} split: {n} text-video segments from {metrics['videos']} videos "
        f"(gallery of {n}{ranked}; ties {metrics['ties']}; {metrics['device']} {metrics['precision']})",
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
        if "dual" in two_stage:
            lines.append(row("dual encoder t→v", two_stage["dual"]["t2v"]))
            lines.append(row("dual encoder v→t", two_stage["dual"]["v2t"]))
    lines.append(row("chance", metrics["t2v"], "chance_"))
    if two_stage:
        recall = two_stage["first_stage_recall"]
        chance = two_stage.get("chance_first_stage_recall")
        lines.append(f"two-stage: the first stage keeps the true item in its {two_stage['k']} candidates for "
                     f"{recall['t2v']:.1%} (t→v) / {recall['v2t']:.1%} (v→t) of queries"
                     + (f" (chance {chance:.1%})" if chance is not None else "")
                     + f"; {two_stage['pairs_scored']} pairs scored instead of {n * n}")
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
        if metrics.get("zero_shot_note"):
            lines.append(f"note: {metrics['zero_shot_note']}")
    else:
        lines += ["", "zero-shot: not evaluated (no labels)"]
    if metrics.get("benchmark"):
        beside = comparison(metrics, metrics["benchmark"], metrics.get("features"))
        if beside:
            lines += ["", beside]
    return "\n".join(lines)
