"""Files: atomic writes, failure records, stage summaries, loading weights folders, and the lock
of a folder.

Every stage writes into its own folder and never leaves a half-written file: each output is
written under a temporary name in the same folder and renamed into place (``os.replace`` is atomic
on POSIX file systems), so a reader — or a rerun after ``kill -9`` — sees either the old file or the
complete new one. Items that fail are recorded one JSON line each in ``failures.jsonl`` with the
reason and its ``kind`` (:data:`videobert.errors.FAILURE_KINDS`); a sharded run writes
``failures.shard-I-of-N.jsonl`` so that no two writers share a file. Every stage's ``run`` returns a
:class:`StageSummary`; the pipeline runner calls it as a :class:`StageCall`.

Files are read through :mod:`videobert.readers` (one guarded reader per kind of file: regular files
only, size caps, nesting bounds, one named error line); the ones stages use most are handed on from
here (:func:`read_json`, :func:`read_jsonl`, :func:`load_npy`, :func:`safe_torch_load`, ...).
:func:`load_weights_folder` is the one loader of a ``config.json`` + ``model.safetensors`` folder. A
:class:`FolderLock` keeps a second process from writing the same files of a folder (each
:class:`FailureLog` holds one).
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
import platform
import shutil
import socket
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

import numpy as np
import torch

from videobert.errors import FAILURE_KINDS, InputError, StageError
from videobert.readers import (  # noqa: F401 - the readers, where stages have always found them
    MAX_JSON_BYTES, UnsafeFileError, check_regular, file_kind, file_sha256, load_npy, npy_header, open_regular,
    parse_json, parse_jsonl, read_bytes, read_json, read_jsonl, safe_torch_load,
)

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
    ``device``. In order, each refused with an :class:`InputError` naming the file (``what``
    names the model in it: "VideoBERT", "captioner"): ``config.json`` read as ``config_class``,
    its fields checked for type and bounds (``config_class.FIELDS``, :func:`readers.check_fields`)
    and by its ``check()``; the names, shapes and dtypes in ``model.safetensors``'s header
    against what ``build(config)`` holds (built on the meta device: nothing allocated); then the
    weights loaded, and refused if one holds NaN or infinity or if every one is zero."""
    from videobert.errors import ConfigError
    from videobert.readers import check_fields, load_safetensors, safetensors_header

    folder = Path(folder)
    config_path = folder / "config.json"
    data = read_json(config_path, f"{what} config", expect=dict)
    check_fields(data, config_path, getattr(config_class, "FIELDS", {}))
    try:
        config = config_class(**data)
        if hasattr(config, "check"):
            config.check()
    except TypeError as exc:
        raise InputError(f"{config_path}: not a {what} config ({exc})") from None
    except ConfigError as exc:
        raise InputError(f"{config_path}: {exc}") from None
    path = folder / "model.safetensors"
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{path}: {what} weights not found", "missing")
    header = safetensors_header(path, "weights")
    shapes = {name: shape for name, (_dtype, shape) in header.items()}
    with torch.device("meta"):  # the sizes config.json asks for, before anything is allocated
        built = build(config).state_dict()
    expected = {name: tuple(t.shape) for name, t in built.items()}
    if shapes != expected:
        wrong = sorted(name for name in expected.keys() & shapes.keys() if expected[name] != shapes[name])
        detail = (f"{wrong[0]} is {list(shapes[wrong[0]])} in the weights, {list(expected[wrong[0]])} by config.json"
                  if wrong else f"missing {sorted(expected.keys() - shapes.keys())[:3]}, "
                                f"unexpected {sorted(shapes.keys() - expected.keys())[:3]}")
        raise InputError(f"{path}: weights do not match config.json ({detail})")
    for name, tensor in built.items():
        stored = header[name][0]
        if tensor.is_floating_point() != (stored in ("F64", "F32", "F16", "BF16")):
            raise InputError(f"{path}: {name} is stored as {stored}, but the model holds {str(tensor.dtype).split('.')[-1]} "
                             "(the file was altered or is not this model's)")
    module = build(config)
    state = load_safetensors(path, "weights")
    floats = [(name, tensor) for name, tensor in state.items() if tensor.is_floating_point()]
    for name, tensor in floats:
        if not bool(torch.isfinite(tensor).all()):
            raise InputError(f"{path}: {name} holds NaN or infinity (a diverged or damaged model)", "non_finite")
    if floats and not any(bool(tensor.any()) for _, tensor in floats):
        raise InputError(f"{path}: every weight is zero (a blanked or damaged model)")
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
