"""Lazy, picklable access to data files: :class:`H5Source`, :class:`H5Array`, :class:`LazyRows`.

An :class:`H5Source` is a file opened on first use (and again after unpickling
or in a forked process), validated each time it is opened; an :class:`H5Array`
reads one dataset's rows when indexed; a :class:`LazyRows` is the out-of-core
stand-in for an ndarray of per-blend rows (the labels ``y``).
"""
from __future__ import annotations

import numbers
import os
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from deblendkit._checks import positive_int
from deblendkit.errors import ConfigError, DataFileError
from deblendkit.storage.reader import (
    H5_ERRORS,
    REGENERATE_HINT,
    FileLayout,
    block_rows,
    open_data_file,
    read_checked,
    read_layout,
    validate_file,
)
from deblendkit.storage.schema import DATASETS, DTYPES, PER_BLEND_DATASETS, truth_dtype

__all__ = ["H5Source", "H5Array", "LazyRows"]


class H5Source:
    """A data file opened lazily, read-only; picklable (the state is the path).

    The handle is opened on first use and re-opened after unpickling or in a forked
    process; on (re-)opening the file is validated again and must still have the
    layout it had when this object was made.

    Parameters
    ----------
    path : str or path-like
        The file.
    layout : FileLayout, optional
        Its layout, if already validated.
    """

    def __init__(self, path: str | os.PathLike, layout: FileLayout | None = None) -> None:
        self.path = os.path.abspath(path)
        self.layout = layout if layout is not None else validate_file(self.path)
        self._file: h5py.File | None = None
        self._pid: int | None = None

    @property
    def file(self) -> h5py.File:
        """The open h5py file (opened on demand)."""
        if self._file is None or self._pid != os.getpid() or not self._file.id.valid:
            f = open_data_file(self.path)
            try:
                layout = read_layout(f, self.path)
            except BaseException:
                f.close()
                raise
            if layout != self.layout:
                f.close()
                raise DataFileError(
                    f"{self.path} changed since it was opened: now {layout}, was {self.layout}"
                )
            self._file, self._pid = f, os.getpid()
        return self._file

    def array(self, name: str) -> "H5Array":
        """Lazy view of the dataset ``name``."""
        if name not in DATASETS:
            raise KeyError(f"{name!r}; the datasets are {', '.join(DATASETS)}")
        return H5Array(self, name)

    def close(self) -> None:
        """Close the handle (it reopens on the next read)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "layout": self.layout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.layout = state["layout"]
        self._file = None
        self._pid = None

    def __repr__(self) -> str:
        return f"H5Source({self.path!r})"


class H5Array:
    """Read-only, lazy view of one dataset of a :class:`H5Source`.

    Indexing reads from the file: ``a[i]``, ``a[lo:hi]`` and ``a[index_array]`` (any
    order, repeats allowed; read as contiguous runs). ``np.asarray(a)`` reads all.
    Checksum and read failures raise :class:`DataFileError`.
    """

    def __init__(self, source: H5Source, name: str) -> None:
        self.source = source
        self.name = name
        if name == "truth":
            self.shape: tuple[int, ...] = (source.layout.n_truth,)
            self.dtype = truth_dtype(source.layout.bands)
        else:
            self.shape = source.layout.shapes()[name]
            self.dtype = DTYPES[name]

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def _ds(self) -> h5py.Dataset:
        try:
            return self.source.file[self.name]
        except H5_ERRORS as exc:
            raise DataFileError(
                f"{self.source.path} is corrupt: opening dataset {self.name!r} failed ({exc}); "
                f"{REGENERATE_HINT}"
            ) from exc

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (slice, numbers.Integral)) or key is Ellipsis or isinstance(key, tuple):
            return read_checked(self._ds, key, self.source.path)
        return self.take(key)

    def take(self, indices: Any) -> np.ndarray:
        """Rows ``indices`` (1-D ints, any order) as an array of shape (len, ...)."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        if idx.ndim != 1:
            raise IndexError(f"row indices must be 1-D, got shape {idx.shape}")
        n = self.shape[0]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {self.name!r} with {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        uniq, inverse = np.unique(idx, return_inverse=True)
        out = np.empty((uniq.size,) + tuple(self.shape[1:]), dtype=self.dtype)
        ds = self._ds
        max_rows = block_rows(self)
        # Split the sorted unique rows into contiguous runs of at most max_rows.
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        bounds = np.concatenate(([0], breaks, [uniq.size]))
        for a, b in zip(bounds[:-1], bounds[1:]):
            for lo in range(int(a), int(b), max_rows):
                hi = min(int(b), lo + max_rows)
                out[lo:hi] = read_checked(ds, slice(int(uniq[lo]), int(uniq[hi - 1]) + 1), self.source.path)
        if uniq.size == idx.size and np.array_equal(uniq, idx):
            return out
        return out[inverse.reshape(-1)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[...]
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"H5Array({self.source.path!r}, {self.name!r}, shape={self.shape}, dtype={self.dtype})"


class LazyRows:
    """Rows of one per-blend dataset of a data file, read only when indexed.

    The out-of-core stand-in for an ndarray such as the labels ``y``
    (``isolated``, shape (n, K, C, H, W), float32, ADU): it has ``shape``,
    ``dtype``, ``ndim`` and ``len``; ``rows[i]``, ``rows[lo:hi]``, ``rows[idx]``
    (int array or boolean mask) and ``np.asarray(rows)`` read from the file and
    return ndarrays (numpy semantics); :meth:`subset` returns another lazy
    view without reading; :meth:`batches` streams consecutive rows. Pickles as
    the file path and the row indices.

    Parameters
    ----------
    array : H5Array
        The dataset, e.g. ``H5Source(path).array("isolated")``.
    index : array of int, optional
        Rows of the dataset held here (default all).
    """

    def __init__(self, array: H5Array, index: Any = None) -> None:
        self.array = array
        if index is not None:
            index = np.asarray(index, dtype=np.int64)
            if index.ndim != 1:
                raise IndexError(f"row indices must be 1-D, got shape {index.shape}")
            index.flags.writeable = False
        self._index = index

    @classmethod
    def from_file(cls, path: str | os.PathLike, name: str = "isolated") -> "LazyRows":
        """All rows of dataset ``name`` of the data file ``path`` (validated now)."""
        if name not in PER_BLEND_DATASETS:
            raise ConfigError(f"{name!r} is not a per-blend dataset; allowed: {list(PER_BLEND_DATASETS)}")
        return cls(H5Source(path).array(name))

    @property
    def shape(self) -> tuple[int, ...]:
        """(rows held here, ...row shape)."""
        return (len(self),) + tuple(self.array.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        """The dataset's dtype."""
        return self.array.dtype

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.array.ndim

    @property
    def nbytes(self) -> int:
        """Bytes the rows would take in memory."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.array.shape[0] if self._index is None else int(self._index.size)

    def _rows(self, key: Any) -> np.ndarray | slice:
        """Dataset rows of ``key`` (a slice of the dataset when possible)."""
        n = len(self)
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            k = int(key)
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of range for {n} rows")
            local = np.array([k % n], dtype=np.int64)
        elif isinstance(key, slice):
            local = np.arange(n, dtype=np.int64)[key]
        else:
            idx = np.asarray(key)
            if idx.dtype == bool:
                if idx.shape != (n,):
                    raise IndexError(f"a boolean mask must have shape ({n},), got {idx.shape}")
                local = np.flatnonzero(idx)
            elif idx.size == 0:
                local = np.empty(0, dtype=np.int64)
            elif idx.ndim == 1 and idx.dtype.kind in "iu":
                local = idx.astype(np.int64)
                if local.size and (local.min() < -n or local.max() >= n):
                    raise IndexError(f"row index out of range for {n} rows")
                local = np.where(local < 0, local + n, local)
            else:
                raise IndexError(
                    "rows are indexed by an int, a slice, a 1-D int array or a boolean mask, "
                    f"got {type(key).__name__}"
                )
        return local if self._index is None else self._index[local]

    def subset(self, key: Any) -> "LazyRows":
        """Lazy view of the rows ``key`` (nothing is read)."""
        return LazyRows(self.array, self._rows(key))

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        if key is Ellipsis:
            key = slice(None)
        rows = self._rows(key)
        if rows.size and np.all(np.diff(rows) == 1):
            out = self.array[int(rows[0]): int(rows[-1]) + 1]
        else:
            out = self.array.take(rows)
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            return out[(0,) + rest]
        return out[(slice(None),) + rest] if rest else out

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Consecutive blocks of at most ``batch_size`` rows, as ndarrays."""
        batch_size = positive_int("batch_size", batch_size)
        for start in range(0, len(self), batch_size):
            yield self[start: start + batch_size]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return (
            f"LazyRows({self.array.source.path!r}, {self.array.name!r}, shape={self.shape}, "
            f"dtype={self.dtype})"
        )
