"""rampwf score types of the blind track (the primary one first in :func:`make_blind_score_types`).

Each is called on two :class:`~deblendkit.ramp.blind_prediction.BlindPredictions`
(truth, catalogues) and reads one key of
:func:`deblendkit.scoring.blind_metrics.blind_summary`; rows not predicted
(training blends a fold did not predict) are left out. rampwf calls every
score type on the same pair of predictions in turn, so the last evaluation is
kept (keyed on the identity of the two arrays, which it holds) and reused.
"""
from __future__ import annotations

from collections.abc import Sequence

from rampwf.score_types.base import BaseScoreType

from deblendkit.ramp.blind_prediction import predicted_rows
from deblendkit.scoring.blind_metrics import blind_evaluate, blind_summary

__all__ = ["BlindScore", "make_blind_score_types"]

#: The last (truth array, prediction array, bands, evaluation): one entry, references held.
_LAST: list = []


def _evaluate(y_true, y_pred, bands):
    """:func:`blind_evaluate` with the flux metrics, reusing the last result for the same arrays."""
    if _LAST and _LAST[0][0] is y_true and _LAST[0][1] is y_pred and _LAST[0][2] == bands:
        return _LAST[0][3]
    valid = predicted_rows(y_pred)
    result = blind_evaluate(y_true[valid], y_pred[valid], bands=bands or None, metrics=("flux",))
    _LAST[:] = [(y_true, y_pred, bands, result)]
    return result


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

    def score_function(self, ground_truths, predictions):
        """Score the predicted rows (:func:`~deblendkit.ramp.blind_prediction.predicted_rows`)."""
        return self(ground_truths.y_pred, predictions.y_pred)

    def __call__(self, y_true, y_pred) -> float:
        """The score of truth and prediction arrays (rows all predicted)."""
        result = _evaluate(y_true, y_pred, self.bands)
        return float(blind_summary(result, bands=self.bands or None)[self.key])


def make_blind_score_types(bands: Sequence[str], *, ref_band: str = "r") -> list[BaseScoreType]:
    """``blind`` (primary), ``recall``, ``precision``, ``f1``, ``unrecognised``,
    ``deblend_matched`` and the r-band flux scatter on matched sources.
    """
    band = ref_band if ref_band in bands else tuple(bands)[-1]
    return [BlindScore("blind", bands=bands), BlindScore("recall", bands=bands),
            BlindScore("precision", bands=bands), BlindScore("f1", bands=bands),
            BlindScore("unrecognised", bands=bands, lower_is_better=True),
            BlindScore("deblend_matched", bands=bands),
            BlindScore(f"flux_scatter_{band}", bands=bands, lower_is_better=True)]
