"""The bars a run promises to clear, kept with its config (a run config's ``bars:`` section), and
the check of a finished run's metrics against them.

``videobert demo`` (and ``videobert run`` with a ``bars:`` section) prints every figure beside its
bar and exits non-zero naming those missed, so a config that stops learning fails where it runs —
in CI too. Each bar reads the metrics file of one stage: ``eval/metrics.json`` (alignment,
text→video R@5, zero-shot), ``caption/metrics.json`` and ``forecast/metrics.json``. A figure the
run did not measure (its stage off, or its file of an earlier version) misses its bar, saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from videobert.config import field
from videobert.errors import ConfigError, InputError
from videobert.store import read_json


@dataclass
class BarsConfig:
    """The bars section of a run config: what the run's test-split figures must reach (a bar left
    out, or null, is not checked)."""

    align_accuracy: Optional[float] = field(None, help="[CLS] alignment accuracy on eval's split, at least")
    t2v_r5_over_chance: Optional[float] = field(None, help="text→video R@5 divided by its chance, at least")
    zero_shot: dict = field(default_factory=dict, help="zero-shot top-1 per attribute, at least (attribute: bar)")
    caption_beats_baselines: list[str] = field(
        default_factory=list, help="feature choices (s3d, videobert, both) whose captioner's CIDEr must be above both "
                                   "its baselines' (the nearest neighbour's and the consensus's)")
    forecast_log_loss_below_bigram: bool = field(False, help="the forecasts' log-loss below the bigram's")

    def check(self) -> None:
        for name in ("align_accuracy", "t2v_r5_over_chance"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"bars.{name}: need a number >= 0, got {value}")
        for attribute, value in self.zero_shot.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"bars.zero_shot.{attribute}: need a top-1 between 0 and 1, got {value!r}")
        unknown = [which for which in self.caption_beats_baselines if which not in ("s3d", "videobert", "both")]
        if unknown:
            raise ConfigError(f"bars.caption_beats_baselines: {unknown[0]!r} is not s3d, videobert or both")


@dataclass
class BarResult:
    """One figure beside its bar."""

    name: str  # what is measured, e.g. "zero-shot colour top-1"
    value: Optional[float]  # None: not measured
    bar: str  # the bar as people read it, e.g. ">= 0.5"
    held: bool
    note: str = ""  # a baseline or interval beside the figure, or why it was not measured


def _read(path: Path, what: str) -> tuple[Optional[dict], str]:
    if not path.is_file():
        return None, f"{path} not found (stage off or not run)"
    try:
        return read_json(path, what), ""
    except InputError as exc:
        return None, str(exc)


def _missing(name: str, bar: str, why: str) -> BarResult:
    return BarResult(name, None, bar, False, f"not measured: {why}")


def check_bars(bars: BarsConfig, evaluate: Optional[Mapping[str, Any]], caption: Optional[Mapping[str, Any]],
               forecast: Optional[Mapping[str, Any]], why: Mapping[str, str] | None = None) -> list[BarResult]:
    """Every bar of ``bars`` against the metrics of evaluate, caption and forecast (None: that
    file is missing; ``why`` says why, per stage name)."""
    why = dict(why or {})
    results: list[BarResult] = []
    if bars.align_accuracy is not None:
        name, bar = "alignment accuracy", f">= {bars.align_accuracy:g}"
        if evaluate is None or "align_accuracy" not in evaluate:
            results.append(_missing(name, bar, why.get("evaluate", "no align_accuracy in eval/metrics.json")))
        else:
            value = float(evaluate["align_accuracy"])
            results.append(BarResult(name, value, bar, value >= bars.align_accuracy))
    if bars.t2v_r5_over_chance is not None:
        name, bar = "text→video R@5 / chance", f">= {bars.t2v_r5_over_chance:g}"
        t2v = (evaluate or {}).get("t2v") or {}
        if not t2v.get("chance_r5"):
            results.append(_missing(name, bar, why.get("evaluate", "no t2v r5 and chance_r5 in eval/metrics.json")))
        else:
            value = float(t2v["r5"]) / float(t2v["chance_r5"])
            results.append(BarResult(name, value, bar, value >= bars.t2v_r5_over_chance,
                                     f"R@5 {t2v['r5']:.3f}, chance {t2v['chance_r5']:.3f}"))
    for attribute, minimum in bars.zero_shot.items():
        name, bar = f"zero-shot {attribute} top-1", f">= {minimum:g}"
        found = ((evaluate or {}).get("zero_shot") or {}).get(attribute)
        if not found or found.get("top1") is None:
            results.append(_missing(name, bar, why.get("evaluate", f"no zero-shot {attribute!r} in eval/metrics.json")))
        else:
            value = float(found["top1"])
            results.append(BarResult(name, value, bar, value >= minimum, f"chance {found.get('chance_top1', 0):.3f}"))
    for which in bars.caption_beats_baselines:
        name = f"captioner on {which} features, CIDEr"
        bar = "> nearest neighbour and consensus"
        figures = ((caption or {}).get("by_features") or {}).get(which)
        if not figures:
            results.append(_missing(name, bar, why.get("caption", f"no {which!r} captioner in caption/metrics.json")))
            continue
        if "consensus" not in figures:
            results.append(_missing(name, bar, "caption/metrics.json has no consensus baseline (made by an earlier "
                                               "version: rerun the caption stage, --force caption)"))
            continue
        value = float(figures["captioner"]["cider"])
        nearest, consensus = float(figures["nearest_neighbour"]["cider"]), float(figures["consensus"]["cider"])
        results.append(BarResult(name, value, bar, value > nearest and value > consensus,
                                 f"nearest neighbour {nearest:.3f}, consensus of {figures.get('consensus_k', '?')} "
                                 f"{consensus:.3f}"))
    if bars.forecast_log_loss_below_bigram:
        name, bar = "forecast log-loss (nats)", "< bigram's"
        loss = (forecast or {}).get("log_loss") or {}
        if "model" not in loss or "bigram" not in loss:
            results.append(_missing(name, bar, why.get("forecast", "no log_loss in forecast/metrics.json")))
        else:
            value, bigram = float(loss["model"]), float(loss["bigram"])
            interval = ((forecast or {}).get("model_minus_bigram") or {}).get("log_loss")
            note = f"bigram {bigram:.3f}"
            if interval:
                note += f"; model − bigram {interval['difference']:+.3f} ({interval['low']:+.3f}, {interval['high']:+.3f})"
            results.append(BarResult(name, value, f"< {bigram:.3f} (the bigram's)", value < bigram, note))
    return results


def check_run_bars(bars: BarsConfig, eval_dir: Path, caption_dir: Optional[Path],
                   forecast_dir: Optional[Path]) -> list[BarResult]:
    """:func:`check_bars` on a run's metrics files (a folder None: that stage is off)."""
    metrics: dict[str, Optional[dict]] = {}
    why: dict[str, str] = {}
    for stage, folder in (("evaluate", eval_dir), ("caption", caption_dir), ("forecast", forecast_dir)):
        if folder is None:
            metrics[stage], why[stage] = None, f"the run config has no {stage} section"
        else:
            metrics[stage], why[stage] = _read(Path(folder) / "metrics.json", f"{stage} metrics")
    return check_bars(bars, metrics["evaluate"], metrics["caption"], metrics["forecast"],
                      {stage: reason for stage, reason in why.items() if reason})


def format_bars(results: list[BarResult]) -> list[str]:
    """A line per bar: the figure, the bar, held or MISSED, and what stands beside it."""
    if not results:
        return []
    width = max(len(r.name) for r in results)
    lines = ["bars (the run config's bars section; test split)"]
    for r in results:
        value = f"{r.value:.3f}" if r.value is not None else "—"
        lines.append(f"  {r.name:<{width}}  {value:>7}  {r.bar:<34} {'held' if r.held else 'MISSED':<6}"
                     + (f"  {r.note}" if r.note else ""))
    return lines


def missed(results: list[BarResult]) -> list[str]:
    """The names of the bars missed."""
    return [r.name for r in results if not r.held]
