"""``videobert forecast RUN [VIDEO_ID] --corpus CORPUS``: forecast future visual words from the video so far.

Forecast the visual words that follow a video's words so far (the paper's future forecasting).
The model reads the video-only layout it was pretrained on with the future masked,
[CLS] [>] v_1 … v_k [MASK]×n [SEP], and fills the masks left to right, each among the visual words
only, feeding each chosen word back.

Without VIDEO_ID: next-word accuracy on a corpus split. For every video of --split and every clip
t >= 1 (every clip counts, pauses between narrated segments included; the context runs across
them), the word of clip t is predicted from the --context words before it, one masked slot.
Printed and written to OUT/metrics.json (default OUT: RUN/forecast-<split>): top-1 and top-5
accuracy beside a unigram baseline (the most frequent words) and a bigram baseline (the most
frequent successors of the previous word, falling back to the unigram order), both counted on
the train split's videos, a repeat baseline (the previous word again, then the bigram's others)
and chance (1/V, 5/V); the log-loss (nats a word: how much probability the forecast gave the word
that came) of the model beside the bigram's (absolute discounting interpolated with the unigram,
its discount from the train counts), the unigram's (add-one) and chance (log V); then the model's
margins over the bigram and over repeat, each with a 95 % interval from resampling the split's
videos (a margin whose interval holds 0 is no win; a log-loss margin below 0 is the model's
gain); metrics.json also holds the margins over the unigram.

With VIDEO_ID (any video of the corpus's visual words): the --words words forecast after the
clips that end by --at SECONDS (default: the first half of the video), from the --context words
before, each with its probability, beside the words that actually follow; --text gives the
narration on the text side; --strip FILE.jpg draws the exemplar thumbnail of each context and
forecast word in a row (grey where the model folder's visual vocabulary has no exemplar).

  videobert forecast RUN --corpus CORPUS --split test
  videobert forecast RUN synth_0003 --corpus CORPUS --at 12 --words 4 --strip forecast.jpg
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, command, new_parser, note, resolve_config
from videobert.corpus.reader import check_complete
from videobert.errors import ConfigError
from videobert.forecast import stage
from videobert.forecast.predict import VideoForecast, forecast_strip, video_forecast
from videobert.media import save_jpeg
from videobert.retrieval.display import exemplar_images
from videobert.retrieval.gallery import check_same_vocabulary
from videobert.retrieval.inference import LoadedModel, load_model
from videobert.store import StageCall, StageSummary


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert forecast", __doc__)
    parser.add_argument("run", type=Path, metavar="RUN", help="run or model folder (videobert pretrain)")
    parser.add_argument("video_id", nargs="?", metavar="VIDEO_ID",
                        help="forecast within this video instead of measuring the split")
    parser.add_argument("--corpus", type=Path, required=True, metavar="CORPUS",
                        help="corpus folder (videobert corpus): its splits and the visual words of its videos")
    parser.add_argument("-o", "--out", type=Path, metavar="OUT", help="without VIDEO_ID: output folder "
                        "(default: RUN/forecast-<split>)")
    parser.add_argument("--at", type=float, metavar="SECONDS",
                        help="with VIDEO_ID: forecast after the clips that end by this time (default: half the video)")
    parser.add_argument("--text", metavar="SENTENCE", help="with VIDEO_ID: a sentence on the text side (the narration)")
    parser.add_argument("--strip", type=Path, metavar="FILE.jpg",
                        help="with VIDEO_ID: write the exemplar of each context and forecast word in a row")
    add_config_arguments(parser, stage.ForecastConfig)
    return parser


def argv(call: StageCall) -> list[str]:
    """The command line of a pipeline's forecast stage."""
    return [str(call.inputs["run_dir"]), "--corpus", str(call.inputs["corpus_dir"]), "-o", str(call.out_dir),
            "--config", str(call.config_file)]


def run(args: argparse.Namespace) -> None:
    cfg = resolve_config(stage.ForecastConfig, args)
    if args.video_id is None:
        extra = [flag for flag, value in (("--at", args.at), ("--text", args.text), ("--strip", args.strip)) if value is not None]
        if extra:
            raise ConfigError(f"{', '.join(extra)}: only with a VIDEO_ID")
        report(stage.run(args.run, args.corpus, args.out, cfg))
        return
    if args.out is not None:
        raise ConfigError("-o/--out: only without VIDEO_ID (the split's metrics); a forecast prints, --strip draws")
    check_complete(args.corpus)
    loaded = load_model(args.run, cfg.device, cfg.precision, cfg.batch_tokens)
    check_same_vocabulary(loaded, args.corpus)
    result = video_forecast(loaded, args.corpus, args.video_id, cfg.words, cfg.context, args.at, args.text)
    print_forecast(result)
    if args.strip is not None:
        save_jpeg(strip(loaded, result, cfg.strip_size), args.strip)
        print(f"strip: {args.strip}")


def print_forecast(result: VideoForecast) -> None:
    cs, at = result.clip_seconds, result.at_clip
    print(f"{result.video_id}: {result.clips} clips of {cs:g} s; forecast after clip {at - 1} ({at * cs:g} s) "
          f"from the {len(result.context)} words of clips {result.first_clip}-{at - 1}")
    print("context  " + " ".join(str(w) for w in result.context))
    print(f"{'clip':>6}{'start s':>9}{'forecast':>10}{'p':>8}{'actual':>8}")
    for step, (word, probability) in enumerate(zip(result.predicted, result.probabilities)):
        actual = result.actual[step] if step < len(result.actual) else None
        mark = "" if actual is None else ("  =" if actual == word else "  x")
        print(f"{at + step:>6}{(at + step) * cs:>9.1f}{word:>10}{probability:>8.3f}"
              f"{'-' if actual is None else actual:>8}{mark}")
    hits = sum(a == w for a, w in zip(result.actual, result.predicted))
    print(f"{hits} of {len(result.actual)} forecast words match the video"
          + (f" ({len(result.predicted) - len(result.actual)} past its end)" if len(result.actual) < len(result.predicted) else ""))


def strip(loaded: LoadedModel, result: VideoForecast, size: int):
    vocab_dir = loaded.vocab.visual_vocab
    context_images = exemplar_images(vocab_dir, result.context)
    forecast_images = exemplar_images(vocab_dir, result.predicted)
    if all(image is None for image in context_images + forecast_images):
        note("the model folder's visual vocabulary has no exemplar thumbnails: the strip's tiles are grey")
    return forecast_strip(context_images, forecast_images, [f"v{w}" for w in result.context],
                          [f"v{w}\np={p:.2f}" for w, p in zip(result.predicted, result.probabilities)], size)


def report(summary: StageSummary) -> None:
    print(summary.message)
    print(f"\nmetrics: {summary.out_dir / 'metrics.json'}")


main = command("videobert forecast", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
