"""``videobert demo [-o DIR]``: the synthetic corpus through every stage on CPU, then the metrics."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from pipelines.common import command, new_parser, say, stage_flags
from pipelines.run import execute, fail_on_missed, report_bars
from videobert.caption.stage import format_suite
from videobert.forecast.stage import format_report as format_forecast
from videobert.retrieval.stage import format_report
from videobert.store import read_json

DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "retrieval.ipynb"


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "videobert demo",
        "Generate the synthetic narrated-video corpus and run every stage on it on the CPU — decode,\n"
        "S3D features, visual words, text, pretraining, the dual encoder of search, evaluation, segment\n"
        "features, captioning and forecasting — with pipelines/configs/demo.yaml (measured before the\n"
        "distil stage: 6.6 minutes on 2 cores with AVX-512 BF16, 16-19 on 2 AVX2-only cores; BENCHMARKS.md).\n"
        "Prints the test split's metrics beside chance and their baselines, then each figure the demo\n"
        "promises beside its bar (the config's bars: section) and the commands to query the trained\n"
        "model; exits 1 naming the bars missed. Rerunning skips the stages that are done.",
    )
    parser.add_argument("-o", "--out", type=Path, default=Path("runs/demo"), metavar="DIR",
                        help="run folder (default: runs/demo)")
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, metavar="YAML",
                        help="run config (default: the packaged demo.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the demo config, e.g. --set synth.videos=48")
    return parser


def next_steps(run_dir: Path) -> list[str]:
    """The one-line commands to query the demo's model and to open the notebook on it."""
    model = shlex.quote(str(run_dir / "model"))
    notebook = shlex.quote(str(NOTEBOOK)) if NOTEBOOK.exists() else "notebooks/retrieval.ipynb"
    return [
        "Search the held-out videos in a browser, and watch the seconds that matched (then open http://127.0.0.1:8000/):",
        f"  videobert serve {model}",
        "Or on the command line (the model folder carries them; copy it anywhere):",
        f"  videobert retrieve {model} \"now the red circle moves left\" --top-k 5 "
        f"--sheet {shlex.quote(str(run_dir / 'hits.jpg'))}",
        "In Python:",
        "  from videobert import VideoBERTPipeline; pipe = VideoBERTPipeline.from_pretrained("
        + repr(str(run_dir / "model")) + "); print(pipe.search(\"now the red circle moves left\"))",
        "Open the retrieval notebook on this model (pip install -e \".[notebook]\" first):",
        f"  VIDEOBERT_MODEL={model} jupyter notebook {notebook}",
    ]


def run(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    runner = execute(args.config, args.out, assignments=args.set, flags=stage_flags(args))
    ran = {result.name for result in runner.results if result.status == "ran"}  # their figures were printed as they ran
    metrics = runner.folder("evaluate") / "metrics.json"
    if "evaluate" not in ran and metrics.exists():
        say()
        say(format_report(read_json(metrics, "evaluation metrics")))
    captions = runner.folder("caption") / "metrics.json"
    if "caption" not in ran and runner.enabled("caption") and captions.exists():
        say()
        say("\n".join(format_suite(read_json(captions, "caption metrics"))))
    forecasts = runner.folder("forecast") / "metrics.json"
    if "forecast" not in ran and runner.enabled("forecast") and forecasts.exists():
        say()
        say("\n".join(format_forecast(read_json(forecasts, "forecast metrics"))))
    bars = report_bars(runner)
    say()
    say(f"demo finished in {time.perf_counter() - began:.0f} s; run folder {runner.run_dir}")
    say("\n".join(next_steps(runner.run_dir)))
    fail_on_missed(bars)
    return 0


main = command("videobert demo", build_parser, run)


if __name__ == "__main__":
    sys.exit(main())
