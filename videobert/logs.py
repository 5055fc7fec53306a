"""Logging that cooperates with progress bars, the progress bar every long loop uses, and
:func:`printable`: text from names and data made safe to show on a terminal."""

from __future__ import annotations

import logging
import os
import sys
import unicodedata
from typing import Any, Iterable

from tqdm.auto import tqdm


# Characters that reorder what a terminal shows without being seen (bidirectional overrides).
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: Any, newlines: bool = True) -> str:
    """``text`` with every control character (escape sequences, carriage returns, bells, C1
    controls) and bidirectional override written as a visible escape (``\\x1b``, ``\\u202e``), so
    that a sentence, an id or a file name printed on a terminal cannot move the cursor, rewrite
    the screen or hide what it says; ``newlines`` keeps line breaks and tabs as they are."""
    text = str(text)
    kept = "\n\t" if newlines else ""
    if text.isprintable() and not _BIDI.intersection(text):
        return text
    return "".join(ch if ch in kept or (ch.isprintable() and ch not in _BIDI) or (
        ch == " ") or unicodedata.category(ch) == "Zs" else ascii(ch)[1:-1] for ch in text)


class _PrintableFormatter(logging.Formatter):
    """Log lines with :func:`printable` text (messages carry ids, sentences and paths)."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


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
    handler.setFormatter(_PrintableFormatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
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
