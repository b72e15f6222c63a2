"""Input checks of the scoring functions: dtype, shape, NaN / inf, band names, metric groups.

Arrays follow the data contract (``data/README.md``): truth and prediction of
shape ``(n_blends, max_galaxies, n_bands, height, width)`` (:data:`AXES`), in
ADU per pixel. Every check raises one :class:`~deblendkit.errors.PredictionError`
(or :class:`~deblendkit.errors.ConfigError` for a bad option) saying what was
expected and what was found.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from deblendkit.errors import ConfigError, PredictionError

__all__ = [
    "AXES",
    "METRIC_GROUPS",
    "NonFiniteReport",
    "as_image_array",
    "check_arrays",
    "check_bands",
    "check_finite",
    "check_groups",
    "check_pair",
    "raise_nonfinite",
    "shape_str",
]

AXES = "(n_blends, max_galaxies, n_bands, height, width)"
"""Names of the five axes of truth and prediction arrays."""

METRIC_GROUPS = ("deblend", "flux", "colour", "cosine", "shape", "ssim")
"""Groups of per-galaxy columns :func:`deblendkit.scoring.table.galaxy_table_batch` can compute.

``deblend`` (the primary score, always computed), ``flux`` (per-band fluxes
and dF/F), ``colour`` (g-r, r-i errors; implies the flux sums), ``cosine``,
``shape`` (adaptive moments of the reference band, the slow one) and ``ssim``.
"""

_MAX_LISTED = 10  # blend indexes named in a NaN / inf message
_SCAN_BLENDS = 64  # blends per block of the NaN / inf scans


def shape_str(shape: Sequence) -> str:
    """``(2, *, 3)``-style text of a shape whose None entries match any size."""
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def _converted(a, name: str, want: str) -> np.ndarray:
    try:
        return np.asarray(a)
    except (ValueError, TypeError) as exc:
        raise PredictionError(
            f"{name} could not be converted to an array ({exc}); expected a numeric "
            f"array of shape {want}",
            value=type(a).__name__,
        ) from None


def as_image_array(
    a,
    *,
    name: str = "predictions",
    expected_shape: Sequence[int | None] | None = None,
) -> np.ndarray:
    """Return ``a`` as a numeric 5-D ndarray, or raise one clear error.

    Array-likes (lists, tuples) are converted with :func:`numpy.asarray`; an
    ndarray is returned as is (no copy, dtype kept). Values are not checked
    (see :func:`check_finite`).

    Parameters
    ----------
    a : array-like
        Images, shape ``(n_blends, max_galaxies, n_bands, height, width)``.
    name : str
        What ``a`` is, for messages ("predictions", "ground truth").
    expected_shape : sequence of int or None, optional
        Expected shape; None entries match any size.

    Returns
    -------
    ndarray
        ``a`` itself when it is an ndarray.

    Raises
    ------
    PredictionError
        ``a`` is ragged, an object array, non-numeric (strings, booleans,
        complex), not 5-D, or not of ``expected_shape``.
    """
    expected = None if expected_shape is None else tuple(expected_shape)
    want = f"{shape_str(expected)} = {AXES}" if expected is not None else f"5 dimensions {AXES}"
    if not isinstance(a, np.ndarray):
        a = _converted(a, name, want)
    kind = a.dtype.kind
    if kind == "O":
        raise PredictionError(
            f"{name} are an object array (dtype object, e.g. a list of arrays of different "
            f"shapes); expected a numeric array of shape {want}, float32 preferred",
            value=str(a.dtype), allowed="real numbers",
        )
    if kind not in "fiu":
        raise PredictionError(
            f"{name} have non-numeric dtype {a.dtype}; expected real numbers "
            f"(float32 preferred) of shape {want}",
            value=str(a.dtype), allowed="real numbers",
        )
    if a.ndim != 5:
        raise PredictionError(f"{name} have shape {shape_str(a.shape)} ({a.ndim}-D); expected {want}",
                              value=a.shape, allowed=expected)
    if expected is not None and any(e is not None and e != s for e, s in zip(expected, a.shape)):
        raise PredictionError(f"{name} have shape {shape_str(a.shape)}; expected {want}",
                              value=a.shape, allowed=expected)
    return a


@dataclass
class NonFiniteReport:
    """Per-blend counts of NaN and inf in one array, gathered over batches.

    Attributes
    ----------
    name : str
        What the array is ("predictions", "ground truth").
    blends : list of int
        Indexes of the blends holding NaN or inf.
    n_nan, n_inf : int
        Values counted.
    """

    name: str
    blends: list = field(default_factory=list)
    n_nan: int = 0
    n_inf: int = 0

    def add(self, block: np.ndarray, offset: int) -> None:
        """Count the NaN and inf of ``block`` (blends ``offset``, ``offset + 1``, ...)."""
        nan = np.isnan(block).reshape(len(block), -1).sum(axis=1)
        inf = np.isinf(block).reshape(len(block), -1).sum(axis=1)
        bad = np.flatnonzero(nan + inf)
        self.blends.extend(int(offset + i) for i in bad)
        self.n_nan += int(nan.sum())
        self.n_inf += int(inf.sum())

    def merge(self, other: NonFiniteReport) -> None:
        """Add the counts of ``other`` (a later batch) to these."""
        self.blends.extend(other.blends)
        self.n_nan += other.n_nan
        self.n_inf += other.n_inf

    def __bool__(self) -> bool:
        return bool(self.blends)

    def describe(self) -> str:
        """One sentence: how many NaN and inf, in which blends (the first ten named)."""
        listed = ", ".join(str(i) for i in self.blends[:_MAX_LISTED])
        more = f", ... ({len(self.blends) - _MAX_LISTED} more)" if len(self.blends) > _MAX_LISTED else ""
        return (
            f"{self.name} contain {self.n_nan} NaN and {self.n_inf} inf values in "
            f"{len(self.blends)} blend(s) (blend indexes {listed}{more})"
        )


def raise_nonfinite(*reports: NonFiniteReport) -> None:
    """Raise one :class:`PredictionError` describing every non-empty report (none: return)."""
    bad = [r for r in reports if r]
    if bad:
        raise PredictionError(
            "; ".join(r.describe() for r in bad) + "; expected finite values everywhere (put 0 in empty slots)",
            value=sorted({i for r in bad for i in r.blends})[:_MAX_LISTED],
        )


def check_finite(a: np.ndarray, *, name: str = "predictions", blend_offset: int = 0) -> None:
    """Raise :class:`PredictionError` if ``a`` holds NaN or inf.

    Scans ``a`` in chunks of blends (no full-size temporary). The message says
    how many NaN and inf values there are and in which blends (indexes offset
    by ``blend_offset``).
    """
    report = NonFiniteReport(name)
    for s in range(0, len(a), _SCAN_BLENDS):
        block = a[s : s + _SCAN_BLENDS]
        if not np.isfinite(block.sum(dtype=np.float64)):
            report.add(block, blend_offset + s)
    raise_nonfinite(report)


def check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Dtype and shape checks of truth and prediction (values not read).

    Returns both as ndarrays; the prediction must have the truth's shape.
    """
    y_true = as_image_array(y_true, name="ground truth")
    y_pred = as_image_array(y_pred, name="predictions", expected_shape=y_true.shape)
    return y_true, y_pred


def check_arrays(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Validate a truth / prediction pair and return them as ndarrays.

    Parameters
    ----------
    y_true, y_pred : array-like, (n_blends, max_galaxies, n_bands, height, width)
        Isolated (label) and predicted images, ADU per pixel.

    Returns
    -------
    y_true, y_pred : ndarray
        The inputs as ndarrays (no copy when they already are).

    Raises
    ------
    PredictionError
        One message naming what was expected and what was found: a wrong
        dtype or shape (the expected shape is the truth's), or NaN / inf values
        (how many, in which blends).
    """
    y_true, y_pred = check_pair(y_true, y_pred)
    truth_bad, pred_bad = NonFiniteReport("ground truth"), NonFiniteReport("predictions")
    for s in range(0, len(y_true), _SCAN_BLENDS):
        for arr, rep in ((y_true, truth_bad), (y_pred, pred_bad)):
            block = arr[s : s + _SCAN_BLENDS]
            if not np.isfinite(block.sum(dtype=np.float64)):
                rep.add(block, s)
    raise_nonfinite(pred_bad, truth_bad)
    return y_true, y_pred


def check_bands(bands: Sequence[str], n_bands: int) -> tuple[str, ...]:
    """``bands`` as a tuple of ``n_bands`` names (a string names one band or one band per letter).

    Raises
    ------
    ConfigError
        The number of names is not ``n_bands``.
    """
    if isinstance(bands, str):
        bands = (bands,) if n_bands == 1 else tuple(bands)
    bands = tuple(bands)
    if len(bands) != n_bands:
        raise ConfigError(
            f"bands {list(bands)} name {len(bands)} bands but the arrays have {n_bands} "
            f"(axis 2 of {AXES})",
            value=list(bands),
        )
    return bands


def check_groups(metrics: Collection[str] | None) -> frozenset[str]:
    """The metric groups asked for (all when None), ``deblend`` always included.

    Raises
    ------
    ConfigError
        A name not in :data:`METRIC_GROUPS`.
    """
    if metrics is None:
        return frozenset(METRIC_GROUPS)
    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = sorted(set(metrics) - set(METRIC_GROUPS))
    if unknown:
        raise ConfigError(f"unknown metric groups {unknown}; allowed: {list(METRIC_GROUPS)}",
                          value=unknown, allowed=METRIC_GROUPS)
    return frozenset(metrics) | {"deblend"}
