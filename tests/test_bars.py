"""The bars the demo promises: kept in its config, checked on a finished run's metrics files, and a
demo whose figures miss them exits 1 naming each (without training anything: the metrics files of
a run are written here)."""

from __future__ import annotations

import json

import pytest

from videobert.bars import BarsConfig, check_bars, check_run_bars, format_bars, missed
from videobert.errors import ConfigError

BARS = BarsConfig(align_accuracy=0.75, t2v_r5_over_chance=3.0, zero_shot={"colour": 0.5, "action": 0.35},
                  caption_beats_baselines=["both"], forecast_log_loss_below_bigram=True)
NAMES = ["alignment accuracy", "text→video R@5 / chance", "zero-shot colour top-1", "zero-shot action top-1",
         "captioner on both features, CIDEr", "forecast log-loss (nats)"]


def evaluate_metrics(align=0.86, r5=0.40, colour=0.71, action=0.63):
    zero_shot = {name: {"top1": top1, "chance_top1": 1 / 6} for name, top1 in (("colour", colour), ("action", action))}
    return {"split": "test", "align_accuracy": align, "t2v": {"r5": r5, "chance_r5": 0.035}, "zero_shot": zero_shot}


def caption_metrics(captioner=2.44, nearest=1.65, consensus=1.90):
    figures = {kind: {"cider": cider, "bleu4": 0.2} for kind, cider in
               (("captioner", captioner), ("nearest_neighbour", nearest), ("consensus", consensus))}
    return {"split": "test", "by_features": {"both": {**figures, "consensus_k": 10}}}


def forecast_metrics(model=3.59, bigram=3.77):
    return {"split": "test", "log_loss": {"model": model, "bigram": bigram},
            "model_minus_bigram": {"log_loss": {"difference": model - bigram, "low": model - bigram - 0.1,
                                                "high": model - bigram + 0.1}}}


def test_the_demo_config_holds_the_bars_it_promises():
    from pipelines.demo import DEMO_CONFIG
    from videobert.runner import load_run_config

    assert load_run_config(DEMO_CONFIG).bars == BARS


def test_a_run_that_learned_holds_every_bar():
    results = check_bars(BARS, evaluate_metrics(), caption_metrics(), forecast_metrics())
    assert [r.name for r in results] == NAMES and all(r.held for r in results) and not missed(results)
    assert results[1].value == pytest.approx(0.40 / 0.035)
    lines = format_bars(results)
    assert all(name in "\n".join(lines) for name in NAMES) and "MISSED" not in "\n".join(lines)


def test_a_run_that_did_not_learn_misses_its_bars_and_each_is_named():
    results = check_bars(BARS, evaluate_metrics(align=0.5, r5=0.05, colour=0.2, action=0.17),
                         caption_metrics(captioner=1.8), forecast_metrics(model=3.9))
    assert missed(results) == NAMES
    assert all("MISSED" in line for line in format_bars(results)[1:])
    # a captioner above one baseline but not the other misses too, and a bar is a bar: equal holds
    assert missed(check_bars(BARS, evaluate_metrics(align=0.75), caption_metrics(captioner=1.7), forecast_metrics())) \
        == ["captioner on both features, CIDEr"]


def test_figures_not_measured_miss_their_bars_saying_why(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(evaluate_metrics()))
    old_caption = caption_metrics()
    del old_caption["by_features"]["both"]["consensus"]  # a caption stage of an earlier version
    (tmp_path / "caption").mkdir()
    (tmp_path / "caption" / "metrics.json").write_text(json.dumps(old_caption))
    results = check_run_bars(BARS, tmp_path / "eval", tmp_path / "caption", None)
    assert missed(results) == NAMES[4:]
    assert "no consensus baseline" in results[4].note and "no forecast section" in results[5].note
    assert results[5].value is None


def test_bars_are_checked_as_config():
    with pytest.raises(ConfigError, match="bars.zero_shot.colour"):
        BarsConfig(zero_shot={"colour": 5}).check()
    with pytest.raises(ConfigError, match="caption_beats_baselines"):
        BarsConfig(caption_beats_baselines=["words"]).check()


@pytest.fixture
def finished_demo(tmp_path, monkeypatch):
    """``videobert demo`` on a run folder whose stages are done: the runner is not run, its metrics
    files are written here; returns a function that writes them and runs the demo's command."""
    import logging

    import pipelines.demo as demo
    from videobert.runner import Runner, load_run_config

    for name in ("videobert", "pipelines"):  # the command routes these loggers to stderr: give them back after
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", list(logger.handlers))
        monkeypatch.setattr(logger, "propagate", logger.propagate)
        monkeypatch.setattr(logger, "level", logger.level)

    def execute(config, out, assignments=(), flags=()):
        return Runner(load_run_config(config, assignments), out)

    monkeypatch.setattr(demo, "execute", execute)
    # the full reports need full metrics files; the bars are what is tested here
    monkeypatch.setattr(demo, "format_report", lambda metrics: "retrieval report")
    monkeypatch.setattr(demo, "format_suite", lambda metrics: ["caption report"])
    monkeypatch.setattr(demo, "format_forecast", lambda metrics: ["forecast report"])

    def run(evaluate, caption, forecast, *args):
        for folder, metrics in (("eval", evaluate), ("caption", caption), ("forecast", forecast)):
            (tmp_path / folder).mkdir(exist_ok=True)
            (tmp_path / folder / "metrics.json").write_text(json.dumps(metrics))
        return demo.main(["--out", str(tmp_path), *args])

    return run


def test_the_demo_exits_0_when_its_bars_hold(finished_demo, capsys):
    assert finished_demo(evaluate_metrics(), caption_metrics(), forecast_metrics()) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES) and "MISSED" not in out


def test_a_sabotaged_demo_exits_1_naming_the_bars_it_missed(finished_demo, capsys):
    code = finished_demo(evaluate_metrics(align=0.52, action=0.2), caption_metrics(captioner=1.5), forecast_metrics())
    captured = capsys.readouterr()
    assert code == 1
    error = captured.err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("videobert demo: error: 3 bar(s) missed: alignment accuracy 0.520")
    assert "zero-shot action top-1 0.200" in error[0] and "captioner on both features" in error[0]
    assert "colour" not in error[0] and captured.out.count("MISSED") == 3
    # the bars are the config's: --set changes them like any other key
    assert finished_demo(evaluate_metrics(align=0.52, action=0.2), caption_metrics(captioner=1.5), forecast_metrics(),
                         "--set", "bars.align_accuracy=0.5", "--set", "bars.zero_shot.action=0.1",
                         "--set", "bars.caption_beats_baselines=[]") == 0
