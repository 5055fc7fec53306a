"""Every reader of videobert.readers.READERS against the same hostile files (docs/robustness.md).

Each kind of file has a row below: how to call its reader, a valid file (the reader must read it)
and the hostile contents that apply to it. Every reader gets the same hostile set: a FIFO, a link to
/dev/zero, a folder, a file over its size cap, deep nesting, a giant integer, wrong types and a
truncated file. Each must end in one InputError line naming the file, in bounded time and memory.
A reader added to READERS without a row here fails ``test_every_reader_has_a_row``; a file parsed
outside videobert/readers.py fails ``test_files_are_parsed_only_by_the_readers``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import pickle
import re
import resource
import signal
import struct
import subprocess
import tracemalloc
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from videobert import readers
from videobert.errors import InputError

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[1]
CAP = 64 * 1024  # every size cap during these tests
DEEP = 20_000  # 40 000 bytes: deeper than any nesting bound, within the size caps
GIANT = "1" + "0" * 5000  # more than Python's 4 300-digit limit


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_with_header(header: str) -> bytes:
    text = header.encode("latin1")
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def npz_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name + ".npy", data)
    return buffer.getvalue()


def safetensors_bytes(header: Any, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(text)) + text + data


def torch_bytes(value: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


class Unsafe:
    def __reduce__(self):
        return (os.getcwd, ())


def jpeg_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def mp4_bytes(tmp: Path) -> bytes:
    from videobert.media import ffmpeg_exe

    out = tmp / "tiny.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1",
                    "-pix_fmt", "yuv420p", str(out)], check=True, capture_output=True)
    return out.read_bytes()


def weights_header() -> dict:
    return {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}


@dataclass
class Row:
    """One kind of file: ``read(path)`` calls its reader; ``valid(tmp)`` the bytes of a file it
    reads; then the hostile contents that apply (None: the case has no meaning for the kind, said
    why in ``na``); ``huge`` writes a file over the cap (default: a sparse file of 2 caps)."""

    read: Callable[[Path], Any]
    valid: Callable[[Path], bytes]
    nested: bytes | None
    giant: bytes | None
    wrong: bytes | None
    truncated: Callable[[Path], bytes] | None
    huge: Callable[[Path], None] | None = None
    na: str = ""


def sparse(size: int, head: bytes = b"") -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "wb") as handle:
            handle.write(head)
            handle.truncate(size)
    return write


def half(valid: Callable[[Path], bytes]) -> Callable[[Path], bytes]:
    return lambda tmp: valid(tmp)[: len(valid(tmp)) // 2]


def json_valid(tmp):
    return b'{"a": [1, 2, {"b": "c"}]}'


def huge_npy(path: Path) -> None:  # a header that agrees with its (sparse) size, above the cap
    rows = CAP // 8 * 4
    head = npy_with_header(f"{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows},), }}")
    sparse(len(head) + rows * 8, head)(path)


ROWS: dict[str, Row] = {
    "json": Row(lambda p: readers.read_json(p, "settings", expect=dict), json_valid,
                b"[" * DEEP + b"]" * DEEP, b'{"n": ' + GIANT.encode() + b"}", b"[1, 2]", half(json_valid)),
    "jsonl": Row(lambda p: list(readers.read_jsonl(p, "manifest")), lambda tmp: b'{"a": 1}\n{"b": 2}\n',
                 b"[" * 200 + b"]" * 200 + b"\n", b'{"n": ' + GIANT.encode() + b"}\n", b'{"a": 1}\n\xff\xfe\n',
                 lambda tmp: b'{"a": 1}\n{"b": ', huge=lambda p: p.write_bytes(b'{"a": "' + b"x" * (2 * CAP) + b'"}\n')),
    "yaml": Row(lambda p: readers.read_yaml(p, "config"), lambda tmp: b"a: {b: [1, 2]}\nc: d\n",
                b"[" * DEEP + b"]" * DEEP, b"n: " + GIANT.encode() + b"\n", b"!!python/object/apply:os.getcwd []\n",
                lambda tmp: b"a: {b: [1, 2"),
    "csv": Row(lambda p: readers.read_csv(p, "test list", columns=("video_id", "sentence")),
               lambda tmp: "video_id,sentence\nv1,a café\n".encode(), None, None,
               "video_id,sentence\nv1,caf\xe9\n".encode("latin-1"), lambda tmp: "video_id,sentence\nv1,caf\xe9".encode()[:-1],
               na="no nesting or numbers in CSV; a 200 k-character field is in its own test"),
    "npy": Row(lambda p: readers.load_npy(p, "features"), lambda tmp: npy_bytes(np.ones((4, 3), np.float16)),
               None, npy_with_header(f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({GIANT},), }}"),
               npy_with_header("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }") + pickle.dumps([1, 2]),
               half(lambda tmp: npy_bytes(np.ones((400, 3), np.float32))), huge=huge_npy, na="arrays do not nest"),
    "npy-header": Row(lambda p: readers.npy_header(p, "features"), lambda tmp: npy_bytes(np.ones((4, 3), np.float16)),
                      None, npy_with_header(f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({GIANT},), }}"),
                      npy_with_header("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }") + pickle.dumps([1, 2]),
                      half(lambda tmp: npy_bytes(np.ones((400, 3), np.float32))),
                      huge=lambda p: sparse(1 << 40, npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"))(p),
                      na="a header only: its size must agree with the header's, whatever the size"),
    "npz": Row(lambda p: readers.load_npz(p, "codebook", keys=("a", "b")),
               lambda tmp: npz_bytes({"a": npy_bytes(np.arange(5)), "b": npy_bytes(np.ones(3))}), None,
               npz_bytes({"a": npy_with_header(f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({GIANT},), }}"),
                          "b": npy_bytes(np.ones(3))}),
               npz_bytes({"a": npy_bytes(np.arange(5)), "b": npy_bytes(np.ones(3)), "evil": npy_bytes(np.zeros(1 << 20))}),
               half(lambda tmp: npz_bytes({"a": npy_bytes(np.arange(5000)), "b": npy_bytes(np.ones(3))})),
               huge=lambda p: p.write_bytes(npz_bytes({"a": npy_bytes(np.zeros(CAP, np.uint8)), "b": npy_bytes(np.ones(3))})),
               na="arrays do not nest"),
    "safetensors": Row(lambda p: readers.load_safetensors(p, "weights"),
                       lambda tmp: safetensors_bytes(weights_header(), np.ones(4, np.float32).tobytes()),
                       safetensors_bytes(b"[" * DEEP + b"]" * DEEP),
                       safetensors_bytes(b'{"w": {"dtype": "F32", "shape": [' + GIANT.encode() + b'], "data_offsets": [0, 16]}}',
                                         bytes(16)),
                       safetensors_bytes({"w": {"dtype": "OBJ", "shape": [2], "data_offsets": [0, 16]}}, bytes(16)),
                       lambda tmp: safetensors_bytes(weights_header(), np.ones(4, np.float32).tobytes())[:-6]),
    "safetensors-header": Row(lambda p: readers.safetensors_header(p, "weights"),
                              lambda tmp: safetensors_bytes(weights_header(), np.ones(4, np.float32).tobytes()),
                              safetensors_bytes(b"[" * DEEP + b"]" * DEEP),
                              safetensors_bytes(b'{"w": {"dtype": "F32", "shape": [' + GIANT.encode()
                                                + b'], "data_offsets": [0, 16]}}', bytes(16)),
                              safetensors_bytes([1, 2]),
                              lambda tmp: safetensors_bytes(weights_header(), np.ones(4, np.float32).tobytes())[:-6]),
    "torch": Row(lambda p: readers.safe_torch_load(p, "checkpoint"), lambda tmp: torch_bytes({"step": 3}), None, None,
                 torch_bytes({"x": Unsafe()}), half(lambda tmp: torch_bytes({"step": list(range(99))})),
                 na="a pickle's nesting and numbers are the unpickler's, restricted to plain data"),
    "image": Row(lambda p: readers.read_image(p, "thumbnail"), lambda tmp: jpeg_bytes(), None, None,
                 b"GIF89a not really", half(lambda tmp: jpeg_bytes()), na="images do not nest"),
    "bytes": Row(lambda p: readers.read_bytes(p, "word list"), lambda tmp: b"any bytes", None, None, None, None,
                 na="bytes are bytes: only the file's kind and size are checked"),
    "sha256": Row(lambda p: readers.file_sha256(p, "weights"), lambda tmp: b"any bytes", None, None, None, None,
                  na="a hash reads bytes: only the file's kind and size are checked"),
    "media": Row(lambda p: __import__("videobert.media", fromlist=["probe"]).probe(p), mp4_bytes, None, None,
                 b"#EXTM3U\n#EXTINF:1,\n/etc/passwd\n", half(mp4_bytes), huge=sparse(1 << 40),
                 na="media do not nest; ffmpeg reads a container's header, not the whole file"),
}


def test_every_reader_has_a_row():
    assert set(ROWS) == set(readers.READERS), "a reader without a row in tests/test_readers.py (or a stale row)"
    for name, target in readers.READERS.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name
    public = {name for name in dir(readers) if re.match(r"(read|load)_", name) or name in ("npy_header", "safetensors_header")}
    registered = {target.split(":")[1] for target in readers.READERS.values() if target.startswith("videobert.readers:")}
    assert public <= registered, f"readers not in READERS: {sorted(public - registered)}"


@pytest.fixture
def small_caps(monkeypatch):
    for name in ("MAX_JSON_BYTES", "MAX_YAML_BYTES", "MAX_LINE_BYTES", "MAX_CSV_BYTES", "MAX_ARRAY_BYTES",
                 "MAX_NPZ_BYTES", "MAX_WEIGHTS_BYTES", "MAX_IMAGE_BYTES"):
        monkeypatch.setattr(readers, name, CAP)


@contextlib.contextmanager
def bounded(seconds: int = 20, memory: int = 64 << 20):
    """Fails the test if the block takes longer than ``seconds`` or allocates more than ``memory``."""
    def timeout(*_):
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    tracemalloc.start()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < memory, f"allocated {peak / 2**20:.0f} MiB"
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) * 1024 < 4 * memory


CASES = ("fifo", "dev-zero", "folder", "huge", "nested", "giant-int", "wrong-type", "truncated")


def make_case(row: Row, case: str, path: Path, tmp: Path) -> bool:
    """Write ``case`` at ``path``; False when the case has no meaning for the kind."""
    if case == "fifo":
        os.mkfifo(path)
    elif case == "dev-zero":
        path.symlink_to("/dev/zero")
    elif case == "folder":
        path.mkdir()
    elif case == "huge":
        (row.huge or sparse(2 * CAP + 1))(path)
    else:
        content = {"nested": row.nested, "giant-int": row.giant, "wrong-type": row.wrong,
                   "truncated": row.truncated(tmp) if row.truncated else None}[case]
        if content is None:
            return False
        path.write_bytes(content)
    return True


@pytest.mark.parametrize("kind", sorted(ROWS))
def test_each_reader_reads_its_valid_file(kind, tmp_path, small_caps):
    row = ROWS[kind]
    path = tmp_path / f"good.{kind}"
    path.write_bytes(row.valid(tmp_path))
    row.read(path)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", sorted(ROWS))
def test_each_reader_gives_one_named_line_for_each_hostile_file(kind, case, tmp_path, small_caps):
    row = ROWS[kind]
    path = tmp_path / f"hostile-{case}.{kind}"
    if not make_case(row, case, path, tmp_path):
        assert row.na, f"{kind}: {case} has no content and no reason why"
        pytest.skip(f"{kind}: {row.na}")
    with bounded():
        with pytest.raises(InputError) as caught:
            row.read(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    assert len(message) < 600, message


def test_a_field_of_200_k_characters_and_a_latin1_csv_are_named(tmp_path):
    long = tmp_path / "long.csv"
    long.write_text("video_id,sentence\nv1," + "x" * 200_000 + "\n")
    with pytest.raises(InputError, match=r"long\.csv:\d+: malformed test list \(field larger than field limit"):
        readers.read_csv(long, "test list")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("video_id,sentence\nv1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.csv: cannot read test list \(not UTF-8 text"):
        readers.read_csv(latin, "test list")


def test_yaml_aliases_cannot_multiply_a_document(tmp_path):
    path = tmp_path / "laughs.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path.write_text("\n".join(lines) + "\n")
    with bounded():
        with pytest.raises(InputError, match="laughs.yaml: more than 1000000 values"):
            readers.read_yaml(path)


def test_a_jsonl_line_over_the_cap_is_refused_before_it_is_held(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 1 << 20)
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "' + b"x" * (8 << 20) + b'"}\n')
    with bounded(memory=16 << 20):
        with pytest.raises(InputError, match=r"m\.jsonl:2: line longer than 1 MiB"):
            list(readers.read_jsonl(path))


def test_named_fields_are_checked_for_type_and_bounds():
    fields = {"layers": readers.Field("int", 1, 512), "dropout": readers.Field("number", 0, 1),
              "eps": readers.Field("number", 0, 1, above=True), "name": readers.Field("str", required=False)}
    good = {"layers": 2, "dropout": 0.1, "eps": 1e-12}
    assert readers.check_fields(good, "config.json", fields) is good
    for key, value, words in [("layers", 100000, "out of range"), ("layers", 0, "out of range"),
                              ("layers", 128.0, "not a whole number"), ("layers", True, "not a whole number"),
                              ("dropout", 2.5, "out of range"), ("eps", "abc", "not a finite number"),
                              ("eps", 0, "out of range"), ("dropout", float("nan"), "not a finite number"),
                              ("name", ["x"], "not a string")]:
        with pytest.raises(InputError, match=rf"^config\.json: {key}: .* {words}"):
            readers.check_fields({**good, key: value}, "config.json", fields)
    with pytest.raises(InputError, match="config.json: dropout: missing"):
        readers.check_fields({"layers": 2, "eps": 1e-12}, "config.json", fields)


# Calls that parse a file's contents; outside videobert/readers.py each needs a reason here.
RAW_PARSERS = re.compile(r"yaml\.(safe_)?load\(|json\.load\(|json\.loads\(|np\.load\(|Image\.open\(|safe_open\(|"
                         r"load_file\(|csv\.(reader|DictReader)\(|torch\.load\(|\.read_text\(|\.read_bytes\(|"
                         r"av\.open\(|EncodedVideo")
ALLOWED = {
    "videobert/readers.py": "the readers",
    "videobert/media.py": "the media reader: PyAV behind check_regular and the demuxer whitelist; frames ffmpeg piped",
    "videobert/config.py": "a --set value from the command line, not a file",
    "videobert/text/transcripts.py": "telling JSON from JSONL in text already read by the reader",
    "videobert/runtime.py": "/proc/cpuinfo",
    "videobert/threads.py": "the cgroup's CPU quota (/sys/fs/cgroup), read before anything imports torch",
    "pipelines/cli.py": "the packaged --help text it prints",
    "videobert/embed/stage.py": "the stage's own part files of this run, merged",
    "videobert/store.py": "the failure files of this run's own shards, merged",
}


def test_files_are_parsed_only_by_the_readers():
    found = []
    for path in sorted([*(REPO / "videobert").rglob("*.py"), *(REPO / "pipelines").rglob("*.py")]):
        relative = str(path.relative_to(REPO))
        if relative in ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = re.sub(r"``[^`]*``", "", line.split("#")[0])  # not in comments or docstrings' code
            if RAW_PARSERS.search(code):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "files parsed outside videobert/readers.py:\n" + "\n".join(found)
