"""``videobert run CONFIG [--stages a,b] [--force STAGE]``: every stage in order into one run folder."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from pipelines.common import new_parser, run_main
from videobert.pipeline import STAGE_NAMES, Pipeline, load_pipeline_config, summary_lines

log = logging.getLogger("pipelines.run")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "videobert run",
        "Run the pipeline's stages in order into one run folder: "
        + ", ".join(STAGE_NAMES)
        + ".\nA stage whose config and inputs are unchanged since it finished is skipped; a changed stage\n"
        "reruns with every stage after it; an interrupted stage resumes. See pipelines/configs/ for\n"
        "examples (demo.yaml, paper.yaml, my_corpus.yaml).",
    )
    parser.add_argument("config", type=Path, metavar="CONFIG", help="pipeline config (YAML)")
    parser.add_argument("-o", "--out", type=Path, metavar="RUN",
                        help="run folder (default: runs/<config name> in the current folder)")
    parser.add_argument("--stages", metavar="A,B", help="run only these stages (the others must be up to date)")
    parser.add_argument("--force", action="append", default=[], metavar="STAGE",
                        help="rerun this stage and every stage after it, even if up to date")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set pretrain.steps=100")
    return parser


def launch(stage: str, argv: list[str], procs: int) -> int:
    """Run one stage: in this process, or under torchrun with ``procs`` processes."""
    if procs > 1:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={procs}", "-m", f"pipelines.{stage}", *argv]
        log.info("%s", " ".join(command))
        return subprocess.run(command, env={**os.environ}).returncode
    return importlib.import_module(f"pipelines.{stage}").main(argv)


def stage_flags(args: argparse.Namespace) -> list[str]:
    """The runner's --debug / --verbose / --quiet, passed on to every stage."""
    return [flag for flag, on in (("--debug", args.debug), ("--verbose", args.verbose), ("--quiet", args.quiet)) if on]


def execute(config_path: Path, run_dir: Path, stages: str | None = None, force: Sequence[str] = (),
            assignments: Sequence[str] = (), flags: Sequence[str] = ()) -> Pipeline:
    """Run the pipeline and log the per-stage summary (also when a stage fails)."""
    cfg = load_pipeline_config(config_path, assignments)
    pipeline = Pipeline(cfg, run_dir, lambda stage, argv, procs: launch(stage, [*argv, *flags], procs))
    only = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
    try:
        pipeline.run(only=only, force=force)
    finally:
        if pipeline.results:
            print("\n".join(summary_lines(pipeline.results, pipeline.run_dir)), flush=True)
    return pipeline


def run(args: argparse.Namespace) -> int:
    execute(args.config, args.out or Path("runs") / args.config.stem, args.stages, args.force, args.set,
            stage_flags(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("videobert run", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
