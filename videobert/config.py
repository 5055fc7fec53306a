"""Stage configuration: dataclasses loaded from YAML and overridden key by key.

Each stage keeps its own ``@dataclass`` next to the code it configures (``ExtractConfig`` in
``features.py`` and so on); this module is the machinery they share:

* :func:`from_dict` builds a dataclass from plain data, checking every key and value. An unknown
  key is refused with an error that names it, lists the valid keys and suggests the closest one.
* :func:`load` layers defaults < YAML file < overrides (``{"k": v}`` or ``"a.b=v"`` strings).
* :func:`to_dict` / :func:`save` write the resolved config back as YAML (``config.yaml`` of a stage).

Field help comes from ``field(help=...)``; the command line reads it for ``--help``.

**Settings that only change speed.** A field declared with ``field(..., speed_only=True)`` changes
how fast (or how verbosely) a stage runs, never what it writes — worker counts, batch sizes that
do not change results, logging and checkpoint cadence. That declaration is the only list of them:
:func:`speed_only_keys` reads it, and :func:`settings` leaves those fields out of what decides a
result, which the pipeline runner's skip check, pretraining's ``--resume`` check and the vocab
stage's rebuild check all use. ``--help`` marks them.

**Sections.** A stage config that feeds several parts of the code is composed of their sections by
inheritance: pretraining's ``PretrainConfig`` *is* the ``DataConfig`` the data path reads, so the
same object is passed on, never copied field by field, and the keys stay flat (``mask_prob``, not
``data.mask_prob``). :func:`settings` can pick one section's fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, Union

import yaml

from videobert import readers
from videobert.errors import ConfigError, InputError
from videobert.store import atomic_write_text

T = TypeVar("T")


SPEED_ONLY_NOTE = "only changes speed"


def field(
    default: Any = dataclasses.MISSING, *, help: str, speed_only: bool = False, default_factory: Any = dataclasses.MISSING,
    neutral: bool = False, former: str | None = None,
):
    """A dataclass field that carries its ``--help`` text, and whether it only changes speed.

    ``neutral``: the field's default does what the code did before the field existed, so at that
    default it is left out of :func:`settings` — a run folder made before it was added stays up to
    date (and resumable) instead of being rerun. ``former``: the field's earlier name, still
    accepted (YAML, ``--set``, a ``--flag`` alias) and the name :func:`settings` records it under,
    so that folders made before the rename stay up to date."""
    metadata = {"help": help, "speed_only": speed_only, "neutral": neutral, "former": former}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def is_speed_only(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("speed_only"))


def speed_only_keys(cls: type) -> set[str]:
    """Names of the fields of config class ``cls`` declared ``speed_only``."""
    return {f.name for f in dataclasses.fields(cls) if is_speed_only(f)}


def settings(cfg: Any, section: type | None = None) -> dict[str, Any]:
    """What of ``cfg`` decides a result: its fields as plain data, less those that only change
    speed; with ``section``, only the fields that section (a base class of ``cfg``'s) declares."""
    names = {f.name for f in dataclasses.fields(section)} if section is not None else None
    return {
        f.metadata.get("former") or f.name: _plain(getattr(cfg, f.name))
        for f in dataclasses.fields(cfg)
        if not is_speed_only(f) and (names is None or f.name in names)
        and not (f.metadata.get("neutral") and getattr(cfg, f.name) == f.default)
    }


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass's fields (string annotations evaluated)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_describe(args[0])}" if args else "list"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type ``tp`` and convert the lossless cases (int -> float, str -> Path)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_type, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return from_dict(tp, value, where=key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(f"{key}: expected one of {[m.value for m in tp]}, got {value!r}") from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{key}: expected a path, got {value!r}")
    if tp is dict or origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    raise TypeError(f"config field {key} has unsupported type {tp!r}")


def unknown_key_error(key: str, valid: list[str], where: str = "") -> ConfigError:
    """The error for a key that is not a field: names it, suggests the closest, lists the valid ones."""
    full = f"{where}.{key}" if where else key
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{full}'{hint}; valid keys: {', '.join(valid)}")


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and ill-typed values raise :class:`ConfigError`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = field_types(cls)
    valid = list(hints)
    formers = former_names(cls)
    kwargs = {}
    for key, value in data.items():
        if key in formers:
            if formers[key] in data:
                raise ConfigError(f"{where + '.' if where else ''}{key}: the former name of '{formers[key]}'; give one of them")
            key = formers[key]
        if key not in hints:
            raise unknown_key_error(str(key), valid, where)
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where else key)
    try:
        cfg = cls(**kwargs)
    except TypeError as exc:  # a required field was not given
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None
    check = getattr(cfg, "check", None)
    if callable(check):
        check()
    return cfg


def former_names(cls: type) -> dict[str, str]:
    """Former name -> field name, for the fields of ``cls`` that were renamed."""
    return {f.metadata["former"]: f.name for f in dataclasses.fields(cls) if f.metadata.get("former")}


def canonical_keys(cls: type, data: Any) -> Any:
    """``data`` (plain config data for ``cls``) with former names replaced by the fields' names,
    in nested sections too — so that layers merge whichever name each used."""
    if not isinstance(data, Mapping) or not dataclasses.is_dataclass(cls):
        return data
    formers, hints = former_names(cls), field_types(cls)
    out = {}
    for key, value in data.items():
        name = formers.get(key, key) if formers.get(key) not in data else key
        inner = [arg for arg in (typing.get_args(hints[name]) or (hints[name],)) if dataclasses.is_dataclass(arg)] \
            if name in hints else []
        out[name] = canonical_keys(inner[0], value) if inner else value
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML/JSON-able data (the inverse of :func:`from_dict`)."""
    return _plain(cfg)


def config_hash(data: Any) -> str:
    """A short stable hash of plain data (configs, input lists) for run bookkeeping."""
    text = json.dumps(_plain(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a YAML mapping (:func:`videobert.readers.read_yaml`: a regular file, size-capped, nesting
    bounded); a missing, unreadable or malformed file raises :class:`ConfigError` naming it."""
    path = Path(path)
    try:
        data = readers.read_yaml(path, what)
    except InputError as exc:
        raise ConfigError(str(exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` -> (["a", "b"], 3); the value is read as YAML (numbers, booleans, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}' is not of the form key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def merge(base: dict[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict update: nested mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load(
    cls: type[T],
    yaml_path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    assignments: list[str] | None = None,
    section: str | None = None,
) -> T:
    """Defaults, then the YAML file (its ``section`` if given), then ``overrides`` (a mapping), then
    ``assignments`` (``"a.b=v"`` strings); the result is checked strictly by :func:`from_dict`."""
    data: dict[str, Any] = {}
    source = ""
    if yaml_path is not None:
        data = read_yaml(yaml_path)
        source = str(yaml_path)
        if section is not None:
            data = data.get(section) or {}
            source = f"{yaml_path} [{section}]"
    data = canonical_keys(cls, data)
    if overrides:
        data = merge(data, canonical_keys(cls, overrides))
    for text in assignments or []:
        path, value = parse_assignment(text)
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        data = merge(data, canonical_keys(cls, nested))
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        if source:
            raise ConfigError(f"{source}: {exc}") from None
        raise


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True)


def save(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, dump_yaml(cfg))
