"""``videobert plan CONFIG``: what a run config will make of its videos, before any stage runs.

Print the plan of a run config, as videobert run prints it first: the videos and their total length
(each probed; a sample of a large corpus), the clips, the visual vocabulary the vocab settings will
give for that many clips, the corpus's examples and splits, the pretraining steps times the step time
measured on this device in a few steps (the estimated time) and the memory. A hopeless plan — a
vocabulary of a handful of words, pretraining on the CPU of more than a day, a test split too small
to evaluate — gets a warning naming the setting to change. Nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import command, log, new_parser, say


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert plan", __doc__)
    parser.add_argument("config", type=Path, metavar="CONFIG", help="run config (YAML), as videobert run takes it")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set vocab.depth=2")
    parser.add_argument("--no-timing", action="store_true", help="do not time pretraining steps on this device")
    return parser


def show_plan(runner, title: str, measure: bool = True) -> None:
    """Print ``runner``'s plan on stdout and its warnings on stderr."""
    from videobert.plan import make_plan

    plan = make_plan(runner, measure=measure)
    say(f"plan of {title}:")
    say(plan.text())
    for warning in plan.warnings:
        log.warning("%s", warning)


def run(args: argparse.Namespace) -> int:
    from videobert.runner import Runner, load_run_config

    cfg = load_run_config(args.config, args.set)
    show_plan(Runner(cfg, Path("runs") / args.config.stem), str(args.config), measure=not args.no_timing)
    return 0


main = command("videobert plan", build_parser, run)


if __name__ == "__main__":
    sys.exit(main())
