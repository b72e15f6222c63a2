"""Morphology metrics of one band: adaptive-moment ellipticity, shear bias, SSIM on the footprint.

Definitions in :mod:`deblendkit.scoring.metrics` (``e1_*``, ``e2_*``, ``de``,
``ssim``). Images are one band of each galaxy, shape ``(n, H, W)``, ADU per
pixel, noiseless and PSF-convolved (no PSF correction is applied).
"""
from __future__ import annotations

import logging
import math

import galsim
import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = [
    "MOMENT_FAILURE_DE",
    "SSIM_FOOTPRINT",
    "adaptive_ellipticity",
    "centroids",
    "fit_shear_bias",
    "shape_columns",
    "ssim",
    "ssim_column",
]

logger = logging.getLogger(__name__)

MOMENT_FAILURE_DE = 1.0
"""Value of ``de`` when adaptive moments fail on the prediction (see :mod:`deblendkit.scoring.metrics`)."""

SSIM_FOOTPRINT = 0.05
"""SSIM is averaged where the window mean of the peak-scaled truth is at least this (fraction of its peak)."""

_SSIM_SIGMA = 1.5  # pixels
_SSIM_TRUNCATE = 3.5  # sigmas
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


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


def centroids(images: np.ndarray) -> np.ndarray:
    """Flux-weighted (x, y) centroid of the positive part of each image, 0-based pixels, (n, 2)."""
    pos = np.clip(np.asarray(images, dtype=np.float64), 0.0, None)
    tot = pos.sum(axis=(1, 2))
    h, w = images.shape[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (pos.sum(axis=1) @ np.arange(w)) / tot
        y = (pos.sum(axis=2) @ np.arange(h)) / tot
    return np.stack([x, y], axis=1)


def shape_columns(img_t: np.ndarray | None, img_p: np.ndarray | None, n_gal: int) -> dict[str, np.ndarray]:
    """The ``shape`` group's columns of ``n_gal`` galaxies (all NaN when ``img_t`` is None).

    ``img_t``, ``img_p``: (n_gal, H, W) truth and prediction of the reference
    band. Moments of both start at the truth's centroid.
    """
    nan = np.full(n_gal, np.nan)
    if img_t is None:
        return {
            "e1_isolated": nan, "e2_isolated": nan.copy(), "e1_pred": nan.copy(),
            "e2_pred": nan.copy(), "de": nan.copy(),
            "moments_failed_isolated": np.zeros(n_gal, bool),
            "moments_failed_pred": np.zeros(n_gal, bool),
        }
    guess = centroids(img_t)
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


def _max_normalised(images: np.ndarray) -> np.ndarray:
    z = np.array(images, dtype=np.float64)
    peak = z.max(axis=(1, 2))
    scale = np.where(peak > 0, peak, 1.0)
    z /= scale[:, None, None]
    return z


def _blur(z: np.ndarray) -> np.ndarray:
    return gaussian_filter(z, sigma=(0, _SSIM_SIGMA, _SSIM_SIGMA), truncate=_SSIM_TRUNCATE, mode="reflect")


def ssim(images_true: np.ndarray, images_pred: np.ndarray) -> np.ndarray:
    """Structural similarity of image pairs on the true galaxy's footprint.

    Each image is divided by its own maximum (left unscaled when the maximum
    is <= 0); the SSIM map (Gaussian window sigma 1.5 pixels truncated at 3.5
    sigma, ``data_range = 1``, K1 = 0.01, K2 = 0.03, reflected borders) is
    averaged over the footprint: the pixels where the window mean of the
    scaled truth is at least :data:`SSIM_FOOTPRINT` (see
    :mod:`deblendkit.scoring.metrics` for the values of zeros and shifts).

    Parameters
    ----------
    images_true, images_pred : ndarray, (n, H, W)
        Image pairs (any units: each image is scaled by its own maximum).

    Returns
    -------
    ndarray of float64, (n,)
        Mean SSIM of each pair over its footprint, in [-1, 1]; 1 for identical
        images (or one a positive multiple of the other); at most 0.038 for an
        all-zero prediction; NaN where the truth has no positive pixel.
    """
    x = _max_normalised(images_true)
    y = _max_normalised(images_pred)
    ux, uy = _blur(x), _blur(y)
    vx = _blur(x * x) - ux * ux
    vy = _blur(y * y) - uy * uy
    vxy = _blur(x * y) - ux * uy
    c1, c2 = _SSIM_K1**2, _SSIM_K2**2  # data_range = 1
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    footprint = ux >= SSIM_FOOTPRINT
    n_pix = footprint.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pix > 0, (s * footprint).sum(axis=(1, 2)) / n_pix, np.nan)


def ssim_column(img_t: np.ndarray | None, img_p: np.ndarray | None, n_gal: int) -> np.ndarray:
    """The ``ssim`` column of ``n_gal`` galaxies (NaN when ``img_t`` is None: no reference band)."""
    if img_t is None:
        return np.full(n_gal, np.nan)
    return ssim(img_t, img_p)
