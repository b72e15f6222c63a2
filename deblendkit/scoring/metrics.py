"""The deblending score and the secondary metrics, per galaxy and aggregated.

Arrays follow the data contract (``data/README.md``): ``y_true`` is the label
``isolated`` and ``y_pred`` a submission's prediction, both of shape
``(n_blends, max_galaxies, n_bands, height, width)`` in ADU per pixel. Slot ``k``
of blend ``i`` is one galaxy, noiseless and PSF-convolved; a slot whose truth is
all zeros (sum of squares 0) is *empty* and is ignored by every metric,
whatever the prediction holds there (zeros are expected, anything finite is
accepted and has no effect). Non-finite values anywhere are an error.

Primary score
-------------
Per real galaxy, with the norm taken over all bands and pixels of its slot::

    NRE     = ||y_hat - y||_2 / ||y||_2           (normalised residual energy)
    deblend = 1 - min(1, NRE)                     in [0, 1], higher is better

averaged over all real galaxies of all blends. 1 is a perfect prediction; 0 is
an all-zero prediction (NRE = 1) or anything at least as wrong. Why NRE:

* it is scale-free: multiplying truth and prediction by the same factor leaves
  it unchanged, so bright and faint galaxies weigh alike and the ADU scale of
  the survey does not matter;
* with ``a = ||y_hat|| / ||y||`` and ``theta`` the angle between the two images
  seen as vectors, ``NRE^2 = (a - 1)^2 + 2 a (1 - cos theta)``: it penalises a
  wrong amplitude (flux) and a wrong shape (angle) together, and a prediction
  that adds light leaked from a neighbour pays both terms, since the added light
  raises ``a`` and tilts the direction away from the truth;
* the clip at 1 keeps one catastrophic galaxy (e.g. a huge neighbour assigned to
  a faint slot, NRE >> 1) from dominating the mean: it scores like a galaxy not
  predicted at all.

Secondary metrics (per galaxy; aggregated by :func:`summarize`)
--------------------------------------------------------------
``flux_err_<band>``
    ``dF/F = (sum y_hat - sum y) / sum y`` over the stamp (NaN if the true flux in
    that band is <= 0). Aggregated as bias (median), scatter (1.4826 x MAD),
    mean absolute percentage error (percent) and catastrophic fraction
    ``|dF/F| > 0.2``.
``colour_err_g_r``, ``colour_err_r_i``
    Colour error in magnitudes, ``(m1 - m2)_pred - (m1 - m2)_true`` with
    ``m = -2.5 log10 F``. A colour is *undefined* (NaN) when one of its two
    predicted (or true) fluxes is <= 0; undefined colours are left out of the
    median and scatter and counted as catastrophic (as is ``|d colour| > 0.2
    mag``). NaN for every galaxy when a band of the pair is absent.
``cosine_<band>``, ``cosine``
    Cosine similarity ``<y_hat, y> / (||y_hat|| ||y||)`` per band, in [-1, 1];
    0 when the prediction is all zeros in that band, NaN when the truth is.
    ``cosine`` is the galaxy's mean over bands.
``e1_isolated``, ``e2_isolated``, ``e1_pred``, ``e2_pred``, ``de``
    Observed ellipticity (shear convention, ``|e| = (a - b) / (a + b)``) from
    GalSim's adaptive moments (``galsim.hsm.FindAdaptiveMom``, ``strict=False``)
    of the reference band (r by default) of the truth and of the prediction.
    Both images are already PSF-convolved and noiseless, so no PSF correction
    is applied: the residual measures what the deblender did to the shape.
    ``de = |e_pred - e_isolated|`` (modulus of the complex difference, 0..2).
    When the moments fail on the prediction (e.g. an all-zero or negative
    image) but not on the truth, ``de = 1`` (:data:`MOMENT_FAILURE_DE`): the
    modulus of the largest shear-convention ellipticity, far above typical
    residuals (0.01-0.1) yet finite so medians stay meaningful; the failure is
    counted (``moments_failed_pred``). When they fail on the truth the galaxy
    has no measurable shape: ``de`` is NaN and it is counted separately
    (``moments_failed_isolated``).
``ssim``
    Structural similarity of the reference band in the convention of the
    deblending literature (e.g. the BlendingToolKit): each image is divided by
    its own maximum (left as is when its maximum is <= 0) and compared with
    ``data_range = 1``, a Gaussian window of sigma 1.5 pixels truncated at 3.5
    sigma, K1 = 0.01, K2 = 0.03, population covariances, reflected borders,
    and the mean taken over the pixels at least 5 pixels from the border (the
    Wang et al. 2004 settings as in scikit-image). For comparison only: it is
    insensitive to a wrong flux scale by construction.

Shear-style bias ``m``, ``c`` come from the least-squares fit
``e_pred = (1 + m) e_isolated + c`` over galaxies with both shapes measured,
per component (``m1, c1``, ``m2, c2``) and pooled over both components
(``m``, ``c``).

Efficiency: the sums behind the primary and flux metrics are vectorised over
galaxies, in chunks of a few blends so that the temporaries stay in cache; the
squares are formed in float32 and accumulated in float64. Tables are built per
batch of blends (:func:`galaxy_table_batch`, public for streaming scoring) and
concatenated, so memory does not grow with the data set beyond the table.
"""
from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from deblendkit.errors import ConfigError, PredictionError

__all__ = [
    "AXES",
    "METRIC_GROUPS",
    "COLOUR_PAIRS",
    "CATASTROPHIC_FLUX",
    "CATASTROPHIC_COLOUR_MAG",
    "MOMENT_FAILURE_DE",
    "MAD_TO_SIGMA",
    "as_image_array",
    "check_finite",
    "check_arrays",
    "deblend_scores",
    "galaxy_table_batch",
    "galaxy_table",
    "summarize",
    "robust_scatter",
    "adaptive_ellipticity",
    "fit_shear_bias",
    "ssim",
]

logger = logging.getLogger(__name__)

AXES = "(n_blends, max_galaxies, n_bands, height, width)"
"""Names of the five axes of truth and prediction arrays."""

METRIC_GROUPS = ("deblend", "flux", "colour", "cosine", "shape", "ssim")
"""Groups of per-galaxy columns :func:`galaxy_table_batch` can compute.

``deblend`` (the primary score, always computed), ``flux`` (per-band fluxes
and dF/F), ``colour`` (g-r, r-i errors; implies the flux sums), ``cosine``,
``shape`` (adaptive moments of the reference band, the slow one) and ``ssim``.
"""

COLOUR_PAIRS = (("g", "r"), ("r", "i"))
"""Colours reported, as (bluer band, redder band)."""

CATASTROPHIC_FLUX = 0.2
"""A galaxy is a catastrophic flux failure in a band when ``|dF/F|`` exceeds this."""

CATASTROPHIC_COLOUR_MAG = 0.2
"""A colour error above this (magnitudes), or an undefined colour, is catastrophic."""

MOMENT_FAILURE_DE = 1.0
"""Value of ``de`` when adaptive moments fail on the prediction (see module doc)."""

MAD_TO_SIGMA = 1.4826
"""Median absolute deviation to Gaussian standard deviation."""

_CHUNK_BLENDS = 4  # blends per vectorised chunk: temporaries stay in cache
_DEFAULT_BATCH = 256  # blends per table batch in galaxy_table
_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_SSIM_PAD = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)  # 5 pixels: half the window
_MAX_LISTED = 10
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------
def _shape_str(shape: Sequence) -> str:
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


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

    Raises
    ------
    PredictionError
        ``a`` is ragged, an object array, non-numeric (strings, booleans,
        complex), not 5-D, or not of ``expected_shape``.
    """
    expected = None if expected_shape is None else tuple(expected_shape)
    want = f"{_shape_str(expected)} = {AXES}" if expected is not None else f"5 dimensions {AXES}"
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except (ValueError, TypeError) as exc:
            raise PredictionError(
                f"{name} could not be converted to an array ({exc}); expected a numeric "
                f"array of shape {want}"
            ) from None
    kind = a.dtype.kind
    if kind == "O":
        raise PredictionError(
            f"{name} are an object array (dtype object, e.g. a list of arrays of different "
            f"shapes); expected a numeric array of shape {want}, float32 preferred"
        )
    if kind not in "fiu":
        raise PredictionError(
            f"{name} have non-numeric dtype {a.dtype}; expected real numbers "
            f"(float32 preferred) of shape {want}"
        )
    if a.ndim != 5:
        raise PredictionError(f"{name} have shape {_shape_str(a.shape)} ({a.ndim}-D); expected {want}")
    if expected is not None and any(e is not None and e != s for e, s in zip(expected, a.shape)):
        raise PredictionError(f"{name} have shape {_shape_str(a.shape)}; expected {want}")
    return a


@dataclass
class _NonFinite:
    """Per-blend counts of NaN and inf, gathered over batches."""

    name: str
    blends: list = field(default_factory=list)
    n_nan: int = 0
    n_inf: int = 0

    def add(self, block: np.ndarray, offset: int) -> None:
        nan = np.isnan(block).reshape(len(block), -1).sum(axis=1)
        inf = np.isinf(block).reshape(len(block), -1).sum(axis=1)
        bad = np.flatnonzero(nan + inf)
        self.blends.extend(int(offset + i) for i in bad)
        self.n_nan += int(nan.sum())
        self.n_inf += int(inf.sum())

    def __bool__(self) -> bool:
        return bool(self.blends)

    def describe(self) -> str:
        listed = ", ".join(str(i) for i in self.blends[:_MAX_LISTED])
        more = f", ... ({len(self.blends) - _MAX_LISTED} more)" if len(self.blends) > _MAX_LISTED else ""
        return (
            f"{self.name} contain {self.n_nan} NaN and {self.n_inf} inf values in "
            f"{len(self.blends)} blend(s) (blend indexes {listed}{more})"
        )


def _raise_nonfinite(*reports: _NonFinite) -> None:
    bad = [r.describe() for r in reports if r]
    if bad:
        raise PredictionError(
            "; ".join(bad) + "; expected finite values everywhere (put 0 in empty slots)"
        )


def check_finite(a: np.ndarray, *, name: str = "predictions", blend_offset: int = 0) -> None:
    """Raise :class:`PredictionError` if ``a`` holds NaN or inf.

    Scans ``a`` in chunks of blends (no full-size temporary). The message says
    how many NaN and inf values there are and in which blends (indexes offset
    by ``blend_offset``).
    """
    report = _NonFinite(name)
    for s in range(0, len(a), 64):
        block = a[s : s + 64]
        if not np.isfinite(block.sum(dtype=np.float64)):
            report.add(block, blend_offset + s)
    _raise_nonfinite(report)


def _check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Dtype and shape checks of truth and prediction (values not read)."""
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
    y_true, y_pred = _check_pair(y_true, y_pred)
    truth_bad, pred_bad = _NonFinite("ground truth"), _NonFinite("predictions")
    for s in range(0, len(y_true), 64):
        for arr, rep in ((y_true, truth_bad), (y_pred, pred_bad)):
            block = arr[s : s + 64]
            if not np.isfinite(block.sum(dtype=np.float64)):
                rep.add(block, s)
    _raise_nonfinite(pred_bad, truth_bad)
    return y_true, y_pred


def _check_bands(bands: Sequence[str], n_bands: int) -> tuple[str, ...]:
    if isinstance(bands, str):
        bands = (bands,) if n_bands == 1 else tuple(bands)
    bands = tuple(bands)
    if len(bands) != n_bands:
        raise ConfigError(
            f"bands {list(bands)} name {len(bands)} bands but the arrays have {n_bands} "
            f"(axis 2 of {AXES})"
        )
    return bands


def _check_groups(metrics: Collection[str] | None) -> frozenset[str]:
    if metrics is None:
        return frozenset(METRIC_GROUPS)
    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = sorted(set(metrics) - set(METRIC_GROUPS))
    if unknown:
        raise ConfigError(f"unknown metric groups {unknown}; allowed: {list(METRIC_GROUPS)}")
    return frozenset(metrics) | {"deblend"}


# ---------------------------------------------------------------------------
# Vectorised sums
# ---------------------------------------------------------------------------
def _sums(yt: np.ndarray, yp: np.ndarray, *, flux: bool, cosine: bool) -> dict[str, np.ndarray]:
    """Per (blend, slot, band) sums in float64, computed chunk by chunk.

    Returns ``syy`` (sum y^2), ``sdd`` (sum (y_hat - y)^2), and when asked
    ``ft``/``fp`` (sum y, sum y_hat) and ``spp``/``spy`` (sum y_hat^2,
    sum y_hat y). Squares are formed in float32 (float64 inputs stay float64)
    and summed with float64 accumulators.
    """
    n, k, c = yt.shape[:3]
    out = {"syy": np.empty((n, k, c)), "sdd": np.empty((n, k, c))}
    if flux:
        out["ft"], out["fp"] = np.empty((n, k, c)), np.empty((n, k, c))
    if cosine:
        out["spp"], out["spy"] = np.empty((n, k, c)), np.empty((n, k, c))
    f64 = np.float64
    for s in range(0, n, _CHUNK_BLENDS):
        e = min(n, s + _CHUNK_BLENDS)
        a = yt[s:e].reshape(e - s, k, c, -1)
        b = yp[s:e].reshape(e - s, k, c, -1)
        if a.dtype not in _FLOATS:  # ints, float16: square in float32
            a = a.astype(np.float32)
        if b.dtype not in _FLOATS:
            b = b.astype(np.float32)
        d = np.subtract(b, a)
        out["sdd"][s:e] = np.square(d, out=d).sum(axis=-1, dtype=f64)
        out["syy"][s:e] = np.square(a).sum(axis=-1, dtype=f64)
        if flux:
            out["ft"][s:e] = a.sum(axis=-1, dtype=f64)
            out["fp"][s:e] = b.sum(axis=-1, dtype=f64)
        if cosine:
            out["spp"][s:e] = np.square(b).sum(axis=-1, dtype=f64)
            out["spy"][s:e] = np.multiply(a, b).sum(axis=-1, dtype=f64)
    return out


def deblend_scores(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Primary score of every real galaxy, fast path (no table).

    Parameters
    ----------
    y_true, y_pred : array-like, (n_blends, max_galaxies, n_bands, height, width)

    Returns
    -------
    real : ndarray of bool, (n_blends, max_galaxies)
        Which slots hold a galaxy (truth with nonzero sum of squares).
    score : ndarray of float64, (n_real,)
        ``1 - min(1, NRE)`` of the real slots, in blend-major order.
    """
    yt, yp = _check_pair(y_true, y_pred)
    sums = _sums(yt, yp, flux=False, cosine=False)
    _raise_nonfinite(*_nonfinite_reports(yt, yp, sums, 0))
    syy = sums["syy"].sum(axis=-1)
    real = syy > 0
    nre = np.sqrt(sums["sdd"].sum(axis=-1)[real] / syy[real])
    return real, 1.0 - np.minimum(1.0, nre)


def _nonfinite_reports(yt, yp, sums, offset) -> tuple[_NonFinite, _NonFinite]:
    """Exact NaN / inf counts for the blends whose sums are not finite."""
    pred_bad, truth_bad = _NonFinite("predictions"), _NonFinite("ground truth")
    flagged = ~np.isfinite(sums["syy"]).all(axis=(1, 2)) | ~np.isfinite(sums["sdd"]).all(axis=(1, 2))
    for i in np.flatnonzero(flagged):
        pred_bad.add(yp[i : i + 1], offset + i)
        truth_bad.add(yt[i : i + 1], offset + i)
    return pred_bad, truth_bad


# ---------------------------------------------------------------------------
# Shapes and SSIM
# ---------------------------------------------------------------------------
def adaptive_ellipticity(
    images: np.ndarray, *, guess_centroids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shear-convention ellipticity of each image from GalSim adaptive moments.

    Parameters
    ----------
    images : ndarray, (n, H, W)
        One band per image, ADU per pixel (no PSF correction is done).
    guess_centroids : ndarray, (n, 2), optional
        Starting (x, y) pixel position of the moments, 0-based (pixel i spans
        [i - 0.5, i + 0.5]); NaN rows, or None, start at the stamp centre.

    Returns
    -------
    e1, e2 : ndarray of float64, (n,)
        ``g1``, ``g2`` of the observed shape (``|e| = (a - b) / (a + b)``); NaN
        where the moments failed.
    ok : ndarray of bool, (n,)
        Whether the moments converged.
    """
    import galsim

    images = np.asarray(images)
    n = len(images)
    e1, e2, ok = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool)
    for i in range(n):
        kwargs = {"strict": False}
        if guess_centroids is not None and np.all(np.isfinite(guess_centroids[i])):
            # galsim images start at pixel (1, 1).
            kwargs["guess_centroid"] = galsim.PositionD(
                float(guess_centroids[i][0]) + 1.0, float(guess_centroids[i][1]) + 1.0
            )
        img = np.ascontiguousarray(images[i], dtype=np.float64)
        try:
            res = galsim.hsm.FindAdaptiveMom(galsim.Image(img), **kwargs)
        except (galsim.GalSimError, RuntimeError, ValueError) as exc:  # pragma: no cover - defensive
            logger.debug("adaptive moments raised on image %d: %s", i, exc)
            continue
        if res.moments_status == 0:
            shape = res.observed_shape
            e1[i], e2[i], ok[i] = shape.g1, shape.g2, True
    return e1, e2, ok


def _centroids(images: np.ndarray) -> np.ndarray:
    """Flux-weighted (x, y) centroid of the positive part of each image, 0-based."""
    pos = np.clip(np.asarray(images, dtype=np.float64), 0.0, None)
    tot = pos.sum(axis=(1, 2))
    h, w = images.shape[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (pos.sum(axis=1) @ np.arange(w)) / tot
        y = (pos.sum(axis=2) @ np.arange(h)) / tot
    return np.stack([x, y], axis=1)


def ssim(images_true: np.ndarray, images_pred: np.ndarray) -> np.ndarray:
    """Structural similarity of image pairs, each image divided by its maximum.

    See the module docstring for the convention (Gaussian window sigma 1.5
    pixels, data range 1, borders of 5 pixels excluded from the mean).

    Parameters
    ----------
    images_true, images_pred : ndarray, (n, H, W)
        Image pairs (any units: each image is scaled by its own maximum,
        left unscaled when the maximum is <= 0). H and W must exceed 10.

    Returns
    -------
    ndarray of float64, (n,)
        Mean SSIM of each pair, in [-1, 1]; 1 for identical images.
    """
    from scipy.ndimage import gaussian_filter

    x = _max_normalised(images_true)
    y = _max_normalised(images_pred)
    pad = _SSIM_PAD
    if x.shape[1] <= 2 * pad or x.shape[2] <= 2 * pad:
        raise ConfigError(f"SSIM needs images larger than {2 * pad} pixels, got {x.shape[1:]}")

    def blur(z):
        return gaussian_filter(z, sigma=(0, _SSIM_SIGMA, _SSIM_SIGMA), truncate=_SSIM_TRUNCATE, mode="reflect")

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1, c2 = _SSIM_K1**2, _SSIM_K2**2  # data_range = 1
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s[:, pad:-pad, pad:-pad].mean(axis=(1, 2))


def _max_normalised(images: np.ndarray) -> np.ndarray:
    z = np.array(images, dtype=np.float64)
    peak = z.max(axis=(1, 2))
    scale = np.where(peak > 0, peak, 1.0)
    z /= scale[:, None, None]
    return z


def fit_shear_bias(e_true, e_pred) -> tuple[float, float]:
    """Least-squares ``m``, ``c`` of ``e_pred = (1 + m) e_true + c``.

    Pairs with a NaN are left out. Returns ``(nan, nan)`` with fewer than two
    pairs or no spread in ``e_true``.
    """
    x = np.asarray(e_true, dtype=np.float64).ravel()
    y = np.asarray(e_pred, dtype=np.float64).ravel()
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2:
        return math.nan, math.nan
    xm, ym = x.mean(), y.mean()
    var = np.sum((x - xm) ** 2)
    if var <= 0:
        return math.nan, math.nan
    slope = np.sum((x - xm) * (y - ym)) / var
    return float(slope - 1.0), float(ym - slope * xm)


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------
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
        Groups of :data:`METRIC_GROUPS` to compute (default all); ``deblend``
        is always included.
    ref_band : str
        Band of the shape and SSIM metrics (NaN when absent from ``bands``).

    Returns
    -------
    pandas.DataFrame
        One row per real galaxy (truth with nonzero sum of squares), in
        blend-major order: ``blend_index``, ``slot``, ``nre``, ``deblend`` and
        the columns of the requested groups (see the module docstring).

    Raises
    ------
    PredictionError
        Wrong dtype or shape, or NaN / inf values (see :func:`check_arrays`).
    """
    table, pred_bad, truth_bad = _batch(
        y_true, y_pred, bands=bands, blend_offset=blend_offset, metrics=metrics, ref_band=ref_band
    )
    _raise_nonfinite(pred_bad, truth_bad)
    return table


def _batch(y_true, y_pred, *, bands, blend_offset, metrics, ref_band, skip=False):
    """Table of one batch plus NaN / inf reports; table is None when any are found."""
    yt, yp = _check_pair(y_true, y_pred)
    bands = _check_bands(bands, yt.shape[2])
    groups = _check_groups(metrics)
    want_flux = bool(groups & {"flux", "colour"})
    want_cos = "cosine" in groups
    if skip:  # an earlier batch was bad: only count NaN / inf here
        sums = _sums(yt, yp, flux=False, cosine=False)
        return None, *_nonfinite_reports(yt, yp, sums, blend_offset)
    sums = _sums(yt, yp, flux=want_flux, cosine=want_cos)
    pred_bad, truth_bad = _nonfinite_reports(yt, yp, sums, blend_offset)
    if pred_bad or truth_bad:
        return None, pred_bad, truth_bad

    syy_band = sums["syy"]
    syy = syy_band.sum(axis=-1)
    real = syy > 0
    bi, ki = np.nonzero(real)
    cols: dict[str, np.ndarray] = {
        "blend_index": (bi + blend_offset).astype(np.int64),
        "slot": ki.astype(np.int64),
    }
    nre = np.sqrt(sums["sdd"].sum(axis=-1)[real] / syy[real])
    cols["nre"] = nre
    cols["deblend"] = 1.0 - np.minimum(1.0, nre)

    if want_flux:
        ft, fp = sums["ft"][real], sums["fp"][real]
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.where(ft > 0, (fp - ft) / np.where(ft > 0, ft, 1.0), np.nan)
        if "flux" in groups:
            for j, b in enumerate(bands):
                cols[f"flux_isolated_{b}"] = ft[:, j]
                cols[f"flux_pred_{b}"] = fp[:, j]
                cols[f"flux_err_{b}"] = err[:, j]
        if "colour" in groups:
            for b1, b2 in COLOUR_PAIRS:
                cols[f"colour_err_{b1}_{b2}"] = _colour_error(ft, fp, bands, b1, b2)

    if want_cos:
        spp, spy, syyr = sums["spp"][real], sums["spy"][real], syy_band[real]
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = spy / np.sqrt(spp * syyr)
        cos = np.where(syyr > 0, np.where(spp > 0, cos, 0.0), np.nan)
        for j, b in enumerate(bands):
            cols[f"cosine_{b}"] = cos[:, j]
        with warnings.catch_warnings():  # all-NaN rows: 'mean of empty slice'
            warnings.simplefilter("ignore", category=RuntimeWarning)
            cols["cosine"] = np.nanmean(cos, axis=1) if len(cos) else np.empty(0)

    want_shape, want_ssim = "shape" in groups, "ssim" in groups
    if want_shape or want_ssim:
        n_gal = len(bi)
        if ref_band in bands and n_gal:
            r = bands.index(ref_band)
            img_t = np.asarray(yt[bi, ki, r], dtype=np.float32)
            img_p = np.asarray(yp[bi, ki, r], dtype=np.float32)
        else:
            img_t = img_p = None
        if want_shape:
            cols.update(_shape_columns(img_t, img_p, n_gal))
        if want_ssim:
            small = min(yt.shape[3:]) <= 2 * _SSIM_PAD
            if img_t is None or small:
                cols["ssim"] = np.full(n_gal, np.nan)
            else:
                cols["ssim"] = ssim(img_t, img_p)

    return pd.DataFrame(cols), pred_bad, truth_bad


def _colour_error(ft, fp, bands, b1, b2) -> np.ndarray:
    if b1 not in bands or b2 not in bands:
        return np.full(len(ft), np.nan)
    i, j = bands.index(b1), bands.index(b2)
    ok = (ft[:, i] > 0) & (ft[:, j] > 0) & (fp[:, i] > 0) & (fp[:, j] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (fp[:, i] / fp[:, j]) / (ft[:, i] / ft[:, j])
        return np.where(ok, -2.5 * np.log10(np.where(ok, ratio, 1.0)) + 0.0, np.nan)  # no -0.0


def _shape_columns(img_t, img_p, n_gal) -> dict[str, np.ndarray]:
    nan = np.full(n_gal, np.nan)
    if img_t is None:
        return {
            "e1_isolated": nan, "e2_isolated": nan.copy(), "e1_pred": nan.copy(),
            "e2_pred": nan.copy(), "de": nan.copy(),
            "moments_failed_isolated": np.zeros(n_gal, bool),
            "moments_failed_pred": np.zeros(n_gal, bool),
        }
    guess = _centroids(img_t)
    e1t, e2t, ok_t = adaptive_ellipticity(img_t, guess_centroids=guess)
    e1p, e2p, ok_p = adaptive_ellipticity(img_p, guess_centroids=guess)
    de = np.hypot(e1p - e1t, e2p - e2t)
    de = np.where(ok_t & ~ok_p, MOMENT_FAILURE_DE, de)
    de = np.where(ok_t, de, np.nan)
    return {
        "e1_isolated": e1t, "e2_isolated": e2t, "e1_pred": e1p, "e2_pred": e2p, "de": de,
        "moments_failed_isolated": ~ok_t,
        "moments_failed_pred": ok_t & ~ok_p,
    }


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
        Groups of :data:`METRIC_GROUPS` to compute (default all).
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
    """
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
    yt, yp = _check_pair(y_true, y_pred)
    bands = _check_bands(bands, yt.shape[2])
    groups = _check_groups(metrics)
    pred_bad, truth_bad = _NonFinite("predictions"), _NonFinite("ground truth")
    parts = []
    for s in range(0, len(yt), int(batch_size)):
        e = min(len(yt), s + int(batch_size))
        part, pb, tb = _batch(
            yt[s:e], yp[s:e], bands=bands, blend_offset=s, metrics=groups,
            ref_band=ref_band, skip=bool(pred_bad or truth_bad),
        )
        for total, rep in ((pred_bad, pb), (truth_bad, tb)):
            total.blends.extend(rep.blends)
            total.n_nan += rep.n_nan
            total.n_inf += rep.n_inf
        if part is not None:
            parts.append(part)
    _raise_nonfinite(pred_bad, truth_bad)
    if parts:
        table = pd.concat(parts, ignore_index=True)
    else:
        table = _batch(yt[:0], yp[:0], bands=bands, blend_offset=0, metrics=groups, ref_band=ref_band)[0]
    if truth is not None:
        table = _join_truth(table, truth)
    return table


def _join_truth(table: pd.DataFrame, truth) -> pd.DataFrame:
    truth = truth if isinstance(truth, pd.DataFrame) else pd.DataFrame(np.asarray(truth))
    missing = [c for c in ("blend_index", "slot") if c not in truth.columns]
    if missing:
        raise PredictionError(
            f"truth table lacks column(s) {missing}; expected at least 'blend_index' and "
            f"'slot', found {list(truth.columns)}"
        )
    merged = table.merge(
        truth, on=["blend_index", "slot"], how="left", suffixes=("", "_truth"),
        validate="one_to_one", indicator=True,
    )
    unmatched = int((merged["_merge"] == "left_only").sum())
    if unmatched:
        logger.warning("%d of %d galaxies have no row in the truth table", unmatched, len(table))
    return merged.drop(columns="_merge")


# ---------------------------------------------------------------------------
# Aggregates
# ---------------------------------------------------------------------------
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
    out: dict[str, float] = {"n_galaxies": float(len(table))}
    deb = _col(table, "deblend")
    out["deblend"] = _finite_stat(deb, np.mean)
    out["deblend_median"] = _finite_stat(deb, np.median)
    out["nre_median"] = _finite_stat(_col(table, "nre"), np.median)
    flux_bands = tuple(dict.fromkeys([*bands, "r"]))  # r is always reported (NaN if absent)
    for b in flux_bands:
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
    for b in bands:
        out[f"cosine_{b}"] = _finite_stat(_col(table, f"cosine_{b}"), np.mean)
    out["cosine"] = _finite_stat(_col(table, "cosine"), np.mean)

    de = _col(table, "de")
    out["de_median"] = _finite_stat(de, np.median)
    out["de_mean"] = _finite_stat(de, np.mean)
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
    out["ssim"] = _finite_stat(_col(table, "ssim"), np.mean)
    return out
