"""rampwf score types of the blind track (the primary one first in :func:`make_blind_score_types`).

Each is called on two :class:`~deblendkit.ramp.blind_prediction.BlindPredictions`
(truth, catalogues) and reads one key of
:func:`deblendkit.scoring.blind_metrics.blind_summary`; rows not predicted
(training blends a fold did not predict) are left out.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rampwf.score_types.base import BaseScoreType

from deblendkit.scoring.blind_metrics import blind_evaluate, blind_summary

__all__ = ["BlindScore", "make_blind_score_types"]


class BlindScore(BaseScoreType):
    """One key of the blind summary as a rampwf score.

    Parameters
    ----------
    key : str
        Key of :func:`~deblendkit.scoring.blind_metrics.blind_summary`.
    bands : sequence of str
        Band names of the data.
    lower_is_better : bool
    name : str, optional
        Shown name (default ``key``).
    """

    def __init__(self, key: str = "blind", *, bands: Sequence[str] = (), lower_is_better: bool = False,
                 name: str | None = None, precision: int = 4) -> None:
        self.key = key
        self.bands = tuple(bands)
        self.name = name or key
        self.precision = precision
        self.is_lower_the_better = lower_is_better
        self.minimum = 0.0
        self.maximum = float("inf") if lower_is_better else 1.0
        self._metrics = ("flux",) if key.startswith("flux_") else ()

    def score_function(self, ground_truths, predictions):
        valid = np.asarray(predictions.valid_indexes)
        return self(ground_truths.y_pred[valid], predictions.y_pred[valid])

    def __call__(self, y_true, y_pred) -> float:
        result = blind_evaluate(y_true, y_pred, bands=self.bands or None, metrics=self._metrics)
        return float(blind_summary(result, bands=self.bands or None)[self.key])


def make_blind_score_types(bands: Sequence[str], *, ref_band: str = "r") -> list[BaseScoreType]:
    """``blind`` (primary), ``recall``, ``precision``, ``f1``, ``unrecognised``,
    ``deblend_matched`` and the r-band flux scatter on matched sources."""
    band = ref_band if ref_band in bands else tuple(bands)[-1]
    return [BlindScore("blind", bands=bands), BlindScore("recall", bands=bands),
            BlindScore("precision", bands=bands), BlindScore("f1", bands=bands),
            BlindScore("unrecognised", bands=bands, lower_is_better=True),
            BlindScore("deblend_matched", bands=bands),
            BlindScore(f"flux_scatter_{band}", bands=bands, lower_is_better=True)]
