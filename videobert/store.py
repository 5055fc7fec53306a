"""Files: atomic writes, failure records, stage summaries, and reading JSON, JSONL and torch files
safely.

Every stage writes into its own folder and never leaves a half-written file: each output is
written under a temporary name in the same folder and renamed into place (``os.replace`` is atomic
on POSIX file systems), so a reader — or a rerun after ``kill -9`` — sees either the old file or the
complete new one. Items that fail are recorded one JSON line each in ``failures.jsonl`` with the
reason and its ``kind`` (:data:`videobert.errors.FAILURE_KINDS`); a sharded run writes
``failures.shard-I-of-N.jsonl`` so that no two writers share a file. Every stage's ``run`` returns a
:class:`StageSummary`; the pipeline runner calls it as a :class:`StageCall`.

Readers name the file (and the line) of anything malformed: :func:`read_json`, :func:`read_jsonl`
(streams, so a corpus of millions of lines is never held whole), :func:`read_failures`,
:func:`load_npy` (the header is checked against the file's size before anything is allocated) and
:func:`safe_torch_load` (tensors and plain data only: a pickled object, which could run code, is
refused unexecuted). Inputs must be regular files (:func:`open_regular`, :func:`check_regular`): a
FIFO or a device is refused by its kind instead of blocking a stage. A :class:`FolderLock` keeps a
second process from writing the same files of a folder (each :class:`FailureLog` holds one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import pickle
import platform
import re
import shutil
import socket
import stat
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

import numpy as np
import torch

from videobert.errors import FAILURE_KINDS, InputError, StageError

log = logging.getLogger(__name__)

TMP_MARK = ".tmp."


NAME_MAX = 255  # bytes of one file name on Linux and macOS file systems


@functools.lru_cache(maxsize=1)
def _host_tag() -> str:
    """This host in 12 characters (host names of cluster nodes and pods run to 64 and more)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]


def _temp_name(path: Path) -> Path:
    # host and pid in the name let a rerun tell its own dead temporaries from a live writer's; the
    # name stays within NAME_MAX bytes whatever the file's name (a long one is cut, plus its hash).
    suffix = f"{TMP_MARK}{_host_tag()}.{os.getpid()}"
    name = path.name
    room = NAME_MAX - 1 - len(suffix.encode())
    if len(name.encode()) > room:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        name = name.encode()[: room - 17].decode("utf-8", "ignore") + "~" + digest
    return path.with_name(f".{name}{suffix}")


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


def jsonl_text(rows: Iterable[Any]) -> str:
    """``rows`` as JSON Lines, one compact UTF-8 object a line."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_weights_folder(folder: str | Path, config: dict, module: torch.nn.Module) -> None:
    """``config.json`` and ``model.safetensors`` (the module's state, contiguous, on the CPU) in
    ``folder``, each written atomically: what a ``from_pretrained`` reads."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "config.json", config)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in module.state_dict().items()}
    atomic_write_bytes(folder / "model.safetensors", save(state))


def load_weights_folder(folder: str | Path, config_class: type, build: Callable[[Any], torch.nn.Module], what: str,
                        device: str | torch.device = "cpu") -> torch.nn.Module:
    """The module that :func:`save_weights_folder` wrote into ``folder``, in eval mode on
    ``device``: ``config.json`` read as ``config_class``, the weights' names and shapes checked
    against what ``build(config)`` holds before anything is allocated, then the weights loaded.
    Anything missing, unreadable or that does not match is an :class:`InputError` naming the file
    (``what`` names the model in it: "VideoBERT", "captioner")."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    folder = Path(folder)
    data = read_json(folder / "config.json", f"{what} config")
    try:
        config = config_class(**data)
    except TypeError as exc:
        raise InputError(f"{folder / 'config.json'}: not a {what} config ({exc})") from None
    path = folder / "model.safetensors"
    try:
        with safe_open(str(path), "pt") as weights:
            shapes = {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except FileNotFoundError:
        raise InputError(f"{path}: {what} weights not found", "missing") from None
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{path}: unreadable weights ({exc})") from None
    with torch.device("meta"):  # the sizes config.json asks for, before anything is allocated
        expected = {name: tuple(t.shape) for name, t in build(config).state_dict().items()}
    if shapes != expected:
        wrong = sorted(name for name in expected.keys() & shapes.keys() if expected[name] != shapes[name])
        detail = (f"{wrong[0]} is {list(shapes[wrong[0]])} in the weights, {list(expected[wrong[0]])} by config.json"
                  if wrong else f"missing {sorted(expected.keys() - shapes.keys())[:3]}, "
                                f"unexpected {sorted(shapes.keys() - expected.keys())[:3]}")
        raise InputError(f"{path}: weights do not match config.json ({detail})")
    module = build(config)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{path}: unreadable weights ({exc})") from None
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(f"{path}: weights do not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return module.to(device).eval()


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file: the ``.npy`` appears complete or not at all."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def write_synced(path: str | Path, data: bytes | str) -> None:
    """Write a new file and fsync it (for files inside a temporary folder that is renamed into
    place whole, which need no temporary names of their own)."""
    with open(path, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_folder(folder: str | Path) -> None:
    """fsync a folder, so that the renames into it survive a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_once_json(path: str | Path, data: Any) -> None:
    """Create ``path`` holding ``data`` unless it exists: the first of several concurrent writers
    wins (a hard link is created exclusively) and the others leave it as it is."""
    path = Path(path)
    if path.exists():
        return
    tmp = temp_path_for(path)
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links: last writer wins, content agrees
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
    """Delete temporaries (files, or folders written whole) left by killed writers of this host
    (never a live process's)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    hosts = {_host_tag(), socket.gethostname()}  # the host's name: temporaries of earlier versions
    removed = 0
    for tmp in folder.glob(f".*{TMP_MARK}*"):
        owner = tmp.name.rsplit(TMP_MARK, 1)[1]
        owner_host, _, pid_text = owner.rpartition(".")
        if owner_host not in hosts or not pid_text.isdigit():
            continue
        if _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(FileNotFoundError):
            if tmp.is_dir() and not tmp.is_symlink():  # a folder written whole, then renamed (corpus shards)
                shutil.rmtree(tmp)
            else:
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


class FolderLock:
    """An advisory lock (``flock``) on the file ``path``, taken at once or refused: a second
    process that would write the same files of a folder stops with a :class:`StageError` naming
    the one that holds it. Released by :meth:`release` or when the process ends, however it ends.
    On a file system without locks it warns and goes on."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            self._fd = None
            raise StageError(f"{self.path.parent}: another run is writing into this folder ({holder}); "
                             "wait for it to finish or write elsewhere") from None
        except OSError as exc:
            log.warning("%s: cannot lock (%s); make sure no other run writes into this folder", self.path, exc)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def failure_record(item_id: str, reason: str, kind: str, timed: bool = True, **extra: Any) -> dict[str, Any]:
    """One failure record: ``{"id", "reason", "kind", "time"?, ...}`` (``timed=False`` leaves the
    time out, for outputs that must be the same bytes whenever they are rebuilt)."""
    if kind not in FAILURE_KINDS:
        raise ValueError(f"failure kind {kind!r} is not one of {', '.join(FAILURE_KINDS)}")
    record = {"id": item_id, "reason": reason, "kind": kind}
    if timed:
        record["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return {**record, **extra}


class FailureLog:
    """Append-only record of failed items, one JSON line each: ``{"id", "reason", "kind", "time", ...}``.

    The file is started afresh by each run (it describes the latest attempt at every item), and
    each line is flushed as it is written so that a crash keeps what was already recorded.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FolderLock(self.path.with_name(f".{self.path.name}.lock"))  # one writer of this file at a time
        self._handle = open(self.path, "w", encoding="utf-8")
        self.count = 0

    def record(self, item_id: str, reason: str, kind: str, **extra: Any) -> None:
        """Record that ``item_id`` failed: ``reason`` for people, ``kind`` (one of
        :data:`videobert.errors.FAILURE_KINDS`) for programs."""
        line = failure_record(item_id, reason, kind, **extra)
        self._handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._handle.flush()
        self.count += 1
        log.warning("%s: %s", item_id, reason)

    def record_error(self, item_id: str, error: InputError, **extra: Any) -> None:
        """Record an :class:`InputError` with its own kind."""
        self.record(item_id, str(error), error.kind, **extra)

    def close(self) -> None:
        self._handle.close()
        self._lock.release()

    def __enter__(self) -> "FailureLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# Records written before failures had a ``kind`` (videobert 0.1): the one reason a later stage
# must tell apart, read as the kind it stands for; any other such record reads as "unknown".
_LEGACY_KINDS = {"no audio stream": "no_audio"}


def read_failures(where: str | Path) -> list[dict[str, Any]]:
    """The failure records of a stage folder (``failures.jsonl`` and any per-shard files), or of
    one failure file."""
    where = Path(where)
    paths = [where] if where.is_file() else sorted(where.glob("failures*.jsonl"))
    records = []
    for path in paths:
        for number, record in read_jsonl(path, "failure records"):
            if not isinstance(record, dict) or "id" not in record:
                raise InputError(f"{path}:{number}: not a failure record (an object with an id)")
            record.setdefault("kind", _LEGACY_KINDS.get(str(record.get("reason")), "unknown"))
            records.append(record)
    return records


def merge_failures(folder: str | Path, shard_count: int) -> Path:
    """Concatenate the ``shard_count`` writers' failure files into ``failures.jsonl`` (once they
    have all finished) and remove them; returns the merged file."""
    folder = Path(folder)
    parts = [folder / failures_name(i, shard_count) for i in range(shard_count)]
    lines = [line for part in parts if part.exists() for line in part.read_text(encoding="utf-8").splitlines() if line.strip()]
    merged = folder / failures_name()
    atomic_write_text(merged, "".join(line + "\n" for line in lines))
    for part in parts:
        part.unlink(missing_ok=True)
    return merged


def remove_stale_failures(folder: str | Path, shard_count: int) -> None:
    """Remove failure files of an earlier attempt split another way (they describe nothing current)."""
    keep = {failures_name(i, shard_count) for i in range(shard_count)}
    for path in Path(folder).glob("failures*.jsonl"):
        if path.name not in keep:
            path.unlink(missing_ok=True)


@dataclasses.dataclass
class StageSummary:
    """What one run of a stage did: items processed now (``done``), found finished by an earlier
    run (``skipped``) and ``failed``, in ``seconds``; ``message`` says it in one line; ``details``
    holds the stage's own figures (the corpus's summary.json, vocab.json, the metrics, ...)."""

    stage: str  # its name: extract, vocab, ...
    out_dir: Path  # the folder it wrote
    done: int = 0  # items processed by this run (videos, or steps for pretrain)
    skipped: int = 0  # items an earlier run had finished
    failed: int = 0  # items recorded in the failure log
    seconds: float = 0.0
    message: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class StageCall:
    """One stage as the runner calls it: ``stage.run(**inputs, out_dir=..., cfg=..., **options)``.
    ``config_file`` holds ``cfg`` as YAML (what a command line passes with ``--config``)."""

    stage: str
    run: Callable[..., StageSummary]
    inputs: dict[str, Any]
    out_dir: Path
    cfg: Any
    config_file: Path
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __call__(self) -> StageSummary:
        return self.run(**self.inputs, out_dir=self.out_dir, cfg=self.cfg, **self.options)


MAX_JSON_BYTES = 256 << 20  # a JSON file read whole (settings, summaries, transcripts)


def open_regular(path: str | Path, what: str = "file") -> IO[bytes]:
    """Open an input file for reading in binary. Anything but a regular file — a FIFO (which would
    block), a device, a socket, a folder — is refused with :class:`InputError` naming its kind,
    before a byte is read; so is a missing file (kind ``missing``)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found", "missing") from None
    except IsADirectoryError:
        raise InputError(f"{path}: {what} is a folder, not a file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputError(f"{path}: {what} is not a regular file (it is {file_kind(mode)})")
    if hasattr(os, "O_NONBLOCK"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def file_sha256(path: str | Path, what: str = "file") -> str:
    """The sha256 of a regular file's bytes, read in blocks (anything else raises like
    :func:`open_regular`)."""
    digest = hashlib.sha256()
    with open_regular(path, what) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_regular(path: str | Path, what: str = "file") -> os.stat_result:
    """The ``stat`` of an input file another program will open (ffmpeg); raises like
    :func:`open_regular` for anything but a regular file."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found", "missing") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: {what} is not a regular file (it is {file_kind(info.st_mode)})")
    return info


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: str | Path, what: str = "file", limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of a regular file (:func:`open_regular`) of at most ``limit`` bytes; a larger one
    raises :class:`InputError` saying so, before it is read."""
    path = Path(path)
    with open_regular(path, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise InputError(f"{path}: {what} is {size / 2**20:.0f} MiB, more than the {limit / 2**20:.0f} MiB allowed")
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise InputError(f"{path}: {what} grew past the {limit / 2**20:.0f} MiB allowed while it was read")
    return data


def read_json(path: str | Path, what: str = "file") -> Any:
    """Read a JSON file; a missing, non-regular, oversized or malformed one raises
    :class:`InputError` naming it."""
    path = Path(path)
    data = read_bytes(path, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: cannot read {what} (not UTF-8 text: {exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: cannot read {what} (invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise InputError(f"{path}: cannot read {what} (JSON nested too deeply)") from None


def read_jsonl(path: str | Path, what: str = "file") -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of a JSONL file, read as it goes (lines end
    at ``\\n`` only). A missing file, a line that is not UTF-8 or not JSON raise :class:`InputError`
    naming the file and the line."""
    path = Path(path)
    with open_regular(path, what) as handle:
        yield from parse_jsonl(_decoded_lines(handle, path), path)


def _decoded_lines(handle: IO[bytes], path: Path) -> Iterator[str]:
    for number, raw in enumerate(handle, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}:{number}: not UTF-8 text ({exc.reason} at byte {exc.start} of the line)") from None


def parse_json(text: str, source: str | Path, line: int | None = None) -> Any:
    """The value of JSON ``text``; text that is not JSON raises :class:`InputError` naming
    ``source`` and the line (``line``, for a line of JSONL; else where the text broke)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}:{line or exc.lineno}: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise InputError(f"{source}{'' if line is None else f':{line}'}: JSON nested too deeply") from None


def parse_jsonl(lines: Iterable[str], source: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of JSONL text; a line that is not JSON raises
    :class:`InputError` naming ``source`` and the line. Lines end at ``\\n`` only."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield number, parse_json(line, source, number)


def npy_header(path: str | Path, what: str = "array") -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header, checked against the file's size (a
    header that claims more data than the file holds is refused before anything is allocated),
    for a regular file only (:func:`open_regular`). Raises :class:`InputError` naming the file."""
    path = Path(path)
    with open_regular(path, what) as handle:
        return _checked_npy_header(handle, path, what)


def _checked_npy_header(handle: IO[bytes], path: Path, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """:func:`npy_header` on an open file, left positioned after the header."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(handle, max_header_size=1 << 16)
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise InputError(f"{path}: unreadable {what} (not a .npy file: {exc})") from None
    offset, size = handle.tell(), os.fstat(handle.fileno()).st_size
    if dtype.hasobject:
        raise InputError(f"{path}: refused {what}: it holds Python objects (a pickle), not numbers")
    expected = offset + int(np.prod(shape, dtype=object)) * dtype.itemsize
    if expected != size:
        raise InputError(f"{path}: unreadable {what} (its header says {list(shape)} {dtype}, {expected} bytes, "
                         f"but the file has {size}: truncated or damaged)")
    return tuple(shape), dtype


def load_npy(path: str | Path, what: str = "array",
             check: Callable[[tuple[int, ...], np.dtype], None] | None = None) -> np.ndarray:
    """A ``.npy`` file whose header agrees with its size (:func:`npy_header`), loaded without
    pickles from the same open file; ``check(shape, dtype)`` may refuse it by its header before
    anything is allocated. Raises :class:`InputError` naming the file."""
    path = Path(path)
    with open_regular(path, what) as handle:
        shape, dtype = _checked_npy_header(handle, path, what)
        if check is not None:
            check(shape, dtype)
        handle.seek(0)
        try:
            return np.load(handle, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable {what} ({exc})") from None


class UnsafeFileError(InputError):
    """A torch file refused because it holds something other than tensors and plain data: it may
    have been tampered with, so it is never passed over silently."""


def safe_torch_load(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load`` restricted to tensors and plain data; anything else is refused, unexecuted.
    A file that cannot be read as a torch file at all (truncated, another format) is an
    :class:`InputError` that says so."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found", "missing") from None
    except pickle.UnpicklingError as exc:  # what weights_only=True raises for anything but plain data
        raise UnsafeFileError(
            f"{path}: refused to load the {what}: it holds something other than tensors and plain data "
            f"({_unpickler_reason(exc)}); such a file can run code when loaded, so load only files you trust"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, OSError, ... for broken files
        raise InputError(f"{path}: not a readable {what} ({type(exc).__name__}: {_unpickler_reason(exc)})") from None


def _unpickler_reason(exc: BaseException) -> str:
    """The line of torch's long weights-only error that says what was found."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    for line in lines:
        if "Unsupported" in line or "WeightsUnpickler error" in line:
            return line.replace("WeightsUnpickler error: ", "").split(" Please use")[0].rstrip(".")
    return next((line for line in lines if line), type(exc).__name__)


def prepare_output_dir(path: str | Path) -> Path:
    """Create a stage's output folder (and parents); refuse a path that is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: output path exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    return path


def library_versions(*extra: str) -> dict[str, str]:
    """Versions of the libraries that decide numerical results (and of the ``extra`` packages that
    are installed), for provenance files."""
    versions = {"python": platform.python_version()}
    names = ("videobert", "torch", "torchvision", "numpy", "faiss-cpu", "faiss-gpu", "torchcodec", "transformers", "tokenizers",
             *extra)
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
