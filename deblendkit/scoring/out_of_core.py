"""Out-of-core scoring: predictions scored against a data file batch by batch.

:func:`score_file` reads the labels (``isolated``) of a data file one batch of
blends at a time, gets the predictions of the same blends -- from an array, a
memory-mapped ``.npy`` file, or a callable that computes them from the batch's
blends -- and keeps only the per-galaxy metrics of each batch
(:func:`deblendkit.scoring.table.galaxy_table_batch`). Peak memory therefore grows
with ``batch_size`` (two (batch, K, C, H, W) float32 arrays plus the batch's
blends), not with the data set; what grows with the data set is the
per-galaxy table, about ``8 x (columns)`` bytes per galaxy (~0.3 KB with every
metric group, against ~330 KB of images per blend at the default shape).

Fitting a submission and scoring its predictions this way is
:func:`deblendkit.ramp.stream.score_submission` (the RAMP adapter runs the
submission); the command line is ``python -m deblendkit.cli.score``
(``deblend-score``). ``ramp-test`` keeps predictions in memory (see
:mod:`deblendkit.ramp.problem`).
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from deblendkit._checks import positive_int
from deblendkit.deblend.blendset import BlendSet
from deblendkit.errors import ConfigError, PredictionError
from deblendkit.scoring.table import galaxy_table_batch, summarize
from deblendkit.storage import H5Source, read_dataset, validate_file

__all__ = ["StreamResult", "score_file", "iter_batch_tables", "rows_scored", "DEFAULT_BATCH_SIZE"]

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
"""Blends per batch: ~42 MB of labels and predictions at the default 6x6x48x48 shape."""


@dataclass(frozen=True)
class StreamResult:
    """Scores of a data file computed batch by batch.

    Attributes
    ----------
    path : str
        The data file.
    n_blends : int
        Blends scored.
    table : pandas.DataFrame
        One row per real galaxy (see :func:`deblendkit.scoring.table.galaxy_table_batch`),
        joined with the truth table when asked.
    summary : dict
        :func:`deblendkit.scoring.table.summarize` of the table (``deblend`` is the
        primary score).
    seconds : float
        Wall time of the scoring loop (predictions included).
    batch_size : int
        Blends per batch.
    fit_seconds : float
        Wall time of the submission's ``fit`` (NaN when predictions were given).
    predict_seconds : float
        Wall time spent in the submission's ``predict`` (NaN when predictions were given).
    """

    path: str
    n_blends: int
    table: pd.DataFrame = field(repr=False)
    summary: dict = field(repr=False)
    seconds: float
    batch_size: int
    fit_seconds: float = math.nan
    predict_seconds: float = math.nan

    @property
    def score(self) -> float:
        """The primary score: mean ``deblend`` over real galaxies."""
        return float(self.summary["deblend"])


def _positive_int(name: str, value: Any) -> int:
    return positive_int(name, value, what="an integer >= 1")


def _prediction_source(predictions: Any, n: int, sample_shape: tuple[int, ...]) -> Callable:
    """A function ``(start, stop, X_batch) -> array`` over the accepted prediction forms."""
    if callable(predictions) and not hasattr(predictions, "shape"):
        return lambda a, b, Xb: predictions(Xb)
    if isinstance(predictions, (str, os.PathLike)):
        p = os.fspath(predictions)
        if not p.endswith(".npy"):
            raise ConfigError(f"a predictions file must be a .npy array (memory-mapped), got {p!r}")
        try:
            predictions = np.load(p, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise PredictionError(f"cannot memory-map the predictions file {p!r}: {exc}") from exc
    shape = getattr(predictions, "shape", None)
    if shape is None or not hasattr(predictions, "__getitem__"):
        raise PredictionError(
            f"predictions must be an array (ndarray, memmap, h5py dataset), a .npy path or a "
            f"callable X_batch -> array, got {type(predictions).__name__}"
        )
    want = (n, *sample_shape)
    if tuple(shape) != want:
        raise PredictionError(
            f"predictions have shape {tuple(shape)}; expected {want} = "
            "(n_blends, max_galaxies, n_bands, H, W) for this data file"
        )
    return lambda a, b, Xb: predictions[a:b]


def rows_scored(n_blends: int, max_blends: int | None) -> int:
    """How many blends of a file of ``n_blends`` are scored: the first ``max_blends`` (all when None)."""
    return n_blends if max_blends is None else min(n_blends, int(max_blends))


def _truth_table(path) -> pd.DataFrame:
    """The file's truth table (one row per galaxy, sorted by ``blend_index``)."""
    with read_dataset(path, in_memory=False) as ds:
        return ds.truth


def iter_batch_tables(
    path: str | os.PathLike,
    predictions: Any,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    metrics: Collection[str] | None = None,
    ref_band: str = "r",
    with_truth: bool = False,
    max_blends: int | None = None,
) -> Iterator[pd.DataFrame]:
    """Per-galaxy metric tables of consecutive batches of a data file.

    Parameters
    ----------
    path : a data file (``data/README.md``).
    predictions : ndarray / memmap / h5py dataset of shape (n, K, C, H, W); or the
        path of a ``.npy`` file (memory-mapped); or a callable taking the batch's
        :class:`~deblendkit.deblend.blendset.BlendSet` and returning its predictions.
    batch_size : blends per batch.
    metrics : groups of :data:`deblendkit.scoring.checks.METRIC_GROUPS` (default all).
    ref_band : band of the shape and SSIM metrics.
    with_truth : join each batch's truth rows (``blendedness``, ``mag_*``...).
    max_blends : score only the first ``max_blends`` blends of the file (default all); an
        array of predictions still has one row per blend of the file.

    Yields
    ------
    pandas.DataFrame per batch, ``blend_index`` counting rows of the file.

    Raises
    ------
    DataFileError
        The file is missing or corrupt (a bad chunk when its batch is read).
    PredictionError
        Wrong shape or dtype, NaN / inf (naming the blends).
    """
    batch_size = _positive_int("batch_size", batch_size)
    if max_blends is not None:
        max_blends = _positive_int("max_blends", max_blends)
    truth = _truth_table(path) if with_truth else None
    source = H5Source(path)
    layout = source.layout
    X = BlendSet.from_file(path, in_memory=False)
    iso = source.array("isolated")
    n = rows_scored(layout.n_blends, max_blends)
    sample = (layout.max_galaxies, layout.n_bands, layout.stamp_size, layout.stamp_size)
    get = _prediction_source(predictions, layout.n_blends, sample)  # an array covers the whole file
    truth_index = None if truth is None else truth["blend_index"].to_numpy()
    try:
        for a in range(0, n, batch_size):
            b = min(n, a + batch_size)
            Xb = X[a:b]
            y_pred = get(a, b, Xb)
            if not isinstance(y_pred, np.ndarray):
                y_pred = np.asarray(y_pred)
            if y_pred.shape != (b - a, *sample):
                raise PredictionError(
                    f"predictions for blends [{a}, {b}) have shape {y_pred.shape}; "
                    f"expected {(b - a, *sample)} = (n_blends, max_galaxies, n_bands, H, W)"
                )
            y_true = iso[a:b]
            table = galaxy_table_batch(y_true, y_pred, bands=layout.bands, blend_offset=a,
                                       metrics=metrics, ref_band=ref_band)
            if truth_index is not None:
                lo, hi = np.searchsorted(truth_index, [a, b])
                rows = truth.iloc[int(lo):int(hi)]
                table = table.merge(rows, on=["blend_index", "slot"], how="left", suffixes=("", "_truth"))
            del y_true, y_pred, Xb
            yield table
    finally:
        X.close()
        source.close()


def score_file(
    path: str | os.PathLike,
    predictions: Any,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    metrics: Collection[str] | None = None,
    ref_band: str = "r",
    with_truth: bool = False,
    max_blends: int | None = None,
) -> StreamResult:
    """Score predictions against a data file, one batch of blends in memory at a time.

    Parameters and errors as :func:`iter_batch_tables`.

    Returns
    -------
    StreamResult
        The per-galaxy table and its summary.
    """
    t0 = time.perf_counter()
    layout = validate_file(path)
    parts = list(iter_batch_tables(path, predictions, batch_size=batch_size, metrics=metrics,
                                   ref_band=ref_band, with_truth=with_truth, max_blends=max_blends))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    summary = summarize(table, bands=layout.bands) if len(table.columns) else {"deblend": math.nan}
    return StreamResult(path=str(path), n_blends=rows_scored(layout.n_blends, max_blends), table=table,
                        summary=summary, seconds=time.perf_counter() - t0, batch_size=int(batch_size))
