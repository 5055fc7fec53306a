"""Forecasting future visual words from the video so far (``videobert forecast``).

``predict`` (the masked-future input, left-to-right generation, the next-word metric — accuracy
and log-loss — and its unigram and bigram baselines, the strip of exemplars), ``stage`` (the
RUN/forecast-<split> folder: ``run`` and :func:`evaluate_forecast`).
"""

from videobert.forecast.predict import (
    Baselines, VideoForecast, baseline_hits, baseline_log_loss, bigram_probability, fit_baselines, forecast,
    forecast_input, forecast_metrics, forecast_strip, video_forecast,
)
from videobert.forecast.stage import ForecastConfig, evaluate_forecast, format_report, run

__all__ = [
    "Baselines", "ForecastConfig", "VideoForecast", "baseline_hits", "baseline_log_loss", "bigram_probability",
    "evaluate_forecast", "fit_baselines", "forecast", "forecast_input", "forecast_metrics", "forecast_strip",
    "format_report", "run", "video_forecast",
]
