"""Truth rows kept on disk while a data file is written, so that memory stays flat in its size.

A :class:`~deblendkit.storage.writer.DatasetWriter` receives the truth rows chunk by
chunk and writes the ``truth`` table once, sorted, at the end. Holding every part in
memory until then made the writer's memory grow with the file (306 bytes per source:
~0.12 GB at 10^5 blends, twice that while the parts were joined). :class:`TruthSpill`
appends each part to a raw file beside the temporary data file instead and streams
it back in blocks; the rows come back in the order they were given, or sorted by
``(blend_index, slot)`` when they were not given in that order (then, and only then,
the whole table is loaded to sort it: writers that add rows in blend order, as
``prepare_data.py``'s assembly does, never are).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from deblendkit.errors import DataFileError

__all__ = ["TruthSpill", "BLOCK_ROWS"]

BLOCK_ROWS = 1 << 16
"""Rows read back per block (~20 MB of truth rows): a multiple of the truth table's HDF5 chunk."""


class TruthSpill:
    """An append-only file of truth rows of one dtype.

    Parameters
    ----------
    path : the raw file (created on the first :meth:`append`, removed by :meth:`close`).
    dtype : the rows' structured dtype (with ``blend_index`` and ``slot``).
    max_galaxies : slots K per blend (slot is -1 for an unlabelled source, else 0..K-1).
    """

    def __init__(self, path: str | os.PathLike, *, dtype: np.dtype, max_galaxies: int) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self._stride = int(max_galaxies) + 1
        self._fh = None
        self.n_rows = 0
        self.in_order = True
        self._last_key: int | None = None

    def _keys(self, rows: np.ndarray) -> np.ndarray:
        """``(blend_index, slot)`` as one increasing integer (slot -1..K-1 fits between blends)."""
        return rows["blend_index"].astype(np.int64) * self._stride + rows["slot"].astype(np.int64)

    def append(self, rows: np.ndarray) -> None:
        """Add ``rows`` (structured array of :attr:`dtype`) after those already there.

        Raises
        ------
        DataFileError
            The file cannot be written (disk full, permissions).
        """
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if len(rows) == 0:
            return
        if self.in_order:  # once out of order, the table is sorted at the end: no more checks
            keys = self._keys(rows)
            self.in_order = not (np.any(keys[1:] < keys[:-1])
                                 or (self._last_key is not None and keys[0] < self._last_key))
            self._last_key = int(keys[-1])
        try:
            if self._fh is None:
                self._fh = open(self.path, "w+b", buffering=0)  # on disk at once, not in a buffer
            self._fh.write(rows.tobytes())
        except OSError as exc:
            raise DataFileError(f"cannot write the truth rows to {self.path}: {exc}") from exc
        self.n_rows += len(rows)

    def _read(self, start: int, count: int) -> np.ndarray:
        self._fh.seek(start * self.dtype.itemsize)
        out = np.fromfile(self._fh, dtype=self.dtype, count=count)
        if len(out) != count:
            raise DataFileError(f"{self.path} holds fewer truth rows than were written "
                                f"({start + len(out)} of {self.n_rows})")
        return out

    def blocks(self, block_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(first_row, rows)`` blocks of the whole table, sorted by ``(blend_index, slot)``.

        In the order given when that order was already sorted (read back block by
        block), else loaded and sorted (stable: rows with equal keys keep their order).
        """
        if self.n_rows == 0:
            return
        block_rows = BLOCK_ROWS if block_rows is None else int(block_rows)
        try:  # the file is unbuffered: every row appended is there to read
            if not self.in_order:
                rows = self._read(0, self.n_rows)
                rows = rows[np.lexsort((rows["slot"], rows["blend_index"]))]
                for a in range(0, self.n_rows, block_rows):
                    yield a, rows[a:a + block_rows]
                return
            for a in range(0, self.n_rows, block_rows):
                yield a, self._read(a, min(block_rows, self.n_rows - a))
        except OSError as exc:
            raise DataFileError(f"cannot read the truth rows back from {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close and delete the file (idempotent)."""
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
