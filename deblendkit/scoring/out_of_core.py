"""Out-of-core scoring: predictions scored against a data file batch by batch.

:func:`score_file` reads the labels (``isolated``) of a data file one batch of
blends at a time, gets the predictions of the same blends -- from an array, a
memory-mapped ``.npy`` file, or a callable that computes them from the batch's
blends -- and keeps only the per-galaxy metrics of each batch
(:func:`deblendkit.scoring.metrics.galaxy_table_batch`). Peak memory therefore grows
with ``batch_size`` (two (batch, K, C, H, W) float32 arrays plus the batch's
blends), not with the data set; what grows with the data set is the
per-galaxy table, about ``8 x (columns)`` bytes per galaxy (~0.3 KB with every
metric group, against ~330 KB of images per blend at the default shape).

:func:`score_submission` (and ``python -m deblendkit.scoring.out_of_core``) does the
same for a submission: ``fit`` on a training file given as a file-backed
``X`` (:class:`~deblendkit.deblend.blendset.BlendSet`) and lazy ``y``
(:class:`~deblendkit.storage.files.LazyRows`), then ``predict`` batch by batch on the
data file, each batch checked by :class:`~deblendkit.ramp.workflow.DeblenderWorkflow`
(shape, dtype, finite, flux, time budget) before it is scored. This is the
kit's out-of-core path; ``ramp-test`` keeps predictions in memory (see
:mod:`deblendkit.ramp.problem`).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from deblendkit.errors import ConfigError, DeblendKitError, PredictionError
from deblendkit.scoring.metrics import METRIC_GROUPS, galaxy_table_batch, summarize

__all__ = ["StreamResult", "score_file", "iter_batch_tables", "score_submission", "main",
           "DEFAULT_BATCH_SIZE"]

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
        One row per real galaxy (see :func:`deblendkit.scoring.metrics.galaxy_table_batch`),
        joined with the truth table when asked.
    summary : dict
        :func:`deblendkit.scoring.metrics.summarize` of the table (``deblend`` is the
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
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


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


def _rows_scored(n_blends: int, max_blends: int | None) -> int:
    """How many blends of a file of ``n_blends`` are scored: the first ``max_blends`` (all when None)."""
    return n_blends if max_blends is None else min(n_blends, int(max_blends))


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
    metrics : groups of :data:`deblendkit.scoring.metrics.METRIC_GROUPS` (default all).
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
    from deblendkit.deblend.blendset import BlendSet
    from deblendkit.storage.files import H5Source, _truth_frame

    batch_size = _positive_int("batch_size", batch_size)
    if max_blends is not None:
        max_blends = _positive_int("max_blends", max_blends)
    source = H5Source(path)
    layout = source.layout
    X = BlendSet.from_file(path, in_memory=False)
    iso = source.array("isolated")
    n = _rows_scored(layout.n_blends, max_blends)
    sample = (layout.max_galaxies, layout.n_bands, layout.stamp_size, layout.stamp_size)
    get = _prediction_source(predictions, layout.n_blends, sample)  # an array covers the whole file
    truth_index = None
    if with_truth:
        truth_ds = source.array("truth")
        from deblendkit.storage.files import DataFileError

        try:
            truth_index = np.asarray(source.file["truth"].fields("blend_index")[:])
        except (OSError, KeyError, RuntimeError) as exc:
            raise DataFileError(f"{path} is corrupt: reading dataset 'truth' failed ({exc})") from exc
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
                truth = _truth_frame(truth_ds[int(lo):int(hi)])
                table = table.merge(truth, on=["blend_index", "slot"], how="left", suffixes=("", "_truth"))
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
    from deblendkit.storage.files import validate_file

    t0 = time.perf_counter()
    layout = validate_file(path)
    parts = list(iter_batch_tables(path, predictions, batch_size=batch_size, metrics=metrics,
                                   ref_band=ref_band, with_truth=with_truth, max_blends=max_blends))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    summary = summarize(table, bands=layout.bands) if len(table.columns) else {"deblend": math.nan}
    return StreamResult(path=str(path), n_blends=_rows_scored(layout.n_blends, max_blends), table=table,
                        summary=summary, seconds=time.perf_counter() - t0, batch_size=int(batch_size))


def score_submission(
    submission: str | os.PathLike,
    data_path: str | os.PathLike,
    *,
    train_path: str | os.PathLike | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    metrics: Collection[str] | None = None,
    with_truth: bool = False,
    workflow: Any = None,
    max_blends: int | None = None,
) -> StreamResult:
    """Fit a submission on a training file and score it on ``data_path``, out of core.

    Parameters
    ----------
    submission : folder of the submission (``submissions/NAME``).
    data_path : the data file to score on (e.g. ``data/test.h5``).
    train_path : the training file (default ``train.h5`` beside ``data_path``);
        ``fit`` gets it as a file-backed BlendSet and a lazy ``y``
        (:class:`~deblendkit.storage.files.LazyRows`).
    batch_size, metrics, with_truth, max_blends : as :func:`score_file`.
    workflow : a :class:`~deblendkit.ramp.workflow.DeblenderWorkflow` (default one).

    Raises
    ------
    SubmissionError
        The submission failed in a step or broke the contract.
    DataFileError
        A data file is missing or corrupt.
    """
    from deblendkit.ramp.problem import load_lazy
    from deblendkit.ramp.workflow import DeblenderWorkflow

    wf = workflow if workflow is not None else DeblenderWorkflow()
    if train_path is None:
        train_path = os.path.join(os.path.dirname(os.path.abspath(data_path)), "train.h5")
    X_train, y_train = load_lazy(os.fspath(train_path))
    t0 = time.perf_counter()
    model = wf.train_submission(os.fspath(submission), X_train, y_train)
    fit_seconds = time.perf_counter() - t0
    X_train.close()
    predict_seconds = [0.0]

    def predict(Xb):
        t = time.perf_counter()
        out = wf.predict(model, Xb)
        predict_seconds[0] += time.perf_counter() - t
        return out

    result = score_file(data_path, predict, batch_size=batch_size, metrics=metrics, with_truth=with_truth,
                        max_blends=max_blends)
    return dataclasses.replace(result, fit_seconds=fit_seconds, predict_seconds=predict_seconds[0])


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deblendkit.scoring.out_of_core",
        description="Fit a submission and score it on a data file batch by batch "
        "(memory grows with --batch-size, not with the data set).",
    )
    p.add_argument("--submission", required=True, help="submission name (folder in --kit-dir/submissions) or path")
    p.add_argument("--data", required=True, help="data file to score on, e.g. data/test.h5")
    p.add_argument("--train", help="training file (default: train.h5 beside --data)")
    p.add_argument("--kit-dir", default=".", help="the kit (holding submissions/); default %(default)s")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="blends per batch (default %(default)s)")
    p.add_argument("--metrics", default=",".join(METRIC_GROUPS),
                   help="comma-separated metric groups (default: all, %(default)s)")
    p.add_argument("--output", help="write the per-galaxy table to this CSV file")
    p.add_argument("--with-truth", action="store_true", help="join the truth table in --output")
    p.add_argument("--max-blends", type=int, help="score only the first N blends of --data (default all)")
    return p


def main(argv=None) -> int:
    """CLI entry point; returns the exit code (2 on a kit error, one line on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    sub = args.submission
    if not os.path.isdir(sub):
        sub = os.path.join(args.kit_dir, "submissions", args.submission)
    try:
        metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
        unknown = sorted(set(metrics) - set(METRIC_GROUPS))
        if unknown or not metrics:
            raise ConfigError(f"--metrics has unknown group(s) {unknown}; allowed: {list(METRIC_GROUPS)}")
        if not os.path.isdir(sub):
            raise ConfigError(f"no submission folder {sub!r}")
        result = score_submission(sub, args.data, train_path=args.train, batch_size=args.batch_size,
                                  metrics=metrics, with_truth=args.with_truth, max_blends=args.max_blends)
        if args.output:
            result.table.to_csv(args.output, index=False)
    except DeblendKitError as exc:
        print(f"deblendkit.scoring.out_of_core: error: {exc}", file=sys.stderr)
        return 2
    s = result.summary
    print(f"{os.path.basename(os.path.normpath(sub))} on {args.data}: {result.n_blends} blends, "
          f"{int(s['n_galaxies'])} galaxies, batch {result.batch_size}, {result.seconds:.1f} s")
    print(f"  fit {result.fit_seconds:.1f} s, predict {result.predict_seconds / max(result.n_blends, 1):.4f} s per blend")
    for key in ("deblend", "flux_scatter_r", "flux_bias_r", "flux_catastrophic_r", "colour_scatter_g_r",
                "cosine", "de_median", "ssim"):
        value = s.get(key, math.nan)
        if not (isinstance(value, float) and math.isnan(value)):
            print(f"  {key:<22} {value:.4f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
