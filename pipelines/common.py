"""What every stage entry point shares: config flags generated from the stage's dataclass, logging,
the mapping of errors to exit codes (0 success, 2 usage, 1 failure with a one-line reason), and
launching a stage under torchrun for ``videobert run``."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import logging
import subprocess
import sys
import traceback
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, TypeVar, Union

from videobert import config as cfgmod
from videobert import threads
from videobert.errors import ConfigError, StageError, VideoBertError
from videobert.logs import printable, set_progress, setup_logging
from videobert.runtime import dist_env
from videobert.store import StageCall, StageSummary

T = TypeVar("T")
log = logging.getLogger("pipelines")

_CFG_PREFIX = "cfg__"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line plus the usage, exit code 2."""

    def error(self, message: str) -> typing.NoReturn:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A command's parser; ``description`` may be its module's docstring, whose first paragraph (the
    one-line summary) is left out of ``--help``."""
    paragraphs = description.strip().split("\n\n", 1)
    if len(paragraphs) == 2 and paragraphs[0].startswith("``"):
        description = paragraphs[1]
    parser = _Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    return parser


def add_output(parser: argparse.ArgumentParser, metavar: str, help: str = "output folder") -> None:
    """The ``-o/--out FOLDER`` every stage writes into."""
    parser.add_argument("-o", "--out", type=Path, required=True, metavar=metavar, help=help)


def add_shard(parser: argparse.ArgumentParser, what: str) -> None:
    """``--shard I/N``: this job's share of ``what`` (job arrays; torchrun ranks share it further)."""
    parser.add_argument("--shard", metavar="I/N", help=f"process only share I of N (0-based) of {what}, for job arrays")


def _flag_type(tp: Any) -> tuple[Callable[[str], Any] | None, dict[str, Any]]:
    """argparse ``type`` and extra kwargs for a config field type, or (None, {}) if it has no flag."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            inner, extra = _flag_type(args[0])
            if inner is None:
                return None, {}

            def optional(text: str) -> Any:
                return None if text.lower() in ("none", "null") else inner(text)

            return optional, extra
        return None, {}
    if origin is Literal:
        choices = typing.get_args(tp)
        return type(choices[0]), {"choices": choices}
    if tp in (int, float, str):
        return tp, {}
    if tp is Path:
        return Path, {}
    return None, {}


def add_config_arguments(
    parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = (), title: str | None = None
) -> None:
    """``--config FILE``, ``--set KEY=VALUE`` and one ``--field-name`` flag per field of ``cls``.

    Flags only override what is given (defaults < YAML < flags < --set). Fields without a simple
    type (lists, nested configs) are reachable through ``--config`` and ``--set``.
    """
    group = parser.add_argument_group(title or "configuration (defaults < --config YAML < flags < --set)")
    group.add_argument("--config", type=Path, metavar="YAML", help="YAML file with keys of this stage's config")
    group.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help=f"override any config key, e.g. --set {set_example(cls, skip)}"
    )
    hints = cfgmod.field_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = hints[f.name]
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        if default is not None and default != "":
            help_text += f" (default: {default})"
        if cfgmod.is_speed_only(f):
            help_text += f" [{cfgmod.SPEED_ONLY_NOTE}]"
        flags = ["--" + f.name.replace("_", "-")]
        if f.metadata.get("former"):  # the earlier name stays an alias
            flags.append("--" + f.metadata["former"].replace("_", "-"))
            help_text += f" (also --{f.metadata['former'].replace('_', '-')}, its former name)"
        dest = _CFG_PREFIX + f.name
        if tp is bool or set(typing.get_args(tp)) == {bool, type(None)}:  # bool, or bool | None (unset: automatic)
            group.add_argument(*flags, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=help_text)
            continue
        conv, extra = _flag_type(tp)
        if conv is None:
            continue
        group.add_argument(
            *flags, dest=dest, type=conv, default=argparse.SUPPRESS, help=help_text,
            metavar=None if "choices" in extra else f.name.upper(), **extra,
        )


def set_example(cls: type, skip: Sequence[str] = ()) -> str:
    """``KEY=VALUE`` of a key of ``cls`` for ``--set``'s help: its first numeric setting at a value
    other than its default."""
    for f in dataclasses.fields(cls):
        default = f.default
        if f.name in skip or cfgmod.is_speed_only(f) or isinstance(default, bool):
            continue
        if isinstance(default, int):
            return f"{f.name}={default * 2 if default else 1}"
        if isinstance(default, float):
            return f"{f.name}={default * 2:g}" if default else f"{f.name}=0.1"
    hints = cfgmod.field_types(cls)
    for f in dataclasses.fields(cls):
        choices = [c for c in typing.get_args(hints[f.name]) if c != f.default] if typing.get_origin(hints[f.name]) is Literal else []
        if f.name not in skip and choices:
            return f"{f.name}={choices[-1] if f.name == 'device' else choices[0]}"
    return f"{dataclasses.fields(cls)[0].name}=..."


def resolve_config(cls: type[T], args: argparse.Namespace, section: str | None = None, **fixed: Any) -> T:
    """The stage config from ``--config``, flags, ``--set`` and ``fixed`` values (last wins)."""
    overrides = {k[len(_CFG_PREFIX) :]: v for k, v in vars(args).items() if k.startswith(_CFG_PREFIX)}
    overrides.update({k: v for k, v in fixed.items() if v is not None})
    return cfgmod.load(cls, getattr(args, "config", None), overrides, getattr(args, "set", None), section=section)


def command(prog: str, build_parser: Callable[[], argparse.ArgumentParser],
            run: Callable[[argparse.Namespace], int | None]) -> Callable[[Sequence[str] | None], int]:
    """A command's ``main(argv=None) -> exit code`` (see :func:`run_main`)."""
    return functools.partial(run_main, prog, build_parser, run)


def errors_only() -> None:
    """Log errors only from now on (the ranks of a torchrun launch other than rank 0)."""
    for name in ("videobert", "pipelines"):
        logging.getLogger(name).setLevel(logging.ERROR)


def say(text: Any = "") -> None:
    """Print ``text`` for people on stdout, its control characters made visible
    (:func:`videobert.logs.printable`: names and sentences come from files)."""
    print(printable(text), flush=True)


def note(message: str, *values: Any) -> None:
    """An information line on stderr (what a command says beside its output)."""
    log.info(message, *values)


def run_main(
    prog: str,
    build_parser: Callable[[], argparse.ArgumentParser],
    run: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv``, set up logging, call ``run`` and turn errors into exit codes."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    setup_logging(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    set_progress(not args.quiet)
    try:
        return int(run(args) or 0)
    except ConfigError as exc:
        _report(prog, exc, args.debug)
        return 2
    except VideoBertError as exc:
        _report(prog, exc, args.debug)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        _report(prog, exc, args.debug, unexpected=True)
        return 1


def _report(prog: str, exc: BaseException, debug: bool, unexpected: bool = False) -> None:
    if debug:
        traceback.print_exc()
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if unexpected:
        message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        if not debug:
            message += " (rerun with --debug for the traceback)"
    print(f"{prog}: error: {printable(message, newlines=False)}", file=sys.stderr)


def speaks() -> bool:
    """Whether this process prints a stage's result: rank 0 speaks for all under torchrun."""
    env = dist_env()
    return env.is_main or not env.has_rendezvous


def report_message(summary: StageSummary) -> None:
    """A stage's result line (rank 0 only)."""
    if speaks():
        say(summary.message)


def report_metrics(summary: StageSummary) -> None:
    """A stage's figures and where its ``metrics.json`` is (rank 0 only)."""
    if speaks():
        say(summary.message)
        say(f"\nmetrics: {summary.out_dir / 'metrics.json'}")


def report_folder(summary: StageSummary) -> None:
    """A stage's result line on stderr and its folder on stdout, for scripts (rank 0 only)."""
    if speaks():
        note("%s -> %s", summary.message, summary.out_dir)
        say(summary.out_dir)


def torchrun_launcher(flags: Sequence[str]) -> Callable[[StageCall, int], None]:
    """How ``videobert run`` runs a stage: in this process, reporting its summary as the stage's
    command does (its launcher's ``report``), or under torchrun with ``procs`` processes and the
    command line its launcher builds (``argv``), with the runner's ``--debug``/``--verbose``/``--quiet``."""

    def execute(call: StageCall, procs: int):
        launcher = importlib.import_module(f"pipelines.{call.stage}")
        if procs <= 1:  # in this process, saying what the stage's own command says
            launcher.report(call())
            return
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={procs}", "-m",
                   f"pipelines.{call.stage}", *launcher.argv(call), *flags]
        log.info("%s", " ".join(command))
        code = subprocess.run(command, env=threads.child_env(procs)).returncode
        if code != 0:
            raise StageError(f"torchrun exited with code {code}", code)

    return execute


def stage_flags(args: argparse.Namespace) -> list[str]:
    """The runner's --debug / --verbose / --quiet, for the stages it launches under torchrun."""
    return [flag for flag, on in (("--debug", args.debug), ("--verbose", args.verbose), ("--quiet", args.quiet)) if on]
