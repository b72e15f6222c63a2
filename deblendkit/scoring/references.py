"""Reference predictions of a data file and their scores: what a score means.

A score of 0.87 means little alone. Three predictions computed from a data
file itself bracket every deblender; :func:`reference_scores` scores them with
every metric (:func:`deblendkit.scoring.table.summarize`), batch by batch:

``zeros``
    Every galaxy predicted empty. ``deblend`` is exactly 0 (NRE = 1).
``oracle apportioning``
    The noisy blend split pixel by pixel with the *true* isolated images as
    weights, ``y_hat_k = y_k / sum_j y_j x blend`` (0 where ``sum_j y_j`` is
    0): what flux apportioning (the SDSS deblender's last step) reaches with
    perfect templates. Every pixel's noise goes to the galaxies there.
``known morphology``
    Every galaxy's true noiseless, PSF-convolved shape known; only its flux
    per band fitted, by linear least squares of the noisy blend on the true
    isolated images of that band, ``y_hat_k = a_k y_k`` with ``a`` minimising
    ``||blend - sum_k a_k y_k||^2`` (unweighted: the background noise is the
    same in every pixel of a band). Close to the noise-limited ceiling.

On noiseless blends (``blend = sum_k y_k``) the last two are exact and score 1.
Measured on the first 200 blends of the default ``data/test.h5``: zeros 0,
oracle apportioning 0.708, known morphology 0.972 (``deblend``).
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from deblendkit._checks import positive_int
from deblendkit.scoring.out_of_core import DEFAULT_BATCH_SIZE, rows_scored
from deblendkit.scoring.table import galaxy_table_batch, summarize
from deblendkit.storage import H5Source, validate_file

__all__ = [
    "REFERENCES",
    "ReferenceResult",
    "ReferenceScores",
    "headline_scores",
    "known_morphology",
    "oracle_apportioning",
    "reference_predictions",
    "reference_scores",
    "zeros_prediction",
]

log = logging.getLogger(__name__)


def zeros_prediction(blend: np.ndarray, isolated: np.ndarray) -> np.ndarray:
    """All-zero predictions, float32, shape of ``isolated``."""
    return np.zeros(isolated.shape, np.float32)


def oracle_apportioning(blend: np.ndarray, isolated: np.ndarray) -> np.ndarray:
    """The blend split with the true isolated images as weights.

    Parameters
    ----------
    blend : ndarray, (n, C, H, W)
        Observed (noisy) scenes, ADU per pixel.
    isolated : ndarray, (n, K, C, H, W)
        True isolated galaxies, ADU per pixel (zeros in empty slots).

    Returns
    -------
    ndarray, (n, K, C, H, W) float32
        ``isolated / isolated.sum(axis=1) * blend``, 0 where the sum is 0.
    """
    iso = np.asarray(isolated, dtype=np.float64)
    total = iso.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(total != 0, iso / np.where(total != 0, total, 1.0), 0.0)
    return (weight * np.asarray(blend, dtype=np.float64)[:, None]).astype(np.float32)


def known_morphology(blend: np.ndarray, isolated: np.ndarray) -> np.ndarray:
    """The true isolated images, each scaled by the least-squares fit of its flux to the blend.

    Per blend and band, ``a = argmin ||blend - sum_k a_k y_k||^2`` over the
    slots' true images ``y_k`` (empty slots get 0; degenerate sets of images
    the minimum-norm solution).

    Parameters
    ----------
    blend : ndarray, (n, C, H, W)
        Observed (noisy) scenes, ADU per pixel.
    isolated : ndarray, (n, K, C, H, W)
        True isolated galaxies, ADU per pixel.

    Returns
    -------
    ndarray, (n, K, C, H, W) float32
        ``a_k y_k``.
    """
    iso = np.asarray(isolated, dtype=np.float64)
    n, k, c = iso.shape[:3]
    obs = np.asarray(blend, dtype=np.float64).reshape(n, c, -1)
    amp = np.zeros((n, k, c))
    for i in range(n):
        for b in range(c):
            design = iso[i, :, b].reshape(k, -1).T  # (pixels, K)
            amp[i, :, b] = np.linalg.lstsq(design, obs[i, b], rcond=None)[0]
    return (amp[..., None, None] * iso).astype(np.float32)


REFERENCES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "zeros": zeros_prediction,
    "oracle apportioning": oracle_apportioning,
    "known morphology": known_morphology,
}
"""The reference predictions by name, in the order of their rows: ``f(blend, isolated) -> y_pred``."""


def reference_predictions(blend: np.ndarray, isolated: np.ndarray) -> dict[str, np.ndarray]:
    """Every reference prediction of these blends, by name (see :data:`REFERENCES`).

    ``blend``: (n, C, H, W); ``isolated``: (n, K, C, H, W), ADU per pixel.
    """
    return {name: make(blend, isolated) for name, make in REFERENCES.items()}


def headline_scores(summary: dict[str, float], *, ref_band: str = "r") -> dict[str, float]:
    """The values of the problem's score types (:mod:`deblendkit.ramp.score_types`) in a summary.

    Keys, in the order of the score types: ``deblend``, ``flux_scatter_<ref>``,
    ``abs_flux_bias_<ref>``, ``flux_catastrophic_<ref>``, ``colour_scatter_g_r``,
    ``cosine``, ``de_median``, ``ssim``; a key whose value is NaN (band absent, metric not
    computed) is left out.
    """
    out = {}
    for name, key in _headline_keys(ref_band).items():
        value = float(summary.get(key, math.nan))
        if math.isfinite(value):
            out[name] = abs(value) if name.startswith("abs_") else value
    return out


def _headline_keys(ref_band: str) -> dict[str, str]:
    """Score-type name -> summary key, in the order of the score types."""
    return {
        "deblend": "deblend",
        f"flux_scatter_{ref_band}": f"flux_scatter_{ref_band}",
        f"abs_flux_bias_{ref_band}": f"flux_bias_{ref_band}",
        f"flux_catastrophic_{ref_band}": f"flux_catastrophic_{ref_band}",
        "colour_scatter_g_r": "colour_scatter_g_r",
        "cosine": "cosine",
        "de_median": "de_median",
        "ssim": "ssim",
    }


@dataclass(frozen=True)
class ReferenceResult:
    """The scores of one reference prediction on one data file.

    Attributes
    ----------
    name : str
        A key of :data:`REFERENCES` (``"zeros"``, ``"oracle apportioning"``,
        ``"known morphology"``).
    scores : dict of str to float
        The problem's score types by name (:func:`headline_scores`).
    summary : dict of str to float
        Every aggregate of :func:`~deblendkit.scoring.table.summarize`.
    table : pandas.DataFrame
        One row per galaxy (:func:`~deblendkit.scoring.table.galaxy_table_batch`).
    """

    name: str
    scores: dict = field(repr=True)
    summary: dict = field(repr=False)
    table: pd.DataFrame = field(repr=False)

    @property
    def score(self) -> float:
        """The primary score (mean ``deblend``)."""
        return float(self.summary["deblend"])


@dataclass(frozen=True)
class ReferenceScores:
    """The reference rows of a data file.

    Attributes
    ----------
    path : str
        The data file.
    n_blends : int
        Blends scored (the first ``n_blends`` of the file).
    rows : tuple of ReferenceResult
        One per reference, in the order of :data:`REFERENCES`.
    seconds : float
        Wall time.
    ref_band : str
        Band of the flux, shape and SSIM scores.
    """

    path: str
    n_blends: int
    rows: tuple
    seconds: float = math.nan
    ref_band: str = "r"

    def __getitem__(self, name: str) -> ReferenceResult:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no reference {name!r}; the references are {[r.name for r in self.rows]}")

    def frame(self) -> pd.DataFrame:
        """The headline scores, one row per reference (index: the name), one column per score."""
        frame = pd.DataFrame([r.scores for r in self.rows], index=[r.name for r in self.rows])
        return frame[[k for k in _headline_keys(self.ref_band) if k in frame.columns]]


def reference_scores(
    path: str | os.PathLike,
    *,
    max_blends: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    metrics: Collection[str] | None = None,
    ref_band: str = "r",
) -> ReferenceScores:
    """Score the reference predictions of a data file with every metric, one batch in memory at a time.

    Parameters
    ----------
    path : path
        A data file (``data/README.md``) with its ``blend`` and ``isolated`` datasets.
    max_blends : int, optional
        Score only the first ``max_blends`` blends (default all).
    batch_size : int
        Blends per batch.
    metrics : collection of str, optional
        Metric groups (default all; ``shape`` runs the adaptive moments, the slow part).
    ref_band : str
        Band of the flux, shape and SSIM scores.

    Returns
    -------
    ReferenceScores

    Raises
    ------
    DataFileError
        The file is missing or corrupt.
    ConfigError
        ``max_blends`` or ``batch_size`` is not a positive integer.
    """
    t0 = time.perf_counter()
    batch_size = positive_int("batch_size", batch_size, what="an integer >= 1")
    if max_blends is not None:
        max_blends = positive_int("max_blends", max_blends, what="an integer >= 1")
    layout = validate_file(path)
    n = rows_scored(layout.n_blends, max_blends)
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in REFERENCES}
    source = H5Source(path)
    try:
        blend, iso = source.array("blend"), source.array("isolated")
        for a in range(0, n, batch_size):
            b = min(n, a + batch_size)
            y_true, obs = iso[a:b], blend[a:b]
            for name, y_pred in reference_predictions(obs, y_true).items():
                parts[name].append(galaxy_table_batch(y_true, y_pred, bands=layout.bands, blend_offset=a,
                                                      metrics=metrics, ref_band=ref_band))
    finally:
        source.close()
    rows = []
    for name, tables in parts.items():
        table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
        summary = summarize(table, bands=layout.bands) if len(table.columns) else {"deblend": math.nan}
        rows.append(ReferenceResult(name=name, scores=headline_scores(summary, ref_band=ref_band),
                                    summary=summary, table=table))
    seconds = time.perf_counter() - t0
    log.info("reference scores of %s (%d blends) in %.1f s", path, n, seconds)
    return ReferenceScores(path=os.fspath(path), n_blends=n, rows=tuple(rows), seconds=seconds,
                           ref_band=ref_band)
