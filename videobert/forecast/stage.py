"""The forecast stage: RUN + CORPUS -> RUN/forecast-<split> (``config.yaml``, ``metrics.json``):
how well a trained run predicts the next visual word of a video from the words before it.

``run`` creates the folder, writes ``config.yaml`` and ``metrics.json``; :func:`evaluate_forecast`
computes the metrics (:func:`videobert.forecast.predict.forecast_metrics`, whose docstring states
the positions rule and the baselines): ``predictions``, ``videos``, ``context``, ``model``,
``bigram``, ``unigram``, ``repeat``, ``chance`` (each ``{"top1", "top5"}``), ``log_loss``
(``{"model", "bigram", "unigram", "chance"}``, nats a word), ``model_minus_bigram``,
``model_minus_unigram`` (each ``{"top1", "top5", "log_loss"}``), ``model_minus_repeat``
(``{"top1", "top5"}``), each margin ``{"difference", "low", "high"}``: the margin and its 95 %
interval over videos; then ``intervals``, ``baselines``, ``positions``, and where it came from
(``run``, ``corpus``, ``split``, ``visual_vocab_size``, ``device``, ``precision``, ``seconds``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from videobert import config as cfgmod
from videobert import logs
from videobert.config import field
from videobert.corpus.reader import check_complete
from videobert.errors import ConfigError, StageError
from videobert.forecast.predict import (
    VideoForecast, forecast_metrics, forecast_strip, split_video_ids, split_visual_words, video_forecast,
)
from videobert.inference import InferenceConfig, LoadedModel, load_model
from videobert.media import save_jpeg
from videobert.retrieval.gallery import check_same_vocabulary
from videobert.store import StageSummary, atomic_write_json, prepare_output_dir
from videobert.vocab.stage import exemplar_images

log = logging.getLogger(__name__)


@dataclass
class ForecastConfig(InferenceConfig):
    """Configuration of ``videobert forecast``: where the model runs, then what is forecast."""

    split: Literal["train", "val", "test"] = field("test", help="corpus split whose videos are forecast (the baselines "
                                                                "are always counted on the train split)")
    context: int = field(8, help="visual words before a position the model sees (the most recent ones)")
    words: int = field(4, help="with VIDEO_ID: visual words forecast after --at")
    strip_size: int = field(96, help="with --strip: side of each tile, pixels")

    def check(self) -> None:
        InferenceConfig.check(self)
        if self.context < 1 or self.words < 1:
            raise ConfigError("context, words: need >= 1")
        if self.strip_size < 16:
            raise ConfigError("strip_size: need >= 16")


def run(model_dir: str | Path, corpus_dir: str | Path, out_dir: str | Path | None, cfg: ForecastConfig) -> StageSummary:
    """Measure next-word forecasting of ``model_dir`` on ``corpus_dir``'s split into ``out_dir``
    (default: ``RUN/forecast-<split>``); ``details`` is ``metrics.json``."""
    began = time.perf_counter()
    cfg.check()
    check_complete(corpus_dir)
    loaded = load_model(model_dir, cfg.device, cfg.precision, cfg.batch_tokens)  # inputs first, then the folder
    check_same_vocabulary(loaded, corpus_dir)
    out = Path(out_dir) if out_dir is not None else Path(model_dir) / f"forecast-{cfg.split}"
    prepare_output_dir(out)
    cfgmod.save(cfg, out / "config.yaml")
    metrics = evaluate_forecast(model_dir, corpus_dir, cfg, loaded)
    atomic_write_json(out / "metrics.json", metrics)
    return StageSummary("forecast", out, metrics["predictions"], 0, 0, time.perf_counter() - began,
                        "\n".join(format_report(metrics)), metrics)


def evaluate_forecast(model_dir: str | Path, corpus_dir: str | Path, cfg: ForecastConfig,
                      loaded: LoadedModel | None = None) -> dict[str, Any]:
    """The content of ``metrics.json``: next-word forecasting on the split's videos (every clip's
    visual word, from the corpus's TOKENS), the baselines from the train split's. ``loaded``
    reuses a loaded model. Memory: a chunk of videos' visual words and the train split's
    distinct word pairs."""
    began = time.perf_counter()
    cfg.check()
    check_complete(corpus_dir)
    if loaded is None:
        loaded = load_model(model_dir, cfg.device, cfg.precision, cfg.batch_tokens)
    check_same_vocabulary(loaded, corpus_dir)
    videos = split_video_ids(corpus_dir, cfg.split)
    train = videos if cfg.split == "train" else split_video_ids(corpus_dir, "train")
    if cfg.split == "train":
        log.warning("forecasting the train split: the baselines are counted on the same videos")
    with logs.progress(total=None, desc="forecasting", unit="word") as bar:
        metrics = forecast_metrics(loaded, split_visual_words(corpus_dir, videos), split_visual_words(corpus_dir, train),
                                   cfg.context, on_chunk=bar.update)
    if metrics["predictions"] == 0:
        raise StageError(f"{corpus_dir}: no video of the {cfg.split} split has two clips or more to forecast")
    return {
        "run": str(Path(model_dir).absolute()),
        "corpus": str(Path(corpus_dir).absolute()),
        "split": cfg.split,
        **metrics,
        "visual_vocab_size": loaded.layout.visual_vocab_size,
        "device": str(loaded.device),
        "precision": loaded.precision,
        "seconds": round(time.perf_counter() - began, 3),
    }


def format_report(metrics: dict[str, Any]) -> list[str]:
    """The metrics in one line, each figure beside the baselines and chance (top-1/top-5); the
    log-loss beside the baselines'; then the model's margins over the bigram and over repetition,
    each with its 95 % interval over videos (a metrics.json written before the log-loss or the
    margins were measured gives the lines it has)."""
    def pair(name: str) -> str:
        return f"{metrics[name]['top1']:.3f}/{metrics[name]['top5']:.3f}"

    def small(value: float) -> str:
        return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"

    chance = metrics["chance"]
    line = (f"forecast ({metrics['split']}, {metrics['predictions']} next words, context {metrics['context']}): "
            f"top-1 {metrics['model']['top1']:.3f} top-5 {metrics['model']['top5']:.3f} | bigram {pair('bigram')} | "
            f"unigram {pair('unigram')} | " + (f"repeat {pair('repeat')} | " if "repeat" in metrics else "")
            + f"chance {small(chance['top1'])}/{small(chance['top5'])}")
    lines = [line]
    if "log_loss" in metrics:
        loss = metrics["log_loss"]
        lines.append("log-loss, nats a word (lower is better): " + " | ".join(
            f"{name} {loss[name]:.3f}" for name in ("model", "bigram", "unigram", "chance")))
    measures = {"top1": "top-1", "top5": "top-5", "log_loss": "log-loss"}
    lines += [f"model - {name}: " + ", ".join(f"{measures[k]} {_margin(m)}" for k, m in metrics[f"model_minus_{name}"].items())
              + f" ({metrics['videos']} videos)" for name in ("bigram", "repeat") if f"model_minus_{name}" in metrics]
    return lines


def _margin(m: dict[str, float | None]) -> str:
    """``+0.011 (95 % interval -0.020 to +0.041)``, or the difference alone where there is none."""
    if m["low"] is None:
        return f"{m['difference']:+.3f} (one video: no interval)"
    return f"{m['difference']:+.3f} (95 % interval {m['low']:+.3f} to {m['high']:+.3f})"


# ------------------------------------------------------------------------ one video
def forecast_one_video(model_dir: str | Path, corpus_dir: str | Path, video_id: str, cfg: ForecastConfig,
                       at: float | None = None, text: str | None = None,
                       strip: str | Path | None = None) -> VideoForecast:
    """``cfg.words`` words of ``video_id`` forecast after the clips that end by ``at`` seconds
    (:func:`videobert.forecast.predict.video_forecast`); with ``strip``, the exemplar of each
    context and forecast word drawn in a row into that JPEG (grey tiles, with a warning, where the
    model folder's visual vocabulary has no exemplars)."""
    cfg.check()
    check_complete(corpus_dir)
    loaded = load_model(model_dir, cfg.device, cfg.precision, cfg.batch_tokens)
    check_same_vocabulary(loaded, corpus_dir)
    result = video_forecast(loaded, corpus_dir, video_id, cfg.words, cfg.context, at, text)
    if strip is not None:
        save_jpeg(_strip(loaded, result, cfg.strip_size), strip)
    return result


def _strip(loaded: LoadedModel, result: VideoForecast, size: int):
    vocab_dir = loaded.vocab.visual_vocab
    context_images = exemplar_images(vocab_dir, result.context)
    forecast_images = exemplar_images(vocab_dir, result.predicted)
    if all(image is None for image in context_images + forecast_images):
        log.warning("the model folder's visual vocabulary has no exemplar thumbnails: the strip's tiles are grey")
    return forecast_strip(context_images, forecast_images, [f"v{w}" for w in result.context],
                          [f"v{w}\np={p:.2f}" for w, p in zip(result.predicted, result.probabilities)], size)


def format_video_forecast(result: VideoForecast) -> list[str]:
    """A one-video forecast as a table: each forecast word's clip, start, probability and the word
    that came, then how many match."""
    cs, at = result.clip_seconds, result.at_clip
    lines = [f"{result.video_id}: {result.clips} clips of {cs:g} s; forecast after clip {at - 1} ({at * cs:g} s) "
             f"from the {len(result.context)} words of clips {result.first_clip}-{at - 1}",
             "context  " + " ".join(str(w) for w in result.context),
             f"{'clip':>6}{'start s':>9}{'forecast':>10}{'p':>8}{'actual':>8}"]
    for step, (word, probability) in enumerate(zip(result.predicted, result.probabilities)):
        actual = result.actual[step] if step < len(result.actual) else None
        mark = "" if actual is None else ("  =" if actual == word else "  x")
        lines.append(f"{at + step:>6}{(at + step) * cs:>9.1f}{word:>10}{probability:>8.3f}"
                     f"{'-' if actual is None else actual:>8}{mark}")
    hits = sum(a == w for a, w in zip(result.actual, result.predicted))
    past = len(result.predicted) - len(result.actual)
    lines.append(f"{hits} of {len(result.actual)} forecast words match the video" + (f" ({past} past its end)" if past > 0 else ""))
    return lines
