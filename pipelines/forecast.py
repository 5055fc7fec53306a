"""``videobert forecast RUN [VIDEO_ID] --corpus CORPUS``: forecast future visual words from the video so far.

The model reads [CLS] [>] v_1 … v_k [MASK]×n [SEP] and fills the masks left to right, each among
the visual words only, feeding each chosen word back (the paper's future forecasting).

Without VIDEO_ID: next-word accuracy on a corpus split — for every video of --split and every clip
t >= 1 (pauses between narrated segments included), the word of clip t from the --context words
before it. Printed and written to OUT/metrics.json (default OUT: RUN/forecast-<split>): top-1 and
top-5 beside unigram, bigram and repeat baselines counted on the train split and chance; the
log-loss (nats a word) beside the bigram's, the unigram's and chance; the model's margins over the
bigram and repeat, each with a 95 % interval from resampling the videos (a margin whose interval
holds 0 is no win).

With VIDEO_ID: the --words words after the clips that end by --at SECONDS (default: half the video),
with their probabilities, beside the words that follow; --text: the narration; --strip: exemplars.

  videobert forecast RUN --corpus CORPUS --split test
  videobert forecast RUN synth_0003 --corpus CORPUS --at 12 --words 4 --strip forecast.jpg
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, command, new_parser, report_metrics, resolve_config, say
from videobert.errors import ConfigError
from videobert.forecast import stage
from videobert.store import StageCall


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert forecast", __doc__)
    parser.add_argument("run", type=Path, metavar="RUN", help="run or model folder (videobert pretrain)")
    parser.add_argument("video_id", nargs="?", metavar="VIDEO_ID",
                        help="forecast within this video instead of measuring the split")
    parser.add_argument("--corpus", type=Path, required=True, metavar="CORPUS",
                        help="corpus folder (videobert corpus): its splits and the visual words of its videos")
    parser.add_argument("-o", "--out", type=Path, metavar="OUT", help="without VIDEO_ID: output folder (default: RUN/forecast-<split>)")
    parser.add_argument("--at", type=float, metavar="SECONDS",
                        help="with VIDEO_ID: forecast after the clips that end by this time (default: half the video)")
    parser.add_argument("--text", metavar="SENTENCE", help="with VIDEO_ID: a sentence on the text side (the narration)")
    parser.add_argument("--strip", type=Path, metavar="FILE.jpg",
                        help="with VIDEO_ID: write the exemplar of each context and forecast word in a row")
    add_config_arguments(parser, stage.ForecastConfig)
    return parser


def argv(call: StageCall) -> list[str]:
    """The command line of videobert run's forecast stage."""
    return [str(call.inputs["model_dir"]), "--corpus", str(call.inputs["corpus_dir"]), "-o", str(call.out_dir),
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
    result = stage.forecast_one_video(args.run, args.corpus, args.video_id, cfg, args.at, args.text, args.strip)
    say("\n".join(stage.format_video_forecast(result)))
    if args.strip is not None:
        say(f"strip: {args.strip}")


report = report_metrics

main = command("videobert forecast", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
