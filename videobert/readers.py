"""Reading files: one guarded reader per kind of file, used by every stage.

Every file the pipeline reads — configs, settings, manifests, transcripts, annotations, arrays,
codebooks, weights, thumbnails — may have been made by someone else, copied half, linked to a
device or replaced by a FIFO. Each reader here:

* reads only a **regular file** (after resolving links): a FIFO (which would block), a device
  (``/dev/zero`` never ends), a socket or a folder is refused by its kind before a byte is read;
* reads at most a **size cap** (``MAX_*_BYTES``; a JSONL file per line), checked before reading;
* bounds **nesting** (``MAX_DEPTH`` levels; a YAML file also ``MAX_YAML_NODES`` values, so aliases
  cannot multiply it);
* turns **every parse error** — malformed text, not UTF-8, an integer of more than Python's 4 300
  digits, ``RecursionError``, ``MemoryError`` — into one :class:`InputError` line naming the file
  (and the line, where there is one);
* for arrays, **bounds the allocation before it happens**: the header's shape and dtype are checked
  against the file's size (a zip member's recorded size) and against ``max_bytes``, and pickled
  objects are refused unread. A caller whose item is one video records the error as that video's
  failure and goes on.

:data:`READERS` names the reader of every kind of file (``tests/test_readers.py`` feeds each of
them the same hostile files); a stage that reads a new kind of file adds its reader here.
:func:`check_fields` checks named fields of a JSON or YAML mapping for type and bounds, naming the
file and the field.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import pickle
import re
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from videobert.errors import InputError

MiB = 1 << 20
MAX_JSON_BYTES = 256 * MiB  # a JSON file read whole (settings, summaries, annotations, transcripts)
MAX_YAML_BYTES = 16 * MiB  # a YAML config or spec
MAX_LINE_BYTES = 16 * MiB  # one line of a JSONL file (a manifest, segments, a training log)
MAX_CSV_BYTES = 256 * MiB
MAX_CSV_FIELD = 128 * 1024  # characters of one CSV field
MAX_ARRAY_BYTES = 4 << 30  # one array read into memory (a video's features: 4 GiB is a month of video)
MAX_MAPPED_BYTES = 1 << 40  # one array memory-mapped (only the rows read come into memory)
MAX_NPZ_BYTES = 1 << 30  # all members of an .npz (a codebook of the paper's 20 736 words is ~0.1 GiB)
MAX_WEIGHTS_BYTES = 64 << 30  # a safetensors or torch file
MAX_SAFETENSORS_HEADER = 100 * MiB  # the safetensors library's own limit
MAX_IMAGE_BYTES = 64 * MiB
MAX_IMAGE_PIXELS = 64_000_000
MAX_DEPTH = 100  # nesting of JSON / YAML values
MAX_YAML_NODES = 1_000_000  # values of a YAML document, each alias counted again

# What each kind of file is read with ("module:function"): the table tests/test_readers.py walks.
READERS: dict[str, str] = {
    "json": "videobert.readers:read_json",
    "jsonl": "videobert.readers:read_jsonl",
    "yaml": "videobert.readers:read_yaml",
    "csv": "videobert.readers:read_csv",
    "npy": "videobert.readers:load_npy",
    "npy-header": "videobert.readers:npy_header",
    "npz": "videobert.readers:load_npz",
    "safetensors": "videobert.readers:load_safetensors",
    "safetensors-header": "videobert.readers:safetensors_header",
    "torch": "videobert.readers:safe_torch_load",
    "image": "videobert.readers:read_image",
    "bytes": "videobert.readers:read_bytes",
    "sha256": "videobert.readers:file_sha256",
    "media": "videobert.media:probe",
}


def _cap(value: int | None, default_name: str) -> int:
    # caps are read when called, so that a test (or a user) may lower the module's constants
    return int(value if value is not None else globals()[default_name])


def _reason(exc: BaseException) -> str:
    """One short line for a parser's exception (Python's integer digit limit said plainly)."""
    text = str(exc).strip()
    if "Exceeds the limit" in text and "digits" in text:  # Python's int() of 4 300+ digits, a ValueError
        return "an integer of more than 4300 digits"
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= 120 else first[:117] + "..."


def _mib(size: int) -> str:
    return f"{size / MiB:.0f} MiB" if size >= MiB else f"{size} bytes"


# ------------------------------------------------------------------------------------ regular files
def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


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
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read {what} ({getattr(exc, 'strerror', None) or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputError(f"{path}: {what} is not a regular file (it is {file_kind(mode)})")
    if hasattr(os, "O_NONBLOCK"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def check_regular(path: str | Path, what: str = "file") -> os.stat_result:
    """The ``stat`` of an input file another program will open (ffmpeg, a library that takes a
    path); raises like :func:`open_regular` for anything but a regular file."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found", "missing") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read {what} ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: {what} is not a regular file (it is {file_kind(info.st_mode)})")
    return info


def check_size(path: str | Path, what: str, limit: int) -> os.stat_result:
    """:func:`check_regular`, and no larger than ``limit`` bytes."""
    info = check_regular(path, what)
    if info.st_size > limit:
        raise InputError(f"{path}: {what} is {_mib(info.st_size)}, more than the {_mib(limit)} allowed")
    return info


def file_sha256(path: str | Path, what: str = "file", limit: int | None = None) -> str:
    """The sha256 of a regular file's bytes of at most ``limit`` (default ``MAX_WEIGHTS_BYTES``),
    read in blocks (anything else raises like :func:`open_regular`)."""
    digest = hashlib.sha256()
    limit = _cap(limit, "MAX_WEIGHTS_BYTES")
    with open_regular(path, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise InputError(f"{path}: {what} is {_mib(size)}, more than the {_mib(limit)} allowed")
        try:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        except OSError as exc:
            raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    return digest.hexdigest()


def read_bytes(path: str | Path, what: str = "file", limit: int | None = None) -> bytes:
    """The bytes of a regular file (:func:`open_regular`) of at most ``limit`` bytes (default
    ``MAX_JSON_BYTES``); a larger one raises :class:`InputError` saying so, before it is read."""
    path = Path(path)
    limit = _cap(limit, "MAX_JSON_BYTES")
    with open_regular(path, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise InputError(f"{path}: {what} is {_mib(size)}, more than the {_mib(limit)} allowed")
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise InputError(f"{path}: {what} grew past the {_mib(limit)} allowed while it was read")
    return data


def decode_utf8(data: bytes, source: str | Path, what: str = "file") -> str:
    """``data`` as UTF-8 text (a leading byte-order mark dropped); anything else is an
    :class:`InputError` naming ``source``."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: cannot read {what} (not UTF-8 text: {exc.reason} at byte {exc.start}; "
                         "save it as UTF-8)") from None


# ------------------------------------------------------------------------------------ nesting
def check_nesting(value: Any, source: str | Path, max_depth: int | None = None, max_nodes: int | None = None) -> Any:
    """``value`` unchanged if it nests at most ``max_depth`` levels (default ``MAX_DEPTH``) and
    holds at most ``max_nodes`` values (each reached again through an alias counted again);
    else :class:`InputError` naming ``source``. Walks without recursion."""
    max_depth = _cap(max_depth, "MAX_DEPTH")
    nodes = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if max_nodes is not None and nodes > max_nodes:
            raise InputError(f"{source}: more than {max_nodes} values (aliases that multiply the document?)")
        if isinstance(item, (dict, list, tuple)):
            if depth >= max_depth:
                raise InputError(f"{source}: nested more than {max_depth} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value


# ------------------------------------------------------------------------------------ JSON
class _NotJson(Exception):
    """Why text is not JSON we read: ``reason`` in words, ``line`` where it broke (or None)."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None):
        super().__init__(reason)
        self.reason, self.line, self.column = reason, line, column


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {key[:80]!r} appears twice in one object")
        seen[key] = value
    return seen


def _loads(text: str, max_depth: int | None = None, unique_keys: bool = False) -> Any:
    try:
        value = json.loads(text, object_pairs_hook=_unique_pairs if unique_keys else None)
    except json.JSONDecodeError as exc:
        raise _NotJson(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except RecursionError:
        raise _NotJson("JSON nested too deeply") from None
    except MemoryError:
        raise _NotJson("out of memory while parsing JSON") from None
    except ValueError as exc:  # an integer of more than 4 300 digits
        raise _NotJson(f"invalid JSON: {_reason(exc)}") from None
    try:
        check_nesting(value, "", max_depth)
    except InputError:
        raise _NotJson("JSON nested too deeply") from None
    return value


def parse_json(text: str, source: str | Path, line: int | None = None, max_depth: int | None = None) -> Any:
    """The value of JSON ``text``; text that is not JSON — or nests deeper than ``max_depth``
    (default ``MAX_DEPTH``), or holds an integer of more than 4 300 digits — raises
    :class:`InputError` naming ``source`` and the line (``line``, for a line of JSONL; else where
    the text broke)."""
    try:
        return _loads(text, max_depth)
    except _NotJson as exc:
        where = line or exc.line
        reason = exc.reason.replace("invalid JSON: ", "invalid JSON (", 1) + ")" if exc.reason.startswith("invalid JSON: ") else exc.reason
        raise InputError(f"{source}{'' if where is None else f':{where}'}: {reason}") from None


def read_json(path: str | Path, what: str = "file", limit: int | None = None, expect: type | None = None,
              unique_keys: bool = False) -> Any:
    """A JSON file (:func:`read_bytes`, UTF-8, :func:`parse_json`); with ``expect`` (``dict``,
    ``list``) the top-level value must be of that type; with ``unique_keys`` an object that names a
    key twice (which JSON parsers merge silently) is refused. Anything else raises
    :class:`InputError` naming the file."""
    path = Path(path)
    text = decode_utf8(read_bytes(path, what, limit), path, what)
    try:
        value = _loads(text, unique_keys=unique_keys)
    except _NotJson as exc:
        where = f" at line {exc.line} column {exc.column}" if exc.line is not None else ""
        raise InputError(f"{path}: cannot read {what} ({exc.reason}{where})") from None
    if expect is not None and not isinstance(value, expect):
        raise InputError(f"{path}: {what} must be a JSON {_type_word(expect)}, not {_type_word(type(value))}")
    return value


def read_jsonl(path: str | Path, what: str = "file", max_line: int | None = None) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of a JSONL file, read as it goes (lines end
    at ``\\n`` only; each at most ``max_line`` bytes, default ``MAX_LINE_BYTES``). A missing file,
    a line that is too long, not UTF-8 or not JSON raise :class:`InputError` naming the file and
    the line."""
    path = Path(path)
    with open_regular(path, what) as handle:
        yield from parse_jsonl(bounded_lines(handle, path, max_line), path)


def bounded_lines(handle: IO[bytes], path: str | Path, max_line: int | None = None) -> Iterator[str]:
    """The UTF-8 lines of an open binary file, each at most ``max_line`` bytes (default
    ``MAX_LINE_BYTES``); a longer line is refused before it is held whole."""
    max_line = _cap(max_line, "MAX_LINE_BYTES")
    number = 0
    while True:
        try:
            raw = handle.readline(max_line + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if not raw:
            return
        number += 1
        if len(raw) > max_line and not raw.endswith(b"\n"):
            raise InputError(f"{path}:{number}: line longer than {_mib(max_line)}")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}:{number}: not UTF-8 text ({exc.reason} at byte {exc.start} of the line)") from None


def parse_jsonl(lines: Iterable[str], source: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of JSONL text; a line that is not JSON raises
    :class:`InputError` naming ``source`` and the line. Lines end at ``\\n`` only."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield number, parse_json(line, source, number)


# ------------------------------------------------------------------------------------ YAML
def read_yaml(path: str | Path, what: str = "YAML file", limit: int | None = None) -> Any:
    """A YAML document (safe tags only: plain data, no objects), from a regular file of at most
    ``limit`` bytes (default ``MAX_YAML_BYTES``), nesting at most ``MAX_DEPTH`` levels and
    ``MAX_YAML_NODES`` values. Anything else is an :class:`InputError` naming the file (and the
    line of a syntax error)."""
    import yaml

    path = Path(path)
    text = decode_utf8(read_bytes(path, what, _cap(limit, "MAX_YAML_BYTES")), path, what)
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):  # iterative: the depth is known before composing
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise InputError(f"{path}: nested more than {MAX_DEPTH} levels deep")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        # The parser notices a mistake where it gives up (often the next key, lines further on);
        # the construct it was reading ("while scanning a simple key") starts where the mistake is.
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if start is not None and mark is not None and start.line != mark.line:
            raise InputError(f"{path}:{start.line + 1}: invalid YAML ({context}: {problem} by line {mark.line + 1})") from None
        where = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}{where}: invalid YAML ({problem})") from None
    except RecursionError:
        raise InputError(f"{path}: invalid YAML (nested too deeply)") from None
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:  # int() of 4 300+ digits, odd timestamps
        raise InputError(f"{path}: invalid YAML ({_reason(exc)})") from None
    return check_nesting(value, path, max_nodes=MAX_YAML_NODES)


# ------------------------------------------------------------------------------------ CSV
def read_csv(path: str | Path, what: str = "CSV file", columns: Iterable[str] = (),
             limit: int | None = None) -> list[dict[str, str]]:
    """The rows of a UTF-8 CSV file with a header line naming at least ``columns``, as dicts of
    strings; a file that is not UTF-8, a field longer than ``MAX_CSV_FIELD`` characters, a
    missing column or a malformed line raise :class:`InputError` naming the file and the line."""
    path = Path(path)
    text = decode_utf8(read_bytes(path, what, _cap(limit, "MAX_CSV_BYTES")), path, what)
    previous = csv.field_size_limit()
    csv.field_size_limit(MAX_CSV_FIELD)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        missing = [name for name in columns if name not in (reader.fieldnames or ())]
        if missing:
            raise InputError(f"{path}: not a {what} (no column {', '.join(missing)}; its header line names "
                             f"{', '.join(map(str, reader.fieldnames or []))[:120] or 'nothing'})")
        return [dict(row) for row in reader]
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: malformed {what} ({exc})") from None
    except MemoryError:
        raise InputError(f"{path}: out of memory while reading {what}") from None
    finally:
        csv.field_size_limit(previous)


# ------------------------------------------------------------------------------------ NumPy arrays
def _array_header(handle: IO[bytes], path: Path, what: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle, max_header_size=1 << 16)
    except (OSError, ValueError, EOFError, SyntaxError, TypeError, RecursionError, MemoryError) as exc:
        detail = _reason(exc.__context__ if "Cannot parse header" in str(exc) and exc.__context__ else exc)
        raise InputError(f"{path}: unreadable {what} (not a .npy file: {detail})") from None
    if dtype.hasobject:
        raise InputError(f"{path}: refused {what}: it holds Python objects (a pickle), not numbers")
    return tuple(int(n) for n in shape), dtype, bool(fortran)


def _array_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def npy_header(path: str | Path, what: str = "array") -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header, checked against the file's size (a
    header that claims more data than the file holds is refused before anything is allocated),
    for a regular file only (:func:`open_regular`). Raises :class:`InputError` naming the file."""
    path = Path(path)
    with open_regular(path, what) as handle:
        return _checked_npy_header(handle, path, what)


def _checked_npy_header(handle: IO[bytes], path: Path, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """:func:`npy_header` on an open file, left positioned after the header."""
    shape, dtype, _ = _array_header(handle, path, what)
    offset, size = handle.tell(), os.fstat(handle.fileno()).st_size
    expected = offset + _array_bytes(shape, dtype)
    if expected != size:
        raise InputError(f"{path}: unreadable {what} (its header says {list(shape)} {dtype}, {expected} bytes, "
                         f"but the file has {size}: truncated or damaged)")
    return shape, dtype


def load_npy(path: str | Path, what: str = "array",
             check: Callable[[tuple[int, ...], np.dtype], None] | None = None,
             max_bytes: int | None = None, mmap: bool = False) -> np.ndarray:
    """A ``.npy`` file whose header agrees with its size (:func:`npy_header`) and whose data is at
    most ``max_bytes`` (default ``MAX_ARRAY_BYTES``; pass ``MAX_MAPPED_BYTES`` for a table that is
    only ever read by rows), loaded without pickles from the same open file — or, with ``mmap``,
    memory-mapped read-only (reading rows reads only those rows);
    ``check(shape, dtype)`` may refuse it by its header before anything is allocated. Raises
    :class:`InputError` naming the file."""
    path = Path(path)
    limit = _cap(max_bytes, "MAX_ARRAY_BYTES")
    with open_regular(path, what) as handle:
        shape, dtype = _checked_npy_header(handle, path, what)
        if check is not None:
            check(shape, dtype)
        if _array_bytes(shape, dtype) > limit:
            raise InputError(f"{path}: {what} of {list(shape)} {dtype} is {_mib(_array_bytes(shape, dtype))}, "
                             f"more than the {_mib(limit)} allowed")
        try:
            if mmap and _array_bytes(shape, dtype):  # NumPy cannot map zero bytes: an empty array is read
                return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{path}: unreadable {what} ({exc})") from None
        except MemoryError:
            raise InputError(f"{path}: {what} of {list(shape)} {dtype} does not fit in memory") from None


def load_npz(path: str | Path, what: str = "arrays", keys: Iterable[str] | None = None,
             required: Iterable[str] | None = None, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file by name. Before any member is read: the archive must be a
    regular file; with ``keys``, it may hold only those members (another is refused unread), and
    it must hold those of ``required`` (default: all of ``keys``);
    each member's ``.npy`` header must agree with the size the archive records for it and hold
    numbers, not pickles; and all members together may take at most ``max_bytes`` (default
    ``MAX_NPZ_BYTES``). Anything else is an :class:`InputError` naming the file."""
    path = Path(path)
    limit = _cap(max_bytes, "MAX_NPZ_BYTES")
    wanted = None if keys is None else set(keys)
    needed = set(required) if required is not None else set(wanted or ())
    with open_regular(path, what) as handle:
        try:
            archive = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise InputError(f"{path}: unreadable {what} ({type(exc).__name__}: {exc}; truncated or not an .npz file)") from None
        with archive:
            members = archive.infolist()
            names = [m.filename[:-4] if m.filename.endswith(".npy") else m.filename for m in members]
            missing = sorted(needed - set(names))
            if missing:
                raise InputError(f"{path}: not a {what} (missing {', '.join(missing[:5])})")
            if wanted is not None:
                extra = sorted(set(names) - wanted)
                if extra:
                    raise InputError(f"{path}: not a {what} (unexpected member {extra[0][:80]!r})")
            if len(set(names)) != len(names):
                raise InputError(f"{path}: not a {what} (a member appears twice)")
            total = sum(m.file_size for m in members)
            if total > limit:
                raise InputError(f"{path}: {what} would take {_mib(total)} in memory, more than the {_mib(limit)} allowed")
            arrays = {}
            for name, member in zip(names, members):
                source = f"{path}[{name}]"
                try:
                    with archive.open(member) as stream:
                        shape, dtype, fortran = _array_header(stream, Path(source), what)
                        header = stream.tell() if stream.seekable() else None
                        expected = _array_bytes(shape, dtype)
                        if header is None or header + expected != member.file_size:
                            raise InputError(f"{source}: unreadable {what} (its header says {list(shape)} {dtype}, "
                                             f"but the archive records {member.file_size} bytes: damaged)")
                        data = bytearray(expected)
                        got = stream.readinto(data)
                except InputError:
                    raise
                except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, zlib.error) as exc:
                    raise InputError(f"{source}: unreadable {what} ({type(exc).__name__}: {exc})") from None
                except MemoryError:
                    raise InputError(f"{source}: {what} does not fit in memory") from None
                if got != expected:
                    raise InputError(f"{source}: unreadable {what} (truncated)")
                array = np.frombuffer(data, dtype=dtype)
                arrays[name] = array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
            return arrays


# ------------------------------------------------------------------------------------ weights
SAFETENSORS_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                      "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


def safetensors_header(path: str | Path, what: str = "weights") -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` of a ``.safetensors`` file from its header, every tensor's bytes
    checked to lie inside the file and to agree with its shape, before any tensor is read.
    Raises :class:`InputError` naming the file."""
    path = Path(path)
    limit = MAX_WEIGHTS_BYTES
    with open_regular(path, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise InputError(f"{path}: {what} is {_mib(size)}, more than the {_mib(limit)} allowed")
        head = handle.read(8)
        if len(head) < 8:
            raise InputError(f"{path}: unreadable {what} (truncated: no safetensors header)")
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_SAFETENSORS_HEADER, size - 8):
            raise InputError(f"{path}: unreadable {what} (its header claims {length} bytes: truncated or not safetensors)")
        raw = handle.read(length)
    text = decode_utf8(raw, path, what)
    try:
        header = _loads(text)
    except _NotJson as exc:
        raise InputError(f"{path}: unreadable {what} (its header: {exc.reason})") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: unreadable {what} (the header is not a JSON object)")
    data_size = size - 8 - length
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        ok = (isinstance(entry, dict) and entry.get("dtype") in SAFETENSORS_DTYPES
              and isinstance(entry.get("shape"), list) and all(type(n) is int and n >= 0 for n in entry["shape"])
              and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
              and all(type(n) is int for n in entry["data_offsets"]))
        if not ok:
            raise InputError(f"{path}: unreadable {what} (tensor {name[:80]!r}: malformed header entry)")
        begin, end = entry["data_offsets"]
        if not 0 <= begin <= end <= data_size or end - begin != math.prod(entry["shape"]) * SAFETENSORS_DTYPES[entry["dtype"]]:
            raise InputError(f"{path}: unreadable {what} (tensor {name[:80]!r}: its bytes do not agree with its shape "
                             "or lie outside the file: truncated or damaged)")
        spans.append((begin, end))
        out[name] = (entry["dtype"], tuple(entry["shape"]))
    spans.sort()
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
        raise InputError(f"{path}: unreadable {what} (tensors overlap)")
    return out


def load_safetensors(path: str | Path, what: str = "weights", max_bytes: int | None = None) -> dict[str, Any]:
    """The tensors of a ``.safetensors`` file (torch, on the CPU) after :func:`safetensors_header`
    has checked them, at most ``max_bytes`` (default ``MAX_WEIGHTS_BYTES``). Raises
    :class:`InputError` naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    limit = _cap(max_bytes, "MAX_WEIGHTS_BYTES")
    check_size(path, what, limit)
    safetensors_header(path, what)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: unreadable {what} ({_reason(exc)})") from None
    except MemoryError:
        raise InputError(f"{path}: {what} do not fit in memory") from None


class UnsafeFileError(InputError):
    """A torch file refused because it holds something other than tensors and plain data: it may
    have been tampered with, so it is never passed over silently."""


def safe_torch_load(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load`` of a regular file of at most ``MAX_WEIGHTS_BYTES``, restricted to tensors
    and plain data; anything else is refused, unexecuted. A file that cannot be read as a torch
    file at all (truncated, another format) is an :class:`InputError` that says so."""
    import torch

    path = Path(path)
    check_size(path, what, MAX_WEIGHTS_BYTES)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found", "missing") from None
    except pickle.UnpicklingError as exc:  # what weights_only=True raises for anything but plain data
        raise UnsafeFileError(
            f"{path}: refused to load the {what}: it holds something other than tensors and plain data "
            f"({_unpickler_reason(exc)}); such a file can run code when loaded, so load only files you trust"
        ) from None
    except MemoryError:
        raise InputError(f"{path}: {what} does not fit in memory") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, OSError, ... for broken files
        raise InputError(f"{path}: not a readable {what} ({type(exc).__name__}: {_unpickler_reason(exc)})") from None


def _unpickler_reason(exc: BaseException) -> str:
    """The line of torch's long weights-only error that says what was found."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    for line in lines:
        if "Unsupported" in line or "WeightsUnpickler error" in line:
            return line.replace("WeightsUnpickler error: ", "").split(" Please use")[0].rstrip(".")
    return next((line for line in lines if line), type(exc).__name__)


# ------------------------------------------------------------------------------------ images
def read_image(path: str | Path, what: str = "image", max_bytes: int | None = None,
               max_pixels: int | None = None) -> np.ndarray:
    """An image file as uint8 RGB ``[H, W, 3]``: a regular file of at most ``max_bytes`` (default
    ``MAX_IMAGE_BYTES``) whose header announces at most ``max_pixels`` (default
    ``MAX_IMAGE_PIXELS``), checked before it is decoded. Raises :class:`InputError` naming the file."""
    from PIL import Image

    path = Path(path)
    data = read_bytes(path, what, _cap(max_bytes, "MAX_IMAGE_BYTES"))
    pixels = _cap(max_pixels, "MAX_IMAGE_PIXELS")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > pixels:
                raise InputError(f"{path}: {what} of {width}×{height} pixels, more than the {pixels} allowed")
            return np.asarray(image.convert("RGB"))
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{path}: {what} does not fit in memory") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        detail = "not an image format PIL reads" if type(exc).__name__ == "UnidentifiedImageError" else _reason(exc)
        raise InputError(f"{path}: unreadable {what} ({detail})") from None


# ------------------------------------------------------------------------------------ named fields
@dataclasses.dataclass(frozen=True)
class Field:
    """What one field of a JSON or YAML mapping must be: ``kind`` ``"int"`` (a whole number, not a
    bool or 128.0), ``"number"`` (int or float, finite), ``"str"``, ``"bool"``, ``"list"``,
    ``"dict"`` or ``"ints"`` (a list of whole numbers); for numbers the bounds ``low``/``high``
    (``above``: strictly more than ``low``); ``required`` or not (None is accepted for optional
    fields only when ``nullable``)."""

    kind: str
    low: float | None = None
    high: float | None = None
    above: bool = False
    required: bool = True
    nullable: bool = False


def _type_word(tp: type) -> str:
    return {dict: "object", list: "list", str: "string", int: "integer", float: "number", bool: "boolean",
            type(None): "null"}.get(tp, tp.__name__)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number_ok(value: Any, whole: bool) -> bool:
    if isinstance(value, bool):
        return False
    if whole:
        return type(value) is int
    return isinstance(value, (int, float)) and math.isfinite(value)


def _bounds(spec: Field) -> str:
    low = "" if spec.low is None else f"{'more than' if spec.above else 'from'} {spec.low:g}"
    high = "" if spec.high is None else f"{'to' if low and not spec.above else 'at most'} {spec.high:g}"
    if spec.above and low and high:
        high = f"and at most {spec.high:g}"
    return " ".join(part for part in (low, high) if part)


def check_field(value: Any, spec: Field, source: str | Path, name: str) -> Any:
    """``value`` if it is what ``spec`` asks for; else :class:`InputError`:
    ``"SOURCE: NAME: VALUE is not ..."``."""
    if value is None and spec.nullable:
        return value
    kind = spec.kind
    if kind in ("int", "number"):
        what = "a whole number" if kind == "int" else "a finite number"
        if not _number_ok(value, kind == "int"):
            raise InputError(f"{source}: {name}: {_show(value)} is not {what}")
        too_low = spec.low is not None and (value <= spec.low if spec.above else value < spec.low)
        too_high = spec.high is not None and value > spec.high
        if too_low or too_high:
            raise InputError(f"{source}: {name}: {_show(value)} is out of range (need {what} {_bounds(spec)})")
        return value
    expected = {"str": str, "bool": bool, "list": list, "dict": dict, "ints": list}[kind]
    if not isinstance(value, expected):
        word = _type_word(expected)
        raise InputError(f"{source}: {name}: {_show(value)} is not {'an' if word[0] in 'aeiou' else 'a'} {word}")
    if kind == "ints":
        for index, item in enumerate(value):
            check_field(item, dataclasses.replace(spec, kind="int"), source, f"{name}[{index}]")
        if spec.low is not None and not value:
            raise InputError(f"{source}: {name}: empty (need at least one whole number)")
    return value


def check_fields(data: Any, source: str | Path, fields: Mapping[str, Field], unknown: bool = True) -> dict[str, Any]:
    """``data`` (a mapping read from ``source``) with every field of ``fields`` checked by
    :func:`check_field`; a missing required field, and (``unknown=False``) a field not in
    ``fields``, is an :class:`InputError` naming the file and the field."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: must be a mapping of named fields (a JSON object), not {_type_word(type(data))}")
    for name, spec in fields.items():
        if name not in data:
            if spec.required:
                raise InputError(f"{source}: {name}: missing")
            continue
        check_field(data[name], spec, source, name)
    if not unknown:
        extra = sorted(set(data) - set(fields))
        if extra:
            raise InputError(f"{source}: {_show(extra[0])}: unknown field")
    return data
