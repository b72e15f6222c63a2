"""Per-galaxy tables of the metrics and their summary scores.

:func:`galaxy_table_batch` computes the columns of :mod:`deblendkit.scoring.metrics`
for one batch of blends, :func:`galaxy_table` for a whole data set (batch by
batch, optionally joined with the truth table), and :func:`summarize` the
named aggregate scores of a table (``deblend`` is the primary score).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from deblendkit.errors import ConfigError, PredictionError
from deblendkit.scoring.checks import (
    NonFiniteReport,
    check_bands,
    check_groups,
    check_pair,
    raise_nonfinite,
)
from deblendkit.scoring.metrics import (
    CATASTROPHIC_COLOUR_MAG,
    CATASTROPHIC_FLUX,
    COLOUR_PAIRS,
    cosine_columns,
    deblend_columns,
    flux_columns,
    image_sums,
    nonfinite_reports,
)
from deblendkit.scoring.shapes import fit_shear_bias, shape_columns, ssim_column

__all__ = ["MAD_TO_SIGMA", "galaxy_table", "galaxy_table_batch", "join_truth", "robust_scatter", "summarize"]

logger = logging.getLogger(__name__)

MAD_TO_SIGMA = 1.4826
"""Median absolute deviation to Gaussian standard deviation."""

_DEFAULT_BATCH = 256  # blends per table batch in galaxy_table


def galaxy_table_batch(
    y_true,
    y_pred,
    *,
    bands: Sequence[str],
    blend_offset: int = 0,
    metrics: Collection[str] | None = None,
    ref_band: str = "r",
) -> pd.DataFrame:
    """Per-galaxy metrics of one batch of blends.

    Parameters
    ----------
    y_true, y_pred : array-like, (n_blends, max_galaxies, n_bands, height, width)
        Isolated (label) and predicted images of the batch, ADU per pixel.
    bands : sequence of str
        Band names, one per axis-2 entry (e.g. ``("u", "g", "r", "i", "z", "y")``).
    blend_offset : int
        Index of the batch's first blend in the whole data set (the table's
        ``blend_index`` is ``blend_offset + row``).
    metrics : collection of str, optional
        Groups of :data:`~deblendkit.scoring.checks.METRIC_GROUPS` to compute
        (default all); ``deblend`` is always included.
    ref_band : str
        Band of the shape and SSIM metrics (NaN when absent from ``bands``).

    Returns
    -------
    pandas.DataFrame
        One row per real galaxy (truth with nonzero sum of squares), in
        blend-major order: ``blend_index``, ``slot``, ``nre``, ``deblend`` and
        the columns of the requested groups (see :mod:`deblendkit.scoring.metrics`).

    Raises
    ------
    PredictionError
        Wrong dtype or shape, or NaN / inf values (see
        :func:`~deblendkit.scoring.checks.check_arrays`).
    """
    table, pred_bad, truth_bad = _batch(
        y_true, y_pred, bands=bands, blend_offset=blend_offset, metrics=metrics, ref_band=ref_band
    )
    raise_nonfinite(pred_bad, truth_bad)
    return table


def _batch(y_true, y_pred, *, bands, blend_offset, metrics, ref_band, skip=False):
    """Table of one batch plus NaN / inf reports; table is None when any are found."""
    yt, yp = check_pair(y_true, y_pred)
    bands = check_bands(bands, yt.shape[2])
    groups = check_groups(metrics)
    want_flux = bool(groups & {"flux", "colour"})
    want_cos = "cosine" in groups
    if skip:  # an earlier batch was bad: only count NaN / inf here
        sums = image_sums(yt, yp, flux=False, cosine=False)
        return None, *nonfinite_reports(yt, yp, sums, blend_offset)
    sums = image_sums(yt, yp, flux=want_flux, cosine=want_cos)
    pred_bad, truth_bad = nonfinite_reports(yt, yp, sums, blend_offset)
    if pred_bad or truth_bad:
        return None, pred_bad, truth_bad

    syy_band = sums["syy"]
    real = syy_band.sum(axis=-1) > 0
    bi, ki = np.nonzero(real)
    cols: dict[str, np.ndarray] = {
        "blend_index": (bi + blend_offset).astype(np.int64),
        "slot": ki.astype(np.int64),
    }
    cols.update(deblend_columns(sums, real))
    if want_flux:
        cols.update(flux_columns(sums["ft"][real], sums["fp"][real], bands,
                                 flux="flux" in groups, colour="colour" in groups))
    if want_cos:
        cols.update(cosine_columns(sums["spp"][real], sums["spy"][real], syy_band[real], bands))
    cols.update(_morphology_columns(yt, yp, bi, ki, bands, groups, ref_band))
    return pd.DataFrame(cols), pred_bad, truth_bad


def _morphology_columns(yt, yp, bi, ki, bands, groups, ref_band) -> dict[str, np.ndarray]:
    """The ``shape`` and ``ssim`` groups' columns of the galaxies at (blend ``bi``, slot ``ki``)."""
    want_shape, want_ssim = "shape" in groups, "ssim" in groups
    if not (want_shape or want_ssim):
        return {}
    n_gal = len(bi)
    img_t = img_p = None
    if ref_band in bands and n_gal:
        r = bands.index(ref_band)
        img_t = np.asarray(yt[bi, ki, r], dtype=np.float32)
        img_p = np.asarray(yp[bi, ki, r], dtype=np.float32)
    cols = shape_columns(img_t, img_p, n_gal) if want_shape else {}
    if want_ssim:
        cols["ssim"] = ssim_column(img_t, img_p, n_gal)
    return cols


def galaxy_table(
    y_true,
    y_pred,
    *,
    bands: Sequence[str],
    truth=None,
    metrics: Collection[str] | None = None,
    ref_band: str = "r",
    batch_size: int = _DEFAULT_BATCH,
) -> pd.DataFrame:
    """Per-galaxy metrics of a whole data set, optionally joined with the truth table.

    Parameters
    ----------
    y_true, y_pred : array-like, (n_blends, max_galaxies, n_bands, height, width)
        Isolated (label) and predicted images, ADU per pixel.
    bands : sequence of str
        Band names, one per axis-2 entry.
    truth : pandas.DataFrame or structured ndarray, optional
        The truth table (``data/README.md``), at least ``blend_index`` and
        ``slot``; joined on those so scores can be broken down by
        blendedness, magnitude, etc. Its columns that clash with the metric
        columns get the suffix ``_truth``. ``blend_index`` must count from 0
        at the first blend of ``y_true``.
    metrics : collection of str, optional
        Groups of :data:`~deblendkit.scoring.checks.METRIC_GROUPS` to compute (default all).
    ref_band : str
        Band of the shape and SSIM metrics.
    batch_size : int
        Blends per batch (memory grows with it, not with the data set).

    Returns
    -------
    pandas.DataFrame
        One row per real galaxy; see :func:`galaxy_table_batch`.

    Raises
    ------
    PredictionError
        Wrong dtype or shape, or NaN / inf values (all counted before raising),
        or a truth table without ``blend_index`` / ``slot``.
    ConfigError
        ``batch_size`` is not a positive integer.
    """
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}", value=batch_size, allowed=">= 1")
    batch_size = int(batch_size)
    yt, yp = check_pair(y_true, y_pred)
    bands = check_bands(bands, yt.shape[2])
    groups = check_groups(metrics)
    pred_bad, truth_bad = NonFiniteReport("predictions"), NonFiniteReport("ground truth")
    parts = []
    for s in range(0, len(yt), batch_size):
        e = min(len(yt), s + batch_size)
        part, pb, tb = _batch(
            yt[s:e], yp[s:e], bands=bands, blend_offset=s, metrics=groups,
            ref_band=ref_band, skip=bool(pred_bad or truth_bad),
        )
        pred_bad.merge(pb)
        truth_bad.merge(tb)
        if part is not None:
            parts.append(part)
    raise_nonfinite(pred_bad, truth_bad)
    if parts:
        table = pd.concat(parts, ignore_index=True)
    else:
        table = _batch(yt[:0], yp[:0], bands=bands, blend_offset=0, metrics=groups, ref_band=ref_band)[0]
    if truth is not None:
        table = join_truth(table, truth)
    return table


def join_truth(table: pd.DataFrame, truth) -> pd.DataFrame:
    """Left join of a galaxy table with a truth table on (``blend_index``, ``slot``).

    Columns of ``truth`` that clash with the table's get the suffix ``_truth``;
    galaxies without a truth row are kept (NaN) and counted in a warning.

    Raises
    ------
    PredictionError
        ``truth`` lacks ``blend_index`` or ``slot``.
    """
    truth = truth if isinstance(truth, pd.DataFrame) else pd.DataFrame(np.asarray(truth))
    missing = [c for c in ("blend_index", "slot") if c not in truth.columns]
    if missing:
        raise PredictionError(
            f"truth table lacks column(s) {missing}; expected at least 'blend_index' and "
            f"'slot', found {list(truth.columns)}",
            value=missing, allowed=("blend_index", "slot"),
        )
    merged = table.merge(
        truth, on=["blend_index", "slot"], how="left", suffixes=("", "_truth"),
        validate="one_to_one", indicator=True,
    )
    unmatched = int((merged["_merge"] == "left_only").sum())
    if unmatched:
        logger.warning("%d of %d galaxies have no row in the truth table", unmatched, len(table))
    return merged.drop(columns="_merge")


def robust_scatter(x) -> float:
    """1.4826 x median absolute deviation of the finite values of ``x`` (NaN if none)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan
    return float(MAD_TO_SIGMA * np.median(np.abs(x - np.median(x))))


def _col(table: pd.DataFrame, name: str) -> np.ndarray | None:
    return table[name].to_numpy(dtype=np.float64) if name in table.columns else None


def _finite_stat(x, fn) -> float:
    if x is None:
        return math.nan
    x = x[np.isfinite(x)]
    return float(fn(x)) if len(x) else math.nan


def _flux_summary(table: pd.DataFrame, bands: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for b in dict.fromkeys([*bands, "r"]):  # r is always reported (NaN if absent)
        err = _col(table, f"flux_err_{b}")
        out[f"flux_bias_{b}"] = _finite_stat(err, np.median)
        out[f"flux_scatter_{b}"] = math.nan if err is None else robust_scatter(err)
        out[f"flux_mape_{b}"] = _finite_stat(err, lambda x: 100.0 * np.mean(np.abs(x)))
        out[f"flux_catastrophic_{b}"] = _finite_stat(err, lambda x: np.mean(np.abs(x) > CATASTROPHIC_FLUX))
    for b1, b2 in COLOUR_PAIRS:
        key = f"{b1}_{b2}"
        err = _col(table, f"colour_err_{key}")
        out[f"colour_bias_{key}"] = _finite_stat(err, np.median)
        out[f"colour_scatter_{key}"] = math.nan if err is None else robust_scatter(err)
        if err is None or len(err) == 0 or b1 not in bands or b2 not in bands:
            out[f"colour_catastrophic_{key}"] = math.nan
        else:
            with np.errstate(invalid="ignore"):
                bad = ~np.isfinite(err) | (np.abs(err) > CATASTROPHIC_COLOUR_MAG)
            out[f"colour_catastrophic_{key}"] = float(np.mean(bad))
    return out


def _shape_summary(table: pd.DataFrame) -> dict[str, float]:
    de = _col(table, "de")
    out = {"de_median": _finite_stat(de, np.median), "de_mean": _finite_stat(de, np.mean)}
    for key, colname in (("moment_failures", "moments_failed_pred"),
                         ("moment_failures_isolated", "moments_failed_isolated")):
        out[key] = float(table[colname].sum()) if colname in table.columns else math.nan
    e1t, e2t = _col(table, "e1_isolated"), _col(table, "e2_isolated")
    e1p, e2p = _col(table, "e1_pred"), _col(table, "e2_pred")
    if e1t is None:
        for key in ("m", "c", "m1", "c1", "m2", "c2"):
            out[f"shear_{key}"] = math.nan
    else:
        out["shear_m"], out["shear_c"] = fit_shear_bias(np.r_[e1t, e2t], np.r_[e1p, e2p])
        out["shear_m1"], out["shear_c1"] = fit_shear_bias(e1t, e1p)
        out["shear_m2"], out["shear_c2"] = fit_shear_bias(e2t, e2p)
    return out


def summarize(table: pd.DataFrame, *, bands: Sequence[str]) -> dict[str, float]:
    """Aggregate a :func:`galaxy_table` into named scores.

    Keys (NaN when the column was not computed, a band is absent or there are
    no galaxies): ``n_galaxies``; ``deblend`` (mean, the primary score),
    ``deblend_median``, ``nre_median``; per band ``b``: ``flux_bias_b``
    (median dF/F), ``flux_scatter_b`` (1.4826 MAD), ``flux_mape_b`` (mean
    |dF/F|, percent), ``flux_catastrophic_b`` (fraction with |dF/F| > 0.2),
    ``cosine_b`` (mean); per colour ``g_r``, ``r_i``: ``colour_bias_*``
    (median, mag), ``colour_scatter_*`` (1.4826 MAD, mag),
    ``colour_catastrophic_*`` (fraction undefined or beyond 0.2 mag);
    ``cosine`` (mean of the per-galaxy band means); ``de_median``, ``de_mean``
    (failures on the prediction count as 1), ``moment_failures`` (on the
    prediction), ``moment_failures_isolated`` (on the truth; left out);
    ``shear_m``, ``shear_c`` (pooled over e1, e2), ``shear_m1``, ``shear_c1``,
    ``shear_m2``, ``shear_c2``; ``ssim`` (mean). The ``flux_*_r`` keys are
    always present (NaN without an r band) so the r-band scores exist for
    every survey.
    """
    bands = tuple(bands)
    out: dict[str, float] = {"n_galaxies": float(len(table))}
    deb = _col(table, "deblend")
    out["deblend"] = _finite_stat(deb, np.mean)
    out["deblend_median"] = _finite_stat(deb, np.median)
    out["nre_median"] = _finite_stat(_col(table, "nre"), np.median)
    out.update(_flux_summary(table, bands))
    for b in bands:
        out[f"cosine_{b}"] = _finite_stat(_col(table, f"cosine_{b}"), np.mean)
    out["cosine"] = _finite_stat(_col(table, "cosine"), np.mean)
    out.update(_shape_summary(table))
    out["ssim"] = _finite_stat(_col(table, "ssim"), np.mean)
    return out
