"""The RAMP prediction type of the challenge: 5-D arrays of isolated images.

``problem.py`` does::

    Predictions = make_predictions_type(max_galaxies=6, n_bands=6, stamp_size=48)

and ramp-workflow builds instances as ``Predictions(y_pred=...)``,
``Predictions(y_true=..., fold_is=...)`` and ``Predictions(n_samples=n)``,
slices them (``set_valid_in_train``, ``set_slice``, ``valid_indexes``) and
averages them (``combine``) for cross-validation bagging and ensembling.

Each instance holds ``y_pred``, shape ``(n_blends, max_galaxies, n_bands,
stamp_size, stamp_size)``, float32, ADU per pixel. Memory is the concern here
(one blend is 331,776 bytes at the default shape), so, unlike rampwf's
regression type:

* arrays given to the constructor are not copied when they are already float32
  (a ``fold_is`` selection copies, as any fancy index does);
* ``Predictions(n_samples=n)`` is backed by an anonymous memory map, whose
  pages the operating system maps lazily: an empty container costs no
  memory until rows are written, and writing one fold's rows takes only
  those rows' memory. Rows not yet set hold 0, not NaN; which samples are set is
  tracked per sample (``valid_indexes``);
* ``combine`` keeps a running float32 sum and a per-sample count instead of
  stacking every member into one array and calling ``nanmean``;
* ``copy.deepcopy`` (rampwf deep-copies the full ground truth once per fold
  and score) shares the arrays, copy-on-write: ``set_slice`` never writes in
  place and ``set_valid_in_train`` copies a shared array before writing.

A sample is *valid* (predicted) unless all its values are NaN. A sample with
only some NaN values is valid and fails scoring with a
:class:`~deblendkit.errors.PredictionError` naming it, instead of being
averaged away as ``nanmean`` would.

File-backed mode (out of core, ``DEBLEND_OUT_OF_CORE=1``)
---------------------------------------------------------
rampwf 0.7 keeps every fold's predictions of the validation and test sets
until the end of ``ramp-test`` (CV bagging) and builds the ground truth of
every step with ``Predictions(y_true=y, fold_is=...)``. With a training set of
20,000 blends that is 6.6 GB per copy. So when the workflow
(:mod:`deblendkit.ramp.workflow`) runs out of core, ``y_pred`` is not an
ndarray but a :class:`~deblendkit.ramp.rows.PredictionRows`: a read-only, array-like view
(``shape``, ``len``, ``rows[i]``, ``rows[idx]``, ``np.asarray(rows)``) of

* :class:`~deblendkit.ramp.rows.RowStore` scratch files holding only the rows that were predicted
  (each an unnamed file, ``O_TMPFILE``, in :func:`~deblendkit.ramp.rows.scratch_dir`: it has no name
  to clean up, and the kernel frees it when the store is collected or the
  process ends, even by SIGKILL);
* the labels in the data file (``Predictions(y_true=LazyRows)``), read only
  for the rows scored, when they are scored (``labels read per fold``).

``fold_is``, ``set_slice``, ``set_valid_in_train`` and ``combine`` build new
views (index arrays, 12 bytes per sample) and copy no image; ``combine``'s
average is computed row by row when rows are read, with the same float32
operations as the in-memory path, so the scores are identical bit for bit.
:meth:`DeblendPredictions.scored_batches` yields (truth, prediction) pairs of
the valid rows in batches of :data:`SCORE_BATCH_BLENDS`; a score type that
uses it scores any number of blends in the memory of one batch.
"""
from __future__ import annotations

import mmap
from collections.abc import Iterator, Sequence

import numpy as np
from rampwf.prediction_types.base import BasePrediction

from deblendkit.errors import ConfigError, PredictionError
from deblendkit.ramp.rows import PredictionRows, _as_rows, _divide_by_count, _Gather, _Mean, _runs
from deblendkit.scoring.checks import as_image_array, check_finite

__all__ = ["DeblendPredictions", "make_predictions_type", "check_predictions", "SCORE_BATCH_BLENDS"]

#: Blends per (truth, prediction) batch of :meth:`DeblendPredictions.scored_batches`
#: (the batch of :func:`deblendkit.scoring.table.galaxy_table`, so tables are the same).
SCORE_BATCH_BLENDS = 256


def check_predictions(
    y_pred, *, n_blends: int, max_galaxies: int, n_bands: int, stamp_size: int
) -> np.ndarray:
    """Validate a submission's output and return it as an ndarray.

    Parameters
    ----------
    y_pred : array-like, (n_blends, max_galaxies, n_bands, stamp_size, stamp_size)
        Predicted isolated images, ADU per pixel; zeros in empty slots.
    n_blends, max_galaxies, n_bands, stamp_size : int
        The expected shape.

    Returns
    -------
    ndarray
        ``y_pred`` as an ndarray (not copied when it already is one).

    Raises
    ------
    PredictionError
        One message saying what was expected and what was found: not an
        array of numbers, wrong shape (the expected shape is given), or NaN /
        inf values (how many, in which blends).
    """
    y_pred = as_image_array(
        y_pred,
        name="predictions",
        expected_shape=(n_blends, max_galaxies, n_bands, stamp_size, stamp_size),
    )
    check_finite(y_pred, name="predictions")
    return y_pred


def _valid_rows(y: np.ndarray) -> np.ndarray:
    """Per sample: not all values NaN. O(n) unless first values are NaN."""
    n = len(y)
    if n == 0 or y[0].size == 0:
        return np.zeros(n, bool)
    flat = y.reshape(n, -1)
    valid = ~np.isnan(flat[:, 0])
    for i in np.flatnonzero(~valid):
        valid[i] = not np.isnan(flat[i]).all()
    return valid


def _lazy_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array of zeros whose memory is only taken where it is written.

    An anonymous memory map: the kernel maps zero pages (4 KiB) on first
    write. ``numpy.zeros`` would do the same but numpy asks for transparent
    huge pages (2 MiB) on large arrays, so writing a few scattered rows (a
    cross-validation fold) would make most of the array resident.
    """
    nbytes = int(np.prod(shape, dtype=np.int64)) * 4
    if nbytes == 0:
        return np.zeros(shape, np.float32)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=np.float32).reshape(shape)


class DeblendPredictions(BasePrediction):
    """Base of the classes made by :func:`make_predictions_type`.

    Parameters
    ----------
    y_pred : array-like, optional
        Predictions, ``(n, max_galaxies, n_bands, stamp_size, stamp_size)``.
    y_true : array-like, optional
        Ground truth, same shape (stored in ``y_pred`` too, as rampwf does).
    n_samples : int, optional
        Make an empty container of ``n`` samples, none of them valid.
    fold_is : array of int or slice, optional
        Keep only these samples of ``y_pred`` / ``y_true``.

    Exactly one of ``y_pred``, ``y_true``, ``n_samples`` is used, in that
    order of precedence (as in rampwf).
    """

    max_galaxies: int = 0
    n_bands: int = 0
    stamp_size: int = 0

    def __init__(self, y_pred=None, y_true=None, n_samples=None, fold_is=None):
        if type(self).max_galaxies < 1:
            raise ConfigError(
                "DeblendPredictions is a base class; make the problem's class with "
                "make_predictions_type(max_galaxies=..., n_bands=..., stamp_size=...)"
            )
        source = y_pred if y_pred is not None else y_true
        self._empty = False
        rows = _as_rows(source)
        if rows is not None:  # file-backed (module doc)
            if tuple(rows.sample_shape) != self.sample_shape:
                raise PredictionError(
                    f"file-backed rows of shape {rows.shape}; expected (*, {', '.join(map(str, self.sample_shape))})"
                    " = (n_blends, max_galaxies, n_bands, H, W)"
                )
            if fold_is is not None:
                rows = rows.take(np.arange(rows.n, dtype=np.int64)[fold_is])
            self._set_rows(rows)
        elif source is not None:
            name = "predictions" if y_pred is not None else "ground truth"
            arr = as_image_array(source, name=name, expected_shape=(None, *self.sample_shape))
            owned = False
            if fold_is is not None:
                selected = arr[fold_is]
                owned = not np.may_share_memory(selected, arr)  # a slice is a view
                arr = selected
            if arr.dtype != np.float32:
                arr = arr.astype(np.float32)
                owned = True
            self._set(arr, None, owned=owned)
        elif n_samples is not None:
            n = int(n_samples)
            if n < 0:
                raise PredictionError(f"n_samples must be >= 0, got {n_samples!r}")
            # Lazily mapped zero pages: no memory is used until rows are written.
            self._set(_lazy_zeros((n, *self.sample_shape)), np.zeros(n, bool), owned=True)
            self._empty = True  # becomes file-backed if file-backed rows are set first
        else:
            raise PredictionError("Missing init argument: y_pred, y_true, or n_samples")

    # -- state ---------------------------------------------------------------
    @classmethod
    def _sample_shape(cls) -> tuple[int, int, int, int]:
        return (cls.max_galaxies, cls.n_bands, cls.stamp_size, cls.stamp_size)

    @property
    def sample_shape(self) -> tuple[int, int, int, int]:
        """Shape of one sample: (max_galaxies, n_bands, stamp_size, stamp_size)."""
        return self._sample_shape()

    def _set(self, y: np.ndarray, valid: np.ndarray | None, *, owned: bool) -> None:
        self.y_pred = y
        self._valid = valid
        self._valid_for = y
        self._owned = owned
        self._rows = None

    def _set_rows(self, rows: PredictionRows) -> None:
        self.y_pred = rows
        self._rows = rows
        self._valid = self._valid_for = None
        self._owned = False
        self._empty = False

    @property
    def is_file_backed(self) -> bool:
        """True when ``y_pred`` is a :class:`~deblendkit.ramp.rows.PredictionRows` (file-backed, module doc)."""
        return getattr(self, "_rows", None) is not None and self.y_pred is self._rows

    def _densify(self) -> None:
        """Turn file-backed rows into an in-memory array (mixing with in-memory predictions)."""
        rows = self._rows
        self._set(np.asarray(rows), rows.valid.copy(), owned=True)

    @property
    def valid_indexes(self) -> np.ndarray:
        """Boolean mask, shape (n,): samples holding a prediction.

        An empty container (``n_samples``) starts with none; rows set by
        ``set_valid_in_train`` become valid; for arrays given to the
        constructor, a sample is valid unless all its values are NaN.
        """
        if self.is_file_backed:
            return self._rows.valid
        if self._valid is None or self._valid_for is not self.y_pred:
            # y_pred was given, or reassigned from outside: derive from NaN.
            self._valid = _valid_rows(self.y_pred)
            self._valid_for = self.y_pred
        return self._valid

    def set_valid_in_train(self, predictions, test_is) -> None:
        """Write ``predictions`` (one fold's valid predictions) into rows ``test_is``."""
        test_is = np.arange(len(self.y_pred), dtype=np.int64)[test_is]
        if predictions.is_file_backed and (self._empty or self.is_file_backed):
            if self._empty:
                n = len(self.y_pred)
                base = _Gather(self.sample_shape, (), np.full(n, -1, np.int32), np.zeros(n, np.int64))
            elif isinstance(self._rows, _Gather):
                base = self._rows
            else:
                base = _Gather(self.sample_shape, (self._rows,), np.where(self._rows.valid, 0, -1),
                               np.arange(self._rows.n))
            self._set_rows(base.patched(test_is, predictions._rows))
            return
        if self.is_file_backed:
            self._densify()
        self._empty = False
        valid = self.valid_indexes
        if not self._owned:  # copy-on-write: the array is shared
            self.y_pred = self.y_pred.copy()
            valid = valid.copy()
            self._owned = True
        self.y_pred[test_is] = np.asarray(predictions.y_pred)
        valid[test_is] = predictions.valid_indexes
        self._valid, self._valid_for = valid, self.y_pred

    def set_slice(self, valid_indexes) -> None:
        """Keep only the samples ``valid_indexes`` (boolean mask or indexes).

        An all-True mask keeps the arrays as they are (no copy).
        """
        mask = np.asarray(valid_indexes)
        if mask.dtype == bool and mask.shape == (len(self.y_pred),) and mask.all():
            return
        if self.is_file_backed:
            self._set_rows(self._rows.take(np.arange(self._rows.n, dtype=np.int64)[valid_indexes]))
            return
        valid = self.valid_indexes[valid_indexes]
        self._set(self.y_pred[valid_indexes], valid, owned=True)

    def __deepcopy__(self, memo):
        # Share the (large) arrays; both sides copy before writing in place
        # (file-backed rows are never written: new views replace them).
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        self._owned = new._owned = False
        memo[id(self)] = new
        return new

    def __repr__(self) -> str:
        y = self.y_pred
        return f"{type(self).__name__}(y_pred: shape {y.shape}, {y.dtype}; {int(self.valid_indexes.sum())} valid)"

    __str__ = __repr__

    # -- combining -------------------------------------------------------------
    @classmethod
    def combine(cls, predictions_list: Sequence, index_list=None):
        """Average predictions sample by sample over the members that hold them.

        Same result as rampwf's default (``nanmean`` over the stacked
        ``y_pred``) for members whose samples are either fully predicted or
        fully NaN, without stacking: a float32 running sum and a per-sample
        count. Samples no member predicts are NaN and invalid.

        Parameters
        ----------
        predictions_list : sequence of instances of this class
        index_list : sequence of int, optional
            Members to combine (repeats allowed, as in greedy ensembling);
            default all.
        """
        if index_list is None:
            index_list = range(len(predictions_list))
        members = [predictions_list[i] for i in index_list]
        if not members:
            raise PredictionError("combine needs at least one Predictions, got an empty list")
        shape = members[0].y_pred.shape
        for m in members:
            if m.y_pred.shape != shape:
                raise PredictionError(
                    f"cannot combine predictions of shapes {shape} and {m.y_pred.shape}; "
                    "expected the same number of blends"
                )
        if all(m.is_file_backed for m in members):  # a view, averaged when rows are read
            out = cls.__new__(cls)
            out._set_rows(_Mean([m._rows for m in members]))
            return out
        total = np.zeros(shape, np.float32)
        count = np.zeros(shape[0], np.int64)
        for m in members:
            valid = m.valid_indexes
            y = np.asarray(m.y_pred)  # file-backed members mixed with in-memory ones: read
            if valid.all():
                np.add(total, y, out=total)
            else:  # runs of rows as slices: no gathered temporaries
                for a, b in _runs(np.flatnonzero(valid)):
                    np.add(total[a:b], y[a:b], out=total[a:b])
            count += valid
        _divide_by_count(total, count)
        out = cls.__new__(cls)
        out._set(total, count > 0, owned=True)
        out._empty = False
        return out

    # -- scoring in batches -------------------------------------------------------
    def scored_batches(self, ground_truths, batch_size: int = SCORE_BATCH_BLENDS) -> Iterator[tuple]:
        """(truth, prediction) ndarrays of this object's valid samples, ``batch_size`` at a time.

        The same rows, in the same order, as ``y_true[valid], y_pred[valid]`` of
        the whole set, read one batch at a time (from the scratch files and the
        data file when file-backed). Yields one empty pair when no sample is valid.

        Parameters
        ----------
        ground_truths : DeblendPredictions
            The truth of the same samples (``Predictions(y_true=...)``).
        batch_size : int
            Blends per batch.
        """
        if len(ground_truths.y_pred) != len(self.y_pred):
            raise PredictionError(f"ground truth of {len(ground_truths.y_pred)} blends for predictions of "
                                  f"{len(self.y_pred)} blends; expected the same blends")
        rows = np.flatnonzero(np.asarray(self.valid_indexes))
        for start in range(0, max(len(rows), 1), int(batch_size)):
            r = rows[start:start + int(batch_size)]
            yield ground_truths._read(r), self._read(r)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        return self._rows.read(rows) if self.is_file_backed else np.asarray(self.y_pred[rows])


def make_predictions_type(*, max_galaxies: int, n_bands: int, stamp_size: int) -> type:
    """Make the ``Predictions`` class of a problem with this array shape.

    Parameters
    ----------
    max_galaxies : int
        Slots per blend, K (>= 1).
    n_bands : int
        Bands, C (>= 1).
    stamp_size : int
        Stamp side, H = W, pixels (>= 1).

    Returns
    -------
    type
        A subclass of :class:`DeblendPredictions` named ``Predictions``.
    """
    for name, value in (("max_galaxies", max_galaxies), ("n_bands", n_bands), ("stamp_size", stamp_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return type(
        "Predictions",
        (DeblendPredictions,),
        {
            "max_galaxies": int(max_galaxies),
            "n_bands": int(n_bands),
            "stamp_size": int(stamp_size),
            "__module__": __name__,
            "__doc__": (
                f"RAMP predictions of shape (n, {max_galaxies}, {n_bands}, {stamp_size}, "
                f"{stamp_size}), float32. See deblendkit.ramp.prediction."
            ),
        },
    )
