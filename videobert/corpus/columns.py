"""Columnar tables of flat NumPy arrays: what a corpus shard holds on disk.

A table is a folder of ``.npy`` files, one per column, all of the same number of rows ``n``:

* a **fixed** column ``<name>.npy`` holds one value per row (``[n]``);
* a **ragged** column holds a variable-length run per row as ``<name>.values.npy`` (every row's
  values concatenated) and ``<name>.offsets.npy`` (int64 ``[n + 1]``: row ``i`` is
  ``values[offsets[i]:offsets[i + 1]]``). Strings are ragged uint8 columns of UTF-8 bytes.

Arrays are memory-mapped when read (``np.load(mmap_mode="r")``), so every process that opens a
table shares one copy through the page cache and touches only the rows it reads. The files are
plain ``.npy`` (any NumPy reads them) and hold no time of writing: the same rows give the same
bytes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from videobert.errors import InputError
from videobert.readers import MAX_MAPPED_BYTES, load_npy
from videobert.store import write_synced

VALUES, OFFSETS = ".values.npy", ".offsets.npy"


class TableBuilder:
    """Rows appended one at a time, kept as compact arrays until :func:`write_table`.

    ``fixed`` maps each fixed column to its dtype, ``ragged`` each ragged column to the dtype of its
    values; ``add`` takes one value per fixed column and a sequence (or UTF-8 ``str``) per ragged one.
    """

    def __init__(self, fixed: dict[str, str], ragged: dict[str, str]):
        self.fixed_types, self.ragged_types = dict(fixed), dict(ragged)
        self._fixed: dict[str, list] = {name: [] for name in fixed}
        self._values: dict[str, list[np.ndarray]] = {name: [] for name in ragged}
        self._lengths: dict[str, list[int]] = {name: [] for name in ragged}
        self.rows = 0

    def add(self, **row) -> None:
        for name in self.fixed_types:
            self._fixed[name].append(row[name])
        for name, dtype in self.ragged_types.items():
            value = row[name]
            if isinstance(value, str):
                array = np.frombuffer(value.encode("utf-8"), np.uint8)
            else:
                array = np.asarray(value, dtype=dtype)
            self._values[name].append(array.astype(dtype, copy=False))
            self._lengths[name].append(array.size)
        self.rows += 1

    def table(self) -> "Table":
        """The rows so far as an in-memory :class:`Table`."""
        arrays = self.arrays()
        ragged = {name: Ragged(arrays[f"{name}.values"], arrays[f"{name}.offsets"]) for name in self.ragged_types}
        return Table({name: arrays[name] for name in self.fixed_types}, ragged)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every column as the arrays of its files (``name`` → fixed array; ``name.values`` and
        ``name.offsets`` for ragged ones)."""
        out = {name: np.asarray(values, dtype=self.fixed_types[name]) for name, values in self._fixed.items()}
        for name, dtype in self.ragged_types.items():
            parts = self._values[name]
            out[f"{name}.values"] = np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)
            out[f"{name}.offsets"] = np.concatenate([[0], np.cumsum(self._lengths[name], dtype=np.int64)]).astype(np.int64)
        return out


def write_table(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write each array as ``<folder>/<name>.npy`` (the folder is new: the caller renames a whole
    finished folder into place, so files need no temporary names of their own)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        write_synced(folder / f"{name}.npy", buffer.getvalue())


def open_array(path: Path, what: str) -> np.ndarray:
    """A memory-mapped ``.npy`` file whose header agrees with its size (an empty array is read
    whole: NumPy cannot map zero bytes)."""
    # a plain ndarray over the mapping (it keeps the map alive): np.memmap's own indexing is slow
    return load_npy(path, what, mmap=True, max_bytes=MAX_MAPPED_BYTES)


class Ragged(Sequence):
    """A ragged column: row ``i`` is ``values[offsets[i]:offsets[i + 1]]`` (a view, not a copy)."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        self.values, self.offsets = values, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> np.ndarray:
        return self.values[self.offsets[row] : self.offsets[row + 1]]

    def lengths(self) -> np.ndarray:
        """int64 [n]: the length of every row."""
        return np.diff(np.asarray(self.offsets, dtype=np.int64))

    def text(self, row: int) -> str:
        """Row ``row`` of a UTF-8 column as a string."""
        return bytes(self[row]).decode("utf-8")


class Table:
    """Columns of one table: ``fixed`` (name → array [rows]) and ``ragged`` (name → :class:`Ragged`
    with ``rows`` runs), read from a folder with :meth:`open` or built in memory by a
    :class:`TableBuilder`."""

    def __init__(self, fixed: dict[str, np.ndarray], ragged: dict[str, Ragged], folder: Path | None = None):
        self.fixed, self.ragged, self.folder = fixed, ragged, folder
        lengths = {name: len(array) for name, array in fixed.items()} | {name: len(r) for name, r in ragged.items()}
        if len(set(lengths.values())) > 1:
            raise InputError(f"{folder or 'table'}: unreadable table (columns of different lengths: {lengths})")
        self.rows = next(iter(lengths.values()), 0)

    @classmethod
    def open(cls, folder: Path, fixed: Iterable[str], ragged: Iterable[str], what: str = "table") -> "Table":
        """The columns named in ``fixed`` and ``ragged`` of a table folder, memory-mapped; a missing
        column, offsets that do not span their values, or columns of different lengths are an
        :class:`InputError`."""
        folder = Path(folder)
        fixed_arrays = {name: open_array(folder / f"{name}.npy", what) for name in fixed}
        ragged_columns = {}
        for name in ragged:
            values = open_array(folder / f"{name}{VALUES}", what)
            offsets = open_array(folder / f"{name}{OFFSETS}", what)
            if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(values):
                raise InputError(f"{folder / (name + OFFSETS)}: unreadable {what} (offsets do not span the values)")
            ragged_columns[name] = Ragged(values, offsets)
        return cls(fixed_arrays, ragged_columns, folder)
