"""RAMP score types: the primary deblending score and secondary scores beside it.

``problem.py`` does ``score_types = make_score_types(bands)``. Each score type
is called by rampwf as ``score_type(y_true, y_pred)`` on the ``y_pred`` arrays
of two :mod:`deblendkit.ramp.prediction` instances, shape ``(n_blends,
max_galaxies, n_bands, stamp_size, stamp_size)``, and computes only the metric
groups it needs through :mod:`deblendkit.scoring.metrics` (the primary one never runs
the adaptive moments). See :mod:`deblendkit.scoring.metrics` for the definitions.
The SSIM score is averaged over the galaxy's footprint
(:func:`deblendkit.scoring.shapes.ssim`), so an all-zero prediction scores ~0.

rampwf needs a direction for every score, so the signed flux bias is reported
as its absolute value (``abs_flux_bias_r``); the signed value is in
:func:`deblendkit.scoring.table.summarize` (``flux_bias_r``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from rampwf.score_types.base import BaseScoreType

from deblendkit.errors import ConfigError
from deblendkit.scoring.metrics import COLOUR_PAIRS, deblend_scores
from deblendkit.scoring.table import galaxy_table, summarize

__all__ = [
    "DeblendScore",
    "FluxScatter",
    "AbsFluxBias",
    "CatastrophicFluxFraction",
    "ColourScatter",
    "CosineSimilarity",
    "EllipticityResidual",
    "SSIM",
    "make_score_types",
]


def _bands(bands: Sequence[str]) -> tuple[str, ...]:
    if isinstance(bands, str) or not all(isinstance(b, str) for b in bands) or not len(bands):
        raise ConfigError(f"bands must be a non-empty sequence of band names, got {bands!r}")
    return tuple(bands)


def _need(bands: tuple[str, ...], band: str, what: str) -> str:
    if band not in bands:
        raise ConfigError(f"{what} needs band {band!r}, which is not among the bands {list(bands)}")
    return band


class _ScoreType(BaseScoreType):
    """Base of the kit's score types: blends that were not predicted are skipped.

    In a CV fold the workflow predicts the validation blends and only a
    subsample of the training blends (see :mod:`deblendkit.ramp.workflow`); the other
    rows of ``y_pred`` are NaN and ``valid_indexes`` marks them. Those rows are
    left out of the score, so the "train" score is the score on that subsample.

    File-backed predictions (``DEBLEND_OUT_OF_CORE=1``, see
    :mod:`deblendkit.ramp.prediction`) are scored batch by batch
    (:meth:`score_batches` of their ``scored_batches``): memory does not grow
    with the number of blends, and the score is the same, bit for bit.
    """

    def score_function(self, ground_truths, predictions):
        if getattr(predictions, "is_file_backed", False):
            return self.score_batches(predictions.scored_batches(ground_truths))
        y_true = ground_truths.y_pred
        y_pred = predictions.y_pred
        self.check_y_pred_dimensions(y_true, y_pred)
        valid = np.asarray(predictions.valid_indexes)
        if not valid.all():
            y_true, y_pred = y_true[valid], y_pred[valid]
        return self.__call__(y_true, y_pred)

    def score_batches(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
        """The score of the concatenation of (truth, prediction) batches, (n_i, K, C, H, W) each."""
        raise NotImplementedError


class _TableScore(_ScoreType):
    """A score read from :func:`summarize` of a partial :func:`galaxy_table`."""

    groups: tuple[str, ...] = ()
    key: str = ""
    ref_band: str = "r"

    def _summary(self, y_true, y_pred) -> dict[str, float]:
        table = galaxy_table(y_true, y_pred, bands=self.bands, metrics=self.groups, ref_band=self.ref_band)
        return summarize(table, bands=self.bands)

    def _value(self, summary: dict[str, float]) -> float:
        return float(summary[self.key])

    def __call__(self, y_true, y_pred) -> float:
        return self._value(self._summary(y_true, y_pred))

    def score_batches(self, pairs) -> float:
        """:func:`summarize` of the batches' galaxy tables, concatenated."""
        tables = [galaxy_table(t, p, bands=self.bands, metrics=self.groups, ref_band=self.ref_band)
                  for t, p in pairs]
        return self._value(summarize(pd.concat(tables, ignore_index=True), bands=self.bands))


class DeblendScore(_ScoreType):
    """Primary score: mean over real galaxies of ``1 - min(1, ||y_hat - y|| / ||y||)``.

    Higher is better, in [0, 1]; 1 is perfect, 0 is all-zero predictions or
    worse. NaN when no slot holds a galaxy.
    """

    is_lower_the_better = False
    minimum = 0.0
    maximum = 1.0

    def __init__(self, bands: Sequence[str] | None = None, *, name: str = "deblend", precision: int = 4):
        self.bands = None if bands is None else _bands(bands)
        self.name = name
        self.precision = precision

    def __call__(self, y_true, y_pred) -> float:
        """Mean primary score of ``y_pred`` against ``y_true``, (n, K, C, H, W) arrays."""
        _, score = deblend_scores(y_true, y_pred)
        return float(np.mean(score)) if len(score) else math.nan

    def score_batches(self, pairs) -> float:
        """Mean over the batches' galaxies (the same array as one call's, so the same mean)."""
        score = np.concatenate([deblend_scores(t, p)[1] for t, p in pairs])
        return float(np.mean(score)) if len(score) else math.nan


class _BandScore(_TableScore):
    """A table score of one band: ``key`` is ``f"{stat}_{band}"``, the name ``f"{label}_{band}"``."""

    stat = ""
    label = ""

    def __init__(self, bands: Sequence[str], *, band: str = "r", name: str | None = None, precision: int = 4):
        self.bands = _bands(bands)
        self.band = _need(self.bands, band, type(self).__name__)
        self.key = f"{self.stat}_{band}"
        self.name = name or f"{self.label or self.stat}_{band}"
        self.precision = precision


class FluxScatter(_BandScore):
    """Robust scatter (1.4826 MAD) of the relative flux error dF/F in one band; lower is better."""

    is_lower_the_better = True
    minimum = 0.0
    maximum = float("inf")
    groups = ("flux",)
    stat = "flux_scatter"


class AbsFluxBias(_BandScore):
    """Absolute value of the median relative flux error in one band; lower is better."""

    is_lower_the_better = True
    minimum = 0.0
    maximum = float("inf")
    groups = ("flux",)
    stat = "flux_bias"
    label = "abs_flux_bias"

    def _value(self, summary: dict[str, float]) -> float:
        """``|median dF/F|`` of the band."""
        return abs(super()._value(summary))


class CatastrophicFluxFraction(_BandScore):
    """Fraction of galaxies with ``|dF/F| > 0.2`` in one band; lower is better, in [0, 1]."""

    is_lower_the_better = True
    minimum = 0.0
    maximum = 1.0
    groups = ("flux",)
    stat = "flux_catastrophic"


class ColourScatter(_TableScore):
    """Robust scatter of a colour error, magnitudes (undefined colours left out); lower is better."""

    is_lower_the_better = True
    minimum = 0.0
    maximum = float("inf")
    groups = ("colour",)

    def __init__(self, bands: Sequence[str], *, colour: tuple[str, str] = ("g", "r"),
                 name: str | None = None, precision: int = 4):
        self.bands = _bands(bands)
        colour = tuple(colour)
        if colour not in COLOUR_PAIRS:
            raise ConfigError(f"colour must be one of {list(COLOUR_PAIRS)}, got {colour!r}")
        for b in colour:
            _need(self.bands, b, "ColourScatter")
        self.colour = colour
        self.key = f"colour_scatter_{colour[0]}_{colour[1]}"
        self.name = name or self.key
        self.precision = precision


class CosineSimilarity(_TableScore):
    """Mean over galaxies of the per-band cosine similarity averaged over bands; higher is better."""

    is_lower_the_better = False
    minimum = -1.0
    maximum = 1.0
    groups = ("cosine",)
    key = "cosine"

    def __init__(self, bands: Sequence[str], *, name: str = "cosine", precision: int = 4):
        self.bands = _bands(bands)
        self.name = name
        self.precision = precision


class EllipticityResidual(_TableScore):
    """Median ``|e_pred - e_isolated|`` from adaptive moments of the reference band; lower is better.

    Failed moments on the prediction count as 1, so the range is [0, 2].
    """

    is_lower_the_better = True
    minimum = 0.0
    maximum = 2.0
    groups = ("shape",)
    key = "de_median"

    def __init__(self, bands: Sequence[str], *, ref_band: str = "r", name: str = "de_median",
                 precision: int = 4):
        self.bands = _bands(bands)
        self.ref_band = _need(self.bands, ref_band, "EllipticityResidual")
        self.name = name
        self.precision = precision


class SSIM(_TableScore):
    """Mean structural similarity of the reference band on the galaxy's footprint; higher is better.

    Images scaled to their maximum; an all-zero prediction scores ~0 (at most 0.038), the truth 1.
    """

    is_lower_the_better = False
    minimum = -1.0
    maximum = 1.0
    groups = ("ssim",)
    key = "ssim"

    def __init__(self, bands: Sequence[str], *, ref_band: str = "r", name: str = "ssim", precision: int = 4):
        self.bands = _bands(bands)
        self.ref_band = _need(self.bands, ref_band, "SSIM")
        self.name = name
        self.precision = precision


def make_score_types(bands: Sequence[str], *, ref_band: str = "r") -> list[BaseScoreType]:
    """The problem's score types, primary (``deblend``) first.

    Secondary scores that need a band absent from ``bands`` are left out (for
    a single-band survey only ``deblend`` and ``cosine`` remain unless
    ``ref_band`` names that band).

    Parameters
    ----------
    bands : sequence of str
        Band names in array order.
    ref_band : str
        Band of the flux, shape and SSIM scores.
    """
    bands = _bands(bands)
    out: list[BaseScoreType] = [DeblendScore(bands)]
    if ref_band in bands:
        out += [
            FluxScatter(bands, band=ref_band),
            AbsFluxBias(bands, band=ref_band),
            CatastrophicFluxFraction(bands, band=ref_band),
        ]
    if "g" in bands and "r" in bands:
        out.append(ColourScatter(bands, colour=("g", "r")))
    out.append(CosineSimilarity(bands))
    if ref_band in bands:
        out += [EllipticityResidual(bands, ref_band=ref_band), SSIM(bands, ref_band=ref_band)]
    return out
