"""Stage output folders: atomic writes, failure records, resolved configs.

Every stage writes into its own folder and never leaves a half-written file: each output is
written under a temporary name in the same folder and renamed into place (``os.replace`` is atomic
on POSIX file systems), so a reader — or a rerun after ``kill -9`` — sees either the old file or the
complete new one. Items that fail are recorded one JSON line each in ``failures.jsonl`` with the
reason; a sharded run writes ``failures.shard-I-of-N.jsonl`` so that no two writers share a file.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from videobert.errors import InputError

log = logging.getLogger(__name__)

TMP_MARK = ".tmp."


def _temp_name(path: Path) -> Path:
    # host and pid in the name let a rerun tell its own dead temporaries from a live writer's.
    return path.with_name(f".{path.name}{TMP_MARK}{socket.gethostname()}.{os.getpid()}")


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync it and rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    try:
        with open(tmp, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file: the ``.npy`` appears complete or not at all."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def temp_path_for(path: str | Path) -> Path:
    """The temporary name :func:`atomic_write` would use for ``path`` (for writers that need a path,
    such as ffmpeg); pair it with :func:`commit_temp`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _temp_name(path)


def commit_temp(tmp: str | Path, path: str | Path) -> None:
    """fsync a finished temporary file and rename it into place."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete temporaries left by killed writers of this host (never a live process's file)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    host = socket.gethostname()
    removed = 0
    for tmp in folder.glob(f".*{TMP_MARK}*"):
        owner = tmp.name.rsplit(TMP_MARK, 1)[1]
        owner_host, _, pid_text = owner.rpartition(".")
        if owner_host != host or not pid_text.isdigit():
            continue
        if _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed += 1
    if removed:
        log.info("removed %d unfinished temporary file(s) from an interrupted run in %s", removed, folder)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def failures_name(shard_index: int = 0, shard_count: int = 1) -> str:
    """``failures.jsonl``, or ``failures.shard-I-of-N.jsonl`` for one writer among several."""
    if shard_count <= 1:
        return "failures.jsonl"
    return f"failures.shard-{shard_index:05d}-of-{shard_count:05d}.jsonl"


class FailureLog:
    """Append-only record of failed items, one JSON line each: ``{"id", "reason", ...}``.

    The file is started afresh by each run (it describes the latest attempt at every item), and
    each line is flushed as it is written so that a crash keeps what was already recorded.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "w", encoding="utf-8")
        self.count = 0

    def record(self, item_id: str, reason: str, **extra: Any) -> None:
        line = {"id": item_id, "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
        self._handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._handle.flush()
        self.count += 1
        log.warning("%s: %s", item_id, reason)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "FailureLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_failures(folder: str | Path) -> list[dict[str, Any]]:
    """All failure records of a stage folder (``failures.jsonl`` and any per-shard files)."""
    records: list[dict[str, Any]] = []
    for path in sorted(Path(folder).glob("failures*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def read_json(path: str | Path, what: str = "file") -> Any:
    """Read a JSON file; a missing or malformed one raises :class:`InputError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what} ({exc})") from None


def prepare_output_dir(path: str | Path) -> Path:
    """Create a stage's output folder (and parents); refuse a path that is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: output path exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    return path


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide numerical results, for provenance files."""
    import importlib.metadata as md
    import platform

    versions = {"python": platform.python_version()}
    for name in ("videobert", "torch", "torchvision", "numpy", "faiss-cpu", "faiss-gpu", "transformers", "tokenizers"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return versions
