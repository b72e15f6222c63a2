"""One-to-one matching of a detection catalogue to the true sources of a blend.

The blind track (``blind/``) gives a submission no centres: it returns up to
``K_out`` detections per blend, each a centre (x, y) and an image per band. The
detections are matched to the true (labelled) sources of the blend one to one:

* the cost of pairing true source ``t`` with detection ``d`` is their centre
  distance ``dist(t, d)`` in pixels; pairs farther apart than the *match radius*
  ``r`` are forbidden;
* among the assignments with the largest number of allowed pairs, the one of
  least total distance is taken (the Hungarian algorithm,
  :func:`scipy.optimize.linear_sum_assignment`, on the distance matrix where
  forbidden pairs cost :data:`FORBIDDEN` + distance, so any extra allowed pair
  outweighs any saving of distance), then the forbidden pairs it had to use are
  dropped;
* matched true sources are true positives, true sources left over are *missed*,
  detections left over are *spurious*.

A missed source is *unrecognised* (a blend seen as one object: Dawson et al.
2016) when some detection within ``r`` of it is matched to another true
source: it was found, but the catalogue gave its light to a neighbour.

The match radius (pixels) is chosen by the caller; the blind track uses the
PSF FWHM of the blend (:func:`psf_fwhm`, the widest band), floored at
:data:`MIN_MATCH_RADIUS` (BlendingToolKit's pixel matcher uses a fixed 5 pixels).
Ties (two detections at the same distance from one source) are broken by
:func:`~scipy.optimize.linear_sum_assignment` deterministically; the scores
below do not depend on which one wins when the two detections carry the same
image.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import linear_sum_assignment

from deblendkit.errors import ConfigError

__all__ = ["FORBIDDEN", "MIN_MATCH_RADIUS", "Match", "match_catalogue", "near_any", "psf_fwhm"]

#: Added to the cost of a pair farther apart than the match radius.
FORBIDDEN = 1.0e6
#: Smallest match radius the blind track uses, pixels.
MIN_MATCH_RADIUS = 2.0


@dataclasses.dataclass(frozen=True)
class Match:
    """The matching of one blend.

    Attributes
    ----------
    detection_of : ndarray of int, (n_true,)
        Index of the detection matched to each true source, -1 when missed.
    distance : ndarray of float, (n_true,)
        Centre distance to the matched detection (pixels), NaN when missed.
    spurious : ndarray of bool, (n_det,)
        Detections matched to no true source.
    unrecognised : ndarray of bool, (n_true,)
        Missed sources with a detection within the radius that is matched to
        another source.
    """

    detection_of: np.ndarray
    distance: np.ndarray
    spurious: np.ndarray
    unrecognised: np.ndarray

    @property
    def n_matched(self) -> int:
        """True positives."""
        return int(np.count_nonzero(self.detection_of >= 0))

    @property
    def n_spurious(self) -> int:
        """False positives."""
        return int(np.count_nonzero(self.spurious))


def _points(xy, name: str) -> np.ndarray:
    arr = np.asarray(xy, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ConfigError(f"{name} must have shape (n, 2), got {arr.shape}", value=arr.shape,
                          allowed="(n, 2)")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name} must be finite (drop the empty slots first)", value=name,
                          allowed="finite (x, y)")
    return arr


def match_catalogue(true_xy, det_xy, *, radius: float) -> Match:
    """Match detections to true sources one to one within ``radius``.

    Parameters
    ----------
    true_xy : array_like, (n_true, 2)
        True centres (x, y), pixels; finite.
    det_xy : array_like, (n_det, 2)
        Detected centres (x, y), pixels; finite.
    radius : float
        Largest allowed centre distance of a matched pair, pixels (> 0);
        a pair exactly at ``radius`` is allowed.

    Returns
    -------
    Match

    Raises
    ------
    ConfigError
        A catalogue of the wrong shape or with non-finite centres, or a radius
        that is not a positive number.
    """
    t = _points(true_xy, "true centres")
    d = _points(det_xy, "detected centres")
    if not (isinstance(radius, (int, float, np.floating, np.integer)) and np.isfinite(radius)
            and radius > 0) or isinstance(radius, bool):
        raise ConfigError(f"radius must be a positive number of pixels, got {radius!r}",
                          value=radius, allowed="> 0")
    n_t, n_d = len(t), len(d)
    detection_of = np.full(n_t, -1, dtype=np.int64)
    distance = np.full(n_t, np.nan)
    if n_t and n_d:
        dist = np.hypot(t[:, None, 0] - d[None, :, 0], t[:, None, 1] - d[None, :, 1])
        allowed = dist <= radius
        rows, cols = linear_sum_assignment(np.where(allowed, dist, FORBIDDEN + dist))
        keep = allowed[rows, cols]
        detection_of[rows[keep]] = cols[keep]
        distance[rows[keep]] = dist[rows[keep], cols[keep]]
    else:
        allowed = np.zeros((n_t, n_d), dtype=bool)
    taken = np.zeros(n_d, dtype=bool)
    taken[detection_of[detection_of >= 0]] = True
    # A missed source is unrecognised when a detection within the radius went
    # to another source.
    unrecognised = (detection_of < 0) & (allowed & taken[None, :]).any(axis=1)
    return Match(detection_of=detection_of, distance=distance, spurious=~taken,
                 unrecognised=unrecognised)


def near_any(xy, others, *, radius: float) -> np.ndarray:
    """Which points of ``xy`` (n, 2) lie within ``radius`` pixels of a point of ``others`` (m, 2)."""
    a, b = _points(xy, "points"), _points(others, "other points")
    if not len(a) or not len(b):
        return np.zeros(len(a), dtype=bool)
    dist = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    return (dist <= radius).any(axis=1)


def psf_fwhm(psf) -> np.ndarray:
    """FWHM of PSF images from their area above half maximum, pixels.

    Parameters
    ----------
    psf : array_like, (..., P, P)
        PSF images (any normalisation).

    Returns
    -------
    ndarray, (...)
        ``2 sqrt(A / pi)`` with ``A`` the number of pixels at or above half the
        peak: the diameter of the disc of that area. Counting whole pixels
        overestimates it slightly (by 10% for a Gaussian of 2 pixels sigma,
        4.7 px FWHM): a tolerance, not a bias that matters for a match radius.
    """
    p = np.asarray(psf, dtype=np.float64)
    peak = p.max(axis=(-2, -1), keepdims=True)
    area = np.count_nonzero(p >= 0.5 * peak, axis=(-2, -1))
    return 2.0 * np.sqrt(area / np.pi)
