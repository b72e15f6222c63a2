"""File-backed rows of predictions: what :mod:`deblendkit.ramp.prediction` holds out of core.

A :class:`RowStore` is an unnamed scratch file of float32 rows (one per
predicted blend), written once by the workflow and then read by position. A
:class:`PredictionRows` is a read-only, array-like view of ``n`` samples:
``shape``, ``len``, ``rows[i]``, ``rows[idx]``, ``rows[mask]`` and
``np.asarray(rows)`` return new ndarrays read from the scratch files or the
data file; ``valid`` (bool, (n,)) marks the samples that hold a prediction
(the others read as NaN). The views are built by

* :func:`stored_rows` (all rows of a store: the test set's predictions),
  :func:`scattered_rows` (a fold's predicted rows among the training set's),
  :func:`label_rows` (the labels of a data file, a
  :class:`~deblendkit.storage.lazy.LazyRows`);
* ``take`` (a subset of samples: rampwf's ``fold_is``, ``set_slice``),
  ``_Gather.patched`` (``set_valid_in_train``), ``_Mean`` (``combine``).

None copies an image; views are immutable, so rampwf's deep copies share them.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np

from deblendkit.errors import ConfigError, PredictionError
from deblendkit.storage.lazy import H5Array, LazyRows

__all__ = ["PredictionRows", "RowStore", "stored_rows", "scattered_rows", "label_rows", "scratch_dir",
           "clear_label_caches", "SCRATCH_ENV"]

#: Environment variable: directory of the scratch files of file-backed predictions
#: (default: the system's temporary directory).
SCRATCH_ENV = "DEBLEND_SCRATCH_DIR"


def _runs(rows: np.ndarray):
    """(start, stop) of the runs of consecutive values in sorted unique ``rows``."""
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = rows[np.r_[0, breaks]]
    stops = rows[np.r_[breaks - 1, len(rows) - 1]] + 1
    return zip(starts.tolist(), stops.tolist())


def _divide_by_count(total: np.ndarray, count: np.ndarray) -> None:
    """In place: rows with count c > 1 divided by c, rows with count 0 set to NaN."""
    for c in np.unique(count):
        if c == 1:
            continue
        if c > 0 and (count == c).all():  # the usual case: one pass over everything
            total /= np.float32(c)
            return
        for a, b in _runs(np.flatnonzero(count == c)):
            if c == 0:
                total[a:b] = np.nan
            else:
                total[a:b] /= np.float32(c)


def scratch_dir() -> str:
    """Directory of the scratch files: ``$DEBLEND_SCRATCH_DIR``, else the system's temporary directory.

    Raises
    ------
    ConfigError
        ``DEBLEND_SCRATCH_DIR`` names something that is not a directory.
    """
    path = os.environ.get(SCRATCH_ENV, "").strip() or tempfile.gettempdir()
    if not os.path.isdir(path):
        raise ConfigError(f"{SCRATCH_ENV} must be an existing directory, got {path!r}", value=path)
    return path


def _read_into(fd: int, out: np.ndarray, offset: int) -> None:
    """Fill the C-contiguous ``out`` from ``fd`` at byte ``offset`` (``pread``: no shared file offset)."""
    view = memoryview(out.reshape(-1).view(np.uint8))
    while len(view):
        got = os.preadv(fd, [view], offset)
        if got <= 0:
            raise PredictionError(f"scratch file of predictions ended early at byte {offset}")
        view, offset = view[got:], offset + got


class RowStore:
    """Predicted rows in an unnamed scratch file: appended once, then read by position.

    The file is made with :func:`tempfile.TemporaryFile` in :func:`scratch_dir`
    (``O_TMPFILE`` on Linux: it never has a name), so nothing is left behind
    whatever ends the process; its disk space is freed when the store is
    garbage-collected. Reads use ``pread`` into fresh arrays, not a memory map,
    so rows read do not stay in the process's resident memory.

    Parameters
    ----------
    sample_shape : tuple of int
        Shape of one row, e.g. (max_galaxies, n_bands, stamp_size, stamp_size).
    directory : str, optional
        Where the file goes (default :func:`scratch_dir`).
    """

    def __init__(self, sample_shape: tuple[int, ...], directory: str | None = None) -> None:
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.row_bytes = int(np.prod(self.sample_shape, dtype=np.int64)) * 4
        self._file = tempfile.TemporaryFile(dir=directory or scratch_dir(), prefix="deblendkit-rows-")
        self.n_rows = 0

    def append(self, rows: np.ndarray) -> None:
        """Write ``rows`` (n, *sample_shape), float32, after the rows already stored."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.shape[1:] != self.sample_shape:
            raise PredictionError(f"rows of shape {rows.shape[1:]} given to a store of rows {self.sample_shape}")
        view = memoryview(rows.reshape(-1).view(np.uint8))
        offset = self.n_rows * self.row_bytes
        while len(view):
            done = os.pwrite(self._file.fileno(), view, offset)
            view, offset = view[done:], offset + done
        self.n_rows += len(rows)

    def read(self, positions: np.ndarray) -> np.ndarray:
        """Rows at ``positions`` (1-D ints in ``[0, n_rows)``, any order), float32 (len, *sample_shape)."""
        positions = np.asarray(positions, dtype=np.int64)
        order = np.argsort(positions, kind="stable")
        sorted_pos = positions[order]
        out = np.empty((len(positions), *self.sample_shape), np.float32)
        if len(positions) and (sorted_pos[0] < 0 or sorted_pos[-1] >= self.n_rows):
            raise PredictionError(f"row position out of range for a store of {self.n_rows} rows")
        breaks = np.flatnonzero(np.diff(sorted_pos) != 1) + 1
        for a, b in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(positions)].tolist()):
            _read_into(self._file.fileno(), out[a:b], int(sorted_pos[a]) * self.row_bytes)
        if not np.array_equal(order, np.arange(len(order))):
            unsorted = np.empty_like(out)
            unsorted[order] = out
            out = unsorted
        return out

    def __getstate__(self):
        raise PredictionError("file-backed predictions (a RowStore) cannot be pickled; "
                              "take np.asarray(...) of them first")


class PredictionRows:
    """Read-only, array-like view of the rows of file-backed predictions (module doc).

    Float32, shape ``(n, *sample_shape)``; ``valid`` marks the samples that hold a
    prediction (others read as NaN). Subclasses implement :meth:`read` and
    :meth:`take`; instances are never modified, so they are shared freely.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, n: int, sample_shape: tuple[int, ...], valid: np.ndarray) -> None:
        self.n = int(n)
        self.sample_shape = tuple(sample_shape)
        valid.flags.writeable = False
        self.valid = valid

    @property
    def shape(self) -> tuple[int, ...]:
        """(n, *sample_shape)."""
        return (self.n, *self.sample_shape)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return 1 + len(self.sample_shape)

    def __len__(self) -> int:
        return self.n

    def read(self, samples: np.ndarray) -> np.ndarray:
        """Rows ``samples`` (1-D ints in [0, n)) as a new float32 array; NaN where not valid."""
        raise NotImplementedError

    def take(self, samples: np.ndarray) -> "PredictionRows":
        """A view of the rows ``samples`` (1-D ints in [0, n)); nothing is read."""
        raise NotImplementedError

    def _samples(self, key) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64)[key]

    def __getitem__(self, key) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        samples = self._samples(key)
        if np.ndim(samples) == 0:  # one sample: (*sample_shape)
            return self.read(np.array([samples]))[0][rest]
        return self.read(samples)[(slice(None), *rest)]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self.read(np.arange(self.n, dtype=np.int64))
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, {int(self.valid.sum())} valid)"


class _Stored(PredictionRows):
    """All the rows of a :class:`RowStore`, in order."""

    def __init__(self, store: RowStore) -> None:
        super().__init__(store.n_rows, store.sample_shape, np.ones(store.n_rows, bool))
        self.store = store

    def read(self, samples):
        return self.store.read(samples)

    def take(self, samples):
        samples = np.asarray(samples, dtype=np.int64)
        return _Gather(self.sample_shape, (self,), np.zeros(len(samples), np.int32), samples)


class _LabelCache:
    """One dataset of a data file, decompressed once into a :class:`RowStore`, a chunk at a time.

    Every score type of every step reads the labels again (rampwf scores one
    score type at a time); reading them from the data file each time would
    decompress each chunk dozens of times (and a whole chunk for one scattered
    row). Rows are copied here the first time a row of their chunk is read,
    checksums verified, and later read back with ``pread`` (page cache, no
    resident memory). Lives as long as the process (:func:`clear_label_caches`).
    """

    def __init__(self, array) -> None:
        self.array = array
        self.pos = np.full(array.shape[0], -1, np.int64)
        self.store: RowStore | None = None
        chunks = getattr(array.source.file[array.name], "chunks", None)
        self.block = int(chunks[0]) if chunks else 16

    def read(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        missing = rows[self.pos[rows] < 0]
        if len(missing):
            if self.store is None:
                self.store = RowStore(tuple(self.array.shape[1:]))
            n, step = len(self.pos), 16 * self.block
            for a, b in _runs(np.unique(missing // self.block)):
                for lo in range(a * self.block, min(b * self.block, n), step):
                    hi = min(lo + step, b * self.block, n)
                    self.pos[lo:hi] = self.store.n_rows + np.arange(hi - lo)
                    self.store.append(self.array[lo:hi])
        return self.store.read(self.pos[rows]) if len(rows) else np.empty((0, *self.array.shape[1:]), np.float32)


_LABEL_CACHES: dict[tuple, _LabelCache] = {}


def clear_label_caches() -> None:
    """Forget the decompressed labels (their scratch files are freed)."""
    _LABEL_CACHES.clear()


def _label_cache(array) -> _LabelCache:
    key = (array.source.path, array.name, os.getpid())
    if key not in _LABEL_CACHES:
        _LABEL_CACHES[key] = _LabelCache(array)
    return _LABEL_CACHES[key]


class _Labels(PredictionRows):
    """The labels of a data file (a :class:`~deblendkit.storage.lazy.LazyRows`), read when indexed.

    Rows of a file-backed LazyRows go through the process's :class:`_LabelCache`
    of that dataset; any other object with ``subset`` is indexed directly.
    """

    def __init__(self, lazy, rows: np.ndarray | None = None) -> None:
        n = len(lazy) if rows is None else len(rows)
        super().__init__(n, tuple(lazy.shape[1:]), np.ones(n, bool))
        self.lazy = lazy
        array = getattr(lazy, "array", None)
        self._cached = rows is not None or (isinstance(lazy, LazyRows) and isinstance(array, H5Array))
        if self._cached and rows is None:
            rows = lazy._rows(slice(None))  # dataset rows of the view (LazyRows' own mapping)
        self.rows = rows

    def read(self, samples):
        samples = np.asarray(samples, dtype=np.int64)
        if self._cached:
            return _label_cache(self.lazy.array).read(self.rows[samples])
        return np.asarray(self.lazy[samples], dtype=np.float32)

    def take(self, samples):
        samples = np.asarray(samples, dtype=np.int64)
        if self._cached:
            return _Labels(self.lazy, self.rows[samples])
        return _Labels(self.lazy.subset(samples))


class _Gather(PredictionRows):
    """Sample i is row ``index[i]`` of child ``which[i]`` (-1: not predicted)."""

    def __init__(self, sample_shape, children, which, index) -> None:
        which = np.asarray(which, dtype=np.int32)
        super().__init__(len(which), sample_shape, which >= 0)
        self.children = tuple(children)
        self.which = which
        self.index = np.asarray(index, dtype=np.int64)

    def read(self, samples):
        samples = np.asarray(samples, dtype=np.int64)
        out = np.full((len(samples), *self.sample_shape), np.nan, np.float32)
        w = self.which[samples]
        for k in np.unique(w[w >= 0]).tolist():
            sel = np.flatnonzero(w == k)
            out[sel] = self.children[k].read(self.index[samples[sel]])
        return out

    def take(self, samples):
        samples = np.asarray(samples, dtype=np.int64)
        return _Gather(self.sample_shape, self.children, self.which[samples], self.index[samples])

    def patched(self, test_is: np.ndarray, rows: PredictionRows) -> "_Gather":
        """Rows ``test_is`` replaced by ``rows`` (rampwf's ``set_valid_in_train``)."""
        which, index = self.which.copy(), self.index.copy()
        k = len(self.children)
        which[test_is] = np.where(rows.valid, k, -1)
        index[test_is] = np.arange(len(test_is))
        return _Gather(self.sample_shape, (*self.children, rows), which, index)


class _Mean(PredictionRows):
    """Sample by sample, the mean of the members that hold it (:meth:`DeblendPredictions.combine`)."""

    def __init__(self, members: Sequence[PredictionRows]) -> None:
        valid = np.zeros(members[0].n, bool)
        for m in members:
            valid |= m.valid
        super().__init__(members[0].n, members[0].sample_shape, valid)
        self.members = tuple(members)

    def read(self, samples):
        samples = np.asarray(samples, dtype=np.int64)
        total = np.zeros((len(samples), *self.sample_shape), np.float32)
        count = np.zeros(len(samples), np.int64)
        for m in self.members:  # the in-memory combine's float32 operations, in its order
            have = np.flatnonzero(m.valid[samples])
            if len(have):
                total[have] = np.add(total[have], m.read(samples[have]))
                count[have] += 1
        _divide_by_count(total, count)
        return total

    def take(self, samples):
        return _Mean([m.take(samples) for m in self.members])


def stored_rows(store: RowStore) -> PredictionRows:
    """All rows of ``store``, every one valid (the test set's predictions)."""
    return _Stored(store)


def scattered_rows(n: int, rows: np.ndarray, store: RowStore) -> PredictionRows:
    """``n`` samples of which ``rows`` (distinct ints) hold the store's rows in order; the rest NaN."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) != store.n_rows:
        raise PredictionError(f"{len(rows)} rows given for a store of {store.n_rows} rows")
    which = np.full(int(n), -1, np.int32)
    index = np.zeros(int(n), np.int64)
    which[rows], index[rows] = 0, np.arange(len(rows))
    return _Gather(store.sample_shape, (_Stored(store),), which, index)


def label_rows(lazy) -> PredictionRows:
    """Labels read from their data file when indexed (``lazy``: a LazyRows or anything with ``subset``)."""
    return _Labels(lazy)


def _as_rows(source) -> PredictionRows | None:
    """``source`` as PredictionRows when it is file-backed (PredictionRows, LazyRows), else None."""
    if isinstance(source, PredictionRows):
        return source
    if hasattr(source, "subset") and hasattr(source, "shape") and not isinstance(source, np.ndarray):
        return _Labels(source)
    return None
