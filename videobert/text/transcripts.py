"""Transcripts: reading timed speech from caption files, and writing WebVTT.

:func:`read_transcript` is the one entry point; the format is taken from the file's extension or,
failing that, its content:

* **WebVTT** (``.vtt``), including YouTube auto-captions. Those carry word timings as inline
  timestamp tags (``hello<00:00:01.234><c> world</c>``) and show speech as a rolling two-line
  window, so every line appears two or three times (as the new tagged line, in a 10 ms transition
  cue, then as the top line of the next cue). Files with inline timestamps are de-duplicated: an
  untagged line that repeats the line read just before is dropped when its cue has more lines after
  it or lasts under 0.1 s, so that each spoken word is kept once with its own time.
* **SRT** (``.srt``): numbered blocks, ``00:00:01,000 --> 00:00:02,500``.
* **JSON** (``.json``) in the HowTo100M layout ``{"start": [...], "end": [...], "text": [...]}``
  (also wrapped in a one-key ``{video_id: {...}}`` object), or a list of ``{start, end, text}``.
* **JSONL** (``.jsonl``): one ``{"start", "end", "text"}`` object per line.

Text is cleaned the same way for every format: markup tags are removed, HTML entities decoded,
and non-speech annotations (``[Music]``, ``♪``, ``>>`` speaker changes) dropped. Cues must be in
time order: a cue that starts before the previous one is an error naming the file and line; a cue
that starts while the previous one is still showing ends that one (captions, HowTo100M's among
them, overlap by design), and cues that start together are joined. Undecodable bytes, empty
files and malformed timestamps are errors (:class:`~videobert.errors.InputError`) that name the
file and line. A WebVTT file with a header and no cue is valid: a video without speech.
"""

from __future__ import annotations

import codecs
import html
import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Literal

from videobert.errors import InputError
from videobert.store import atomic_write_text, parse_json, parse_jsonl, read_bytes

FORMATS = ("vtt", "srt", "json", "jsonl")
Format = Literal["vtt", "srt", "json", "jsonl"]

# A YouTube transition cue lasts 10 ms; real speech never fits in 0.1 s.
_TRANSITION_CUE_SECONDS = 0.1

_TIMESTAMP = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})$")
_INLINE_TIMESTAMP = re.compile(r"<((?:\d+:)?\d{2}:\d{2}\.\d{3})>")
# A tag, override or annotation holds no opening bracket of its own kind: matching stays linear
# in the length of the text even when a bracket is never closed.
_TAG = re.compile(r"<[^<>]*>")
_ASS_OVERRIDE = re.compile(r"\{\\[^{}]*\}")
_ANNOTATION = re.compile(r"\[[^\[\]]*\]|♪+|^\s*>>+|(?<=\s)>>+")
_LINE_END = re.compile(r"\r\n|\r|\n")  # WebVTT's and SRT's line ends; not U+2028, U+0085, form feed...

MAX_TRANSCRIPT_BYTES = 32 << 20  # ten hours of word-timed captions are under 5 MiB
MAX_SECONDS = 1e7  # about 115 days: a cue time beyond it is an error in the file


@dataclass(frozen=True)
class Word:
    """One word spoken from ``start`` to ``end`` (seconds)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Cue:
    """A piece of speech: ``text`` spoken from ``start`` to ``end`` (seconds). ``words`` holds the
    timing of each word when the source has it (ASR output, auto-captions), else it is empty."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


# ----------------------------------------------------------------------------------------------
# Writing


def format_timestamp(seconds: float) -> str:
    """WebVTT timestamp ``HH:MM:SS.mmm``."""
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _escape(text: str) -> str:
    return " ".join(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").split())


def cue_payload(cue: Cue) -> str:
    """The cue's text; with word timings, each word after the first behind its timestamp tag
    (``okay <00:00:01.300>so <00:00:01.520>now``), which :func:`read_transcript` reads back."""
    if not cue.words:
        return _escape(cue.text)
    parts = [_escape(cue.words[0].text)]
    parts += [f"<{format_timestamp(w.start)}>{_escape(w.text)}" for w in cue.words[1:]]
    return " ".join(parts)


def webvtt_text(cues: Iterable[Cue]) -> str:
    blocks = ["WEBVTT", ""]
    for cue in cues:
        blocks.append(f"{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}")
        blocks.append(cue_payload(cue))
        blocks.append("")
    return "\n".join(blocks)


def write_webvtt(path: str | Path, cues: Iterable[Cue]) -> None:
    """Write cues as a WebVTT file, atomically."""
    atomic_write_text(path, webvtt_text(cues))


# ----------------------------------------------------------------------------------------------
# Reading


def clean_text(text: str) -> str:
    """Caption text as spoken words: tags removed, entities decoded, annotations dropped."""
    text = _ASS_OVERRIDE.sub("", _TAG.sub("", text))
    text = html.unescape(text).replace("\u00a0", " ")
    text = _ANNOTATION.sub(" ", text)
    return " ".join(text.split())


def parse_timestamp(text: str) -> float:
    """``[HH:]MM:SS.mmm`` (or ``,mmm``) in seconds; raises ``ValueError`` for anything else."""
    match = _TIMESTAMP.match(text.strip())
    if not match:
        raise ValueError(f"malformed timestamp {text.strip()!r} (expected HH:MM:SS.mmm)")
    hours, minutes, seconds, fraction = match.groups()
    if int(minutes) >= 60 or int(seconds) >= 60:
        raise ValueError(f"malformed timestamp {text.strip()!r} (minutes and seconds must be below 60)")
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(fraction) / 10 ** len(fraction)


def detect_format(path: str | Path, text: str | None = None) -> Format:
    """The transcript format from the extension, else from the first characters of ``text``."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix  # type: ignore[return-value]
    if text is not None:
        head = text.lstrip("\ufeff \t\r\n")
        if head.startswith("WEBVTT"):
            return "vtt"
        if head.startswith("["):
            return "json"
        if head.startswith("{"):
            try:
                json.loads(head)
                return "json"
            except (ValueError, RecursionError):  # not one JSON value (or one the JSON reader refuses by name)
                return "jsonl"
        if "-->" in head[:500]:
            return "srt"
    raise InputError(
        f"{path}: cannot tell the transcript format (use a .vtt, .srt, .json or .jsonl name, or give format=)"
    )


def read_transcript(
    path: str | Path,
    format: Format | None = None,
    *,
    encoding: str | None = None,
) -> list[Cue]:
    """The cues of a transcript file, in time order (see the module docstring for the rules).

    ``format`` is one of ``vtt``, ``srt``, ``json``, ``jsonl`` (default: detected). ``encoding``
    defaults to UTF-8, or UTF-16 when the file starts with its byte-order mark. Raises
    :class:`InputError` naming the file (and line) for anything that is not a readable transcript.
    """
    path = Path(path)
    data = read_bytes(path, "transcript", MAX_TRANSCRIPT_BYTES)
    text = _decode(path, data, encoding)
    if not text.strip("\ufeff \t\r\n"):
        raise InputError(f"{path}: empty transcript file")
    if format is None:
        format = detect_format(path, text)
    elif format not in FORMATS:
        raise InputError(f"{path}: unknown transcript format {format!r} (choose from {', '.join(FORMATS)})")
    parser = {"vtt": _parse_webvtt, "srt": _parse_srt, "json": _parse_json, "jsonl": _parse_jsonl}[format]
    return _in_time_order(parser(path, text.lstrip("\ufeff")))


def _decode(path: Path, data: bytes, encoding: str | None) -> str:
    if encoding is None:
        if data.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
        elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            encoding = "utf-16"
        else:
            encoding = "utf-8"
    try:
        return data.decode(encoding)
    except LookupError:
        raise InputError(f"{path}: unknown text encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}:{line}: not {encoding} text (byte 0x{data[exc.start]:02x}); "
            "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8) or give its encoding"
        ) from None


@dataclass(frozen=True)
class _Located:
    """A cue and where it came from, for error messages."""

    where: str
    cue: Cue


def _cue(where: str, start: float, end: float, text: str, words: tuple[Word, ...] = ()) -> _Located | None:
    if not all(math.isfinite(t) and t <= MAX_SECONDS for t in (start, end, *(t for w in words for t in (w.start, w.end)))):
        raise InputError(f"{where}: cue time beyond {MAX_SECONDS:.0e} s (about 115 days)")
    if end < start:
        raise InputError(f"{where}: cue ends ({end:.3f} s) before it starts ({start:.3f} s)")
    if start < 0:
        raise InputError(f"{where}: negative cue time {start}")
    if not text:
        return None
    return _Located(where, Cue(start, end, text, words))


def _timing(where: str, line: str) -> tuple[float, float]:
    left, _, right = line.partition("-->")
    fields = right.split()
    if not fields:
        raise InputError(f"{where}: malformed cue timing {line.strip()!r} (expected START --> END)")
    try:
        return parse_timestamp(left), parse_timestamp(fields[0])
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


def _lines(text: str) -> list[str]:
    """``text`` split at CR LF, CR or LF only (``str.splitlines`` also splits inside a caption at
    U+2028, U+0085 and form feeds, shifting the line numbers)."""
    lines = _LINE_END.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


def _blocks(text: str, blank: Callable[[str], bool]) -> list[list[tuple[int, str]]]:
    """Lines grouped into blocks separated by lines for which ``blank(line)`` holds, with 1-based numbers."""
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for number, line in enumerate(_lines(text), start=1):
        if blank(line):
            if current:
                blocks.append(current)
                current = []
        else:
            current.append((number, line))
    if current:
        blocks.append(current)
    return blocks


def _parse_webvtt(path: Path, text: str) -> list[_Located]:
    first = _lines(text)[0] if text else ""
    if not (first == "WEBVTT" or first.startswith(("WEBVTT ", "WEBVTT\t"))):
        raise InputError(f"{path}:1: not a WebVTT file (the first line must be 'WEBVTT')")
    # Only an empty line ends a WebVTT block: YouTube writes lines of one space inside its cues.
    blocks = _blocks(text, lambda line: line == "")
    header = blocks[0]
    timed = [k for k, (_, line) in enumerate(header) if "-->" in line]
    cue_blocks = blocks[1:]
    if timed:  # no empty line after the header: the cues start at the first timing line
        cue_blocks.insert(0, header[timed[0]:])
    raw: list[tuple[str, float, float, list[str]]] = []
    for block in cue_blocks:
        number, head = block[0]
        if head.startswith(("NOTE", "STYLE", "REGION")) and "-->" not in head:
            continue
        if "-->" not in head:
            if len(block) < 2 or "-->" not in block[1][1]:
                raise InputError(f"{path}:{number}: expected a cue timing line 'HH:MM:SS.mmm --> HH:MM:SS.mmm'")
            block = block[1:]  # the first line was the cue identifier
        # A timing line inside the payload starts a new cue (a separator line of spaces).
        cue_lines: list[tuple[int, str]] = []
        for number, line in block:
            if "-->" in line and cue_lines:
                raw.append(_raw_vtt_cue(path, cue_lines))
                cue_lines = []
            cue_lines.append((number, line))
        raw.append(_raw_vtt_cue(path, cue_lines))
    if any(_INLINE_TIMESTAMP.search(line) for *_, payload in raw for line in payload):
        return _rolling_captions(raw)
    cues = [_cue(where, start, end, clean_text(" ".join(payload))) for where, start, end, payload in raw]
    return [c for c in cues if c is not None]


def _raw_vtt_cue(path: Path, lines: list[tuple[int, str]]) -> tuple[str, float, float, list[str]]:
    number, timing = lines[0]
    where = f"{path}:{number}"
    start, end = _timing(where, timing)
    if end < start:
        raise InputError(f"{where}: cue ends ({end:.3f} s) before it starts ({start:.3f} s)")
    return where, start, end, [line for _, line in lines[1:]]


def _rolling_captions(raw: list[tuple[str, float, float, list[str]]]) -> list[_Located]:
    """Cues of a file with inline word timestamps, each spoken line once (see the module docstring)."""
    cues: list[_Located] = []
    last_line = None
    for where, start, end, payload in raw:
        lines = [line for line in payload if line.strip()]
        for position, line in enumerate(lines):
            tagged = bool(_INLINE_TIMESTAMP.search(line))
            plain = clean_text(line)
            repeated = not tagged and plain == last_line
            if repeated and (position < len(lines) - 1 or end - start < _TRANSITION_CUE_SECONDS):
                continue
            last_line = plain
            words = _timed_words(where, line, start, end)
            if words:
                located = _cue(where, words[0].start, end, " ".join(w.text for w in words), tuple(words))
                if located is not None:
                    cues.append(located)
    return cues


def _timed_words(where: str, line: str, start: float, end: float) -> list[Word]:
    """The words of one caption line; text before the first timestamp tag starts at ``start``,
    each word ends where the next begins, the last at ``end``; several words between two tags
    share that interval evenly."""
    pieces = _INLINE_TIMESTAMP.split(line)
    chunks: list[tuple[float, list[str]]] = [(start, clean_text(pieces[0]).split())]
    for stamp, chunk_text in zip(pieces[1::2], pieces[2::2]):
        try:
            moment = parse_timestamp(stamp)
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        if moment < chunks[-1][0] - 1e-6:
            raise InputError(f"{where}: word timestamp {stamp} goes back in time")
        chunks.append((moment, clean_text(chunk_text).split()))
    words: list[Word] = []
    for index, (chunk_start, chunk_words) in enumerate(chunks):
        chunk_end = chunks[index + 1][0] if index + 1 < len(chunks) else max(end, chunk_start)
        step = (chunk_end - chunk_start) / max(1, len(chunk_words))
        for k, word in enumerate(chunk_words):
            words.append(Word(round(chunk_start + k * step, 3), round(chunk_start + (k + 1) * step, 3), word))
    # a word ends when the next one starts (empty chunks, e.g. "[Music]", leave gaps of silence)
    return [
        replace(w, end=min(w.end, words[i + 1].start)) if i + 1 < len(words) else w for i, w in enumerate(words)
    ]


def _parse_srt(path: Path, text: str) -> list[_Located]:
    cues = []
    for block in _blocks(text, lambda line: not line.strip()):
        lines = block
        if "-->" not in lines[0][1]:
            if lines[0][1].strip().isdigit() and len(lines) > 1 and "-->" in lines[1][1]:
                lines = lines[1:]
            else:
                number = lines[1][0] if lines[0][1].strip().isdigit() and len(lines) > 1 else lines[0][0]
                raise InputError(f"{path}:{number}: expected an SRT timing line 'HH:MM:SS,mmm --> HH:MM:SS,mmm'")
        number, timing = lines[0]
        where = f"{path}:{number}"
        start, end = _timing(where, timing)
        located = _cue(where, start, end, clean_text(" ".join(line for _, line in lines[1:])))
        if located is not None:
            cues.append(located)
    return cues


def _number(where: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}: '{key}' must be a number of seconds, got {value!r}")
    return float(value)


def _object_cue(where: str, item: object) -> _Located | None:
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected an object with start, end, text; got {type(item).__name__}")
    missing = [key for key in ("start", "end", "text") if key not in item]
    if missing:
        raise InputError(f"{where}: missing key {missing[0]!r} (need start, end, text)")
    if not isinstance(item["text"], str):
        raise InputError(f"{where}: 'text' must be a string, got {item['text']!r}")
    return _cue(where, _number(where, "start", item["start"]), _number(where, "end", item["end"]), clean_text(item["text"]))


def _parse_json(path: Path, text: str) -> list[_Located]:
    data = parse_json(text, path)
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), dict):
        data = next(iter(data.values()))  # HowTo100M's {video_id: {...}}
    if isinstance(data, list):
        cues = [_object_cue(f"{path}: entry {i}", item) for i, item in enumerate(data)]
        return [c for c in cues if c is not None]
    if not isinstance(data, dict) or not {"start", "end", "text"} <= set(data):
        raise InputError(
            f"{path}: expected HowTo100M-style {{\"start\": [...], \"end\": [...], \"text\": [...]}} "
            "or a list of {start, end, text} objects"
        )
    columns = [data["start"], data["end"], data["text"]]
    if not all(isinstance(column, list) for column in columns):
        raise InputError(f"{path}: 'start', 'end' and 'text' must be lists")
    if len({len(column) for column in columns}) != 1:
        raise InputError(
            f"{path}: 'start', 'end' and 'text' differ in length ({', '.join(str(len(c)) for c in columns)})"
        )
    cues = [
        _object_cue(f"{path}: entry {i}", {"start": s, "end": e, "text": t}) for i, (s, e, t) in enumerate(zip(*columns))
    ]
    return [c for c in cues if c is not None]


def _parse_jsonl(path: Path, text: str) -> list[_Located]:
    cues = []
    for number, item in parse_jsonl(text.split("\n"), path):
        located = _object_cue(f"{path}:{number}", item)
        if located is not None:
            cues.append(located)
    return cues


def _in_time_order(located: list[_Located]) -> list[Cue]:
    """Check the order; end overlapped cues where the next begins; join cues that start together."""
    cues: list[Cue] = []
    for index, item in enumerate(located):
        cue = item.cue
        if cues:
            previous = cues[-1]
            if cue.start < previous.start:
                raise InputError(
                    f"{item.where}: cue starts at {cue.start:.3f} s, before the previous cue "
                    f"({previous.start:.3f} s); cues must be in time order"
                )
            if cue.start == previous.start:
                cues[-1] = Cue(
                    previous.start, max(previous.end, cue.end), f"{previous.text} {cue.text}",
                    previous.words + cue.words if previous.words and cue.words else (),
                )
                continue
            if cue.start < previous.end:
                words = tuple(replace(w, end=max(w.start, min(w.end, cue.start))) for w in previous.words)
                cues[-1] = Cue(previous.start, cue.start, previous.text, words)
        cues.append(cue)
    return cues
