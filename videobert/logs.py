"""Logging that cooperates with progress bars, and the progress bar every long loop uses."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Iterable

from tqdm.auto import tqdm


class _TqdmHandler(logging.StreamHandler):
    """Writes log lines above any live progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Route the ``videobert`` and ``pipelines`` loggers to stderr, one line per message."""
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    for name in ("videobert", "pipelines"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


_progress_on = True


def set_progress(enabled: bool) -> None:
    """Switch progress bars on or off for this process (``-q`` turns them off)."""
    global _progress_on
    _progress_on = enabled


def progress_enabled() -> bool:
    return _progress_on and os.environ.get("VIDEOBERT_PROGRESS", "1") != "0"


def progress(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; refreshed every few seconds when stderr is not a terminal (batch logs).

    Set ``VIDEOBERT_PROGRESS=0`` to switch bars off.
    """
    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.5 if interactive else 15.0)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("disable", not progress_enabled())
    return tqdm(iterable, file=sys.stderr, **kwargs)
