"""``videobert run CONFIG [--stages a,b] [--force STAGE]``: every stage in order into one run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from pipelines.common import command, new_parser, say, stage_flags, torchrun_launcher
from pipelines.plan import show_plan
from videobert.bars import BarResult, format_bars, missed
from videobert.errors import BarsMissed
from videobert.runner import STAGE_NAMES, Runner, load_run_config, summary_lines


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "videobert run",
        "Run the pipeline's stages in order into one run folder: "
        + ", ".join(STAGE_NAMES)
        + ".\nA stage whose config and inputs are unchanged since it finished is skipped; a changed stage\n"
        "reruns with every stage after it; an interrupted stage resumes. The plan comes first: videos,\n"
        "clips, visual words, corpus, pretraining time measured here, memory, and a warning naming the\n"
        "setting to change where the plan is hopeless (videobert plan CONFIG prints it alone). See\n"
        "pipelines/configs/ for examples (demo.yaml, paper.yaml, my_corpus.yaml, my_corpus_cpu.yaml).\n"
        "With a bars: section in CONFIG, a run of every stage ends with its figures beside their bars\n"
        "and exits 1 naming those missed.",
    )
    parser.add_argument("config", type=Path, metavar="CONFIG", help="run config (YAML)")
    parser.add_argument("-o", "--out", type=Path, metavar="RUN",
                        help="run folder (default: runs/<config name> in the current folder)")
    parser.add_argument("--stages", metavar="A,B", help="run only these stages (the others must be up to date)")
    parser.add_argument("--force", action="append", default=[], metavar="STAGE",
                        help="rerun this stage and every stage after it, even if up to date")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set pretrain.steps=100")
    parser.add_argument("--no-plan", action="store_true",
                        help="do not print the plan first (videobert plan CONFIG prints it alone)")
    return parser


def execute(config_path: Path, run_dir: Path, stages: str | None = None, force: Sequence[str] = (),
            assignments: Sequence[str] = (), flags: Sequence[str] = (), plan: bool = True) -> Runner:
    """Print the plan (``plan``), run the pipeline and print the per-stage summary (also when a
    stage fails)."""
    cfg = load_run_config(config_path, assignments)
    runner = Runner(cfg, run_dir, torchrun_launcher(flags))
    if plan:
        show_plan(runner, f"{config_path} into {runner.run_dir}")
    only = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
    try:
        runner.run(only=only, force=force)
    finally:
        if runner.results:
            say("\n".join(summary_lines(runner.results, runner.run_dir)))
    return runner


def report_bars(runner: Runner) -> list[BarResult]:
    """Print the finished run's figures beside its config's bars (nothing without a bars section)."""
    results = runner.bar_results()
    if results:
        say()
        say("\n".join(format_bars(results)))
    return results


def fail_on_missed(results: list[BarResult]) -> None:
    """:class:`BarsMissed` naming every bar missed, with its figure (exit code 1)."""
    names = missed(results)
    if names:
        figures = [f"{r.name} {r.value:.3f} (bar {r.bar})" if r.value is not None else f"{r.name} (not measured)"
                   for r in results if not r.held]
        raise BarsMissed(f"{len(names)} bar(s) missed: " + "; ".join(figures))


def run(args: argparse.Namespace) -> int:
    runner = execute(args.config, args.out or Path("runs") / args.config.stem, args.stages, args.force, args.set,
                     stage_flags(args), plan=not args.no_plan)
    if args.stages is None:
        fail_on_missed(report_bars(runner))
    return 0


main = command("videobert run", build_parser, run)


if __name__ == "__main__":
    sys.exit(main())
