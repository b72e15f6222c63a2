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

Secondary metrics (per galaxy; aggregated by :func:`deblendkit.scoring.table.summarize`)
-----------------------------------------------------------------------------------
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
    Structural similarity of the reference band *where the galaxy is*
    (:func:`deblendkit.scoring.shapes.ssim`). Each image is divided by its own
    maximum (left as is when its maximum is <= 0), the SSIM map is computed in
    the convention of the deblending literature (the Wang et al. 2004 settings
    as in scikit-image: ``data_range = 1``, a Gaussian window of sigma 1.5
    pixels truncated at 3.5 sigma, K1 = 0.01, K2 = 0.03, population
    covariances, reflected borders), and averaged over the galaxy's
    *footprint*: the pixels where the window mean of the scaled truth is at
    least :data:`~deblendkit.scoring.shapes.SSIM_FOOTPRINT` (0.05) of its peak.
    Averaged over the whole stamp, as before, the empty background (identical
    in truth and in an all-zero prediction) made zeros score ~0.73 on the
    default test blends; on the footprint an all-zero prediction scores at
    most ``C1 / (0.05^2 + C1) = 0.038`` per pixel (measured 0.0016 on the first
    200 default test blends), the truth 1, the truth shifted by one pixel
    0.88 and by two pixels 0.64 (same blends). For comparison only: it is
    insensitive to a wrong flux scale by construction.

Shear-style bias ``m``, ``c`` come from the least-squares fit
``e_pred = (1 + m) e_isolated + c`` over galaxies with both shapes measured,
per component (``m1, c1``, ``m2, c2``) and pooled over both components
(``m``, ``c``).

Efficiency: the sums behind the primary and flux metrics are vectorised over
galaxies, in chunks of a few blends so that the temporaries stay in cache; the
squares are formed in float32 and accumulated in float64. Tables are built per
batch of blends (:func:`deblendkit.scoring.table.galaxy_table_batch`, public for
out-of-core scoring) and concatenated, so memory does not grow with the data set
beyond the table.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from deblendkit.scoring.checks import NonFiniteReport, check_pair, raise_nonfinite

__all__ = [
    "COLOUR_PAIRS",
    "CATASTROPHIC_FLUX",
    "CATASTROPHIC_COLOUR_MAG",
    "colour_error",
    "cosine_columns",
    "deblend_columns",
    "deblend_scores",
    "flux_columns",
    "image_sums",
    "nonfinite_reports",
]

COLOUR_PAIRS = (("g", "r"), ("r", "i"))
"""Colours reported, as (bluer band, redder band)."""

CATASTROPHIC_FLUX = 0.2
"""A galaxy is a catastrophic flux failure in a band when ``|dF/F|`` exceeds this."""

CATASTROPHIC_COLOUR_MAG = 0.2
"""A colour error above this (magnitudes), or an undefined colour, is catastrophic."""

_CHUNK_BLENDS = 4  # blends per vectorised chunk: temporaries stay in cache
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def image_sums(yt: np.ndarray, yp: np.ndarray, *, flux: bool, cosine: bool) -> dict[str, np.ndarray]:
    """Per (blend, slot, band) sums in float64, computed chunk by chunk.

    Parameters
    ----------
    yt, yp : ndarray, (n_blends, max_galaxies, n_bands, height, width)
        Truth and prediction, ADU per pixel (checked by the caller).
    flux, cosine : bool
        Also compute the flux sums, the cosine sums.

    Returns
    -------
    dict of str to ndarray (n_blends, max_galaxies, n_bands)
        ``syy`` (sum y^2), ``sdd`` (sum (y_hat - y)^2), and when asked
        ``ft``/``fp`` (sum y, sum y_hat) and ``spp``/``spy`` (sum y_hat^2,
        sum y_hat y). Squares are formed in float32 (float64 inputs stay
        float64) and summed with float64 accumulators.
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


def nonfinite_reports(yt, yp, sums, offset) -> tuple[NonFiniteReport, NonFiniteReport]:
    """Exact NaN / inf counts (predictions, truth) for the blends whose sums are not finite."""
    pred_bad, truth_bad = NonFiniteReport("predictions"), NonFiniteReport("ground truth")
    flagged = ~np.isfinite(sums["syy"]).all(axis=(1, 2)) | ~np.isfinite(sums["sdd"]).all(axis=(1, 2))
    for i in np.flatnonzero(flagged):
        pred_bad.add(yp[i : i + 1], offset + i)
        truth_bad.add(yt[i : i + 1], offset + i)
    return pred_bad, truth_bad


def deblend_scores(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Primary score of every real galaxy, fast path (no table).

    Parameters
    ----------
    y_true, y_pred : array-like, (n_blends, max_galaxies, n_bands, height, width)
        Isolated (label) and predicted images, ADU per pixel.

    Returns
    -------
    real : ndarray of bool, (n_blends, max_galaxies)
        Which slots hold a galaxy (truth with nonzero sum of squares).
    score : ndarray of float64, (n_real,)
        ``1 - min(1, NRE)`` of the real slots, in blend-major order.

    Raises
    ------
    PredictionError
        Wrong dtype or shape, or NaN / inf values.
    """
    yt, yp = check_pair(y_true, y_pred)
    sums = image_sums(yt, yp, flux=False, cosine=False)
    raise_nonfinite(*nonfinite_reports(yt, yp, sums, 0))
    syy = sums["syy"].sum(axis=-1)
    real = syy > 0
    nre = np.sqrt(sums["sdd"].sum(axis=-1)[real] / syy[real])
    return real, 1.0 - np.minimum(1.0, nre)


def deblend_columns(sums: dict[str, np.ndarray], real: np.ndarray) -> dict[str, np.ndarray]:
    """``nre`` and ``deblend`` of the real slots (a boolean (n, K) mask) from :func:`image_sums`."""
    syy = sums["syy"].sum(axis=-1)
    nre = np.sqrt(sums["sdd"].sum(axis=-1)[real] / syy[real])
    return {"nre": nre, "deblend": 1.0 - np.minimum(1.0, nre)}


def flux_columns(ft: np.ndarray, fp: np.ndarray, bands: Sequence[str], *, flux: bool,
                 colour: bool) -> dict[str, np.ndarray]:
    """Flux and colour columns of real galaxies.

    Parameters
    ----------
    ft, fp : ndarray, (n_galaxies, n_bands)
        True and predicted flux per band, ADU (sums over the stamp).
    bands : sequence of str
        Band names of axis 1.
    flux, colour : bool
        Which groups to return: ``flux_isolated_<b>``, ``flux_pred_<b>``,
        ``flux_err_<b>`` (dF/F, NaN where the true flux is <= 0);
        ``colour_err_<b1>_<b2>`` for :data:`COLOUR_PAIRS`.
    """
    cols: dict[str, np.ndarray] = {}
    if flux:
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.where(ft > 0, (fp - ft) / np.where(ft > 0, ft, 1.0), np.nan)
        for j, b in enumerate(bands):
            cols[f"flux_isolated_{b}"] = ft[:, j]
            cols[f"flux_pred_{b}"] = fp[:, j]
            cols[f"flux_err_{b}"] = err[:, j]
    if colour:
        for b1, b2 in COLOUR_PAIRS:
            cols[f"colour_err_{b1}_{b2}"] = colour_error(ft, fp, bands, b1, b2)
    return cols


def colour_error(ft: np.ndarray, fp: np.ndarray, bands: Sequence[str], b1: str, b2: str) -> np.ndarray:
    """``(m1 - m2)_pred - (m1 - m2)_true`` in magnitudes, NaN where a flux is <= 0 or a band absent.

    ``ft``, ``fp``: (n_galaxies, n_bands) true and predicted fluxes, ADU.
    """
    if b1 not in bands or b2 not in bands:
        return np.full(len(ft), np.nan)
    i, j = bands.index(b1), bands.index(b2)
    ok = (ft[:, i] > 0) & (ft[:, j] > 0) & (fp[:, i] > 0) & (fp[:, j] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (fp[:, i] / fp[:, j]) / (ft[:, i] / ft[:, j])
        return np.where(ok, -2.5 * np.log10(np.where(ok, ratio, 1.0)) + 0.0, np.nan)  # no -0.0


def cosine_columns(spp: np.ndarray, spy: np.ndarray, syy: np.ndarray,
                   bands: Sequence[str]) -> dict[str, np.ndarray]:
    """``cosine_<b>`` per band and their mean ``cosine`` of real galaxies.

    ``spp``, ``spy``, ``syy``: (n_galaxies, n_bands) sums of y_hat^2, y_hat y,
    y^2. The cosine is 0 where the prediction is all zeros, NaN where the
    truth is.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = spy / np.sqrt(spp * syy)
    cos = np.where(syy > 0, np.where(spp > 0, cos, 0.0), np.nan)
    cols = {f"cosine_{b}": cos[:, j] for j, b in enumerate(bands)}
    with warnings.catch_warnings():  # all-NaN rows: 'mean of empty slice'
        warnings.simplefilter("ignore", category=RuntimeWarning)
        cols["cosine"] = np.nanmean(cos, axis=1) if len(cos) else np.empty(0)
    return cols
