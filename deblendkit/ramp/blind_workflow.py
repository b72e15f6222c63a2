"""rampwf workflow of the blind track: one element, ``detector.py``, class ``Detector``.

``Detector().fit(X, y)`` gets a :class:`~deblendkit.ramp.blind_problem.BlindSet`
of training blends and their truth array (true centres, isolated images,
counts, magnitudes, blendedness: the fields of
:func:`~deblendkit.ramp.blind_prediction.truth_dtype`); ``predict(X)`` gets a
BlindSet alone and returns ``(centers, images)`` of shapes ``(n, K_out, 2)``
and ``(n, K_out, C, S, S)`` (NaN centres mark empty slots; see
:mod:`deblendkit.ramp.blind_prediction`), checked by
:func:`~deblendkit.ramp.blind_prediction.check_output`.

In a CV fold only the validation blends and the first :data:`TRAIN_SCORE_BLENDS`
training blends of the fold (evenly spaced) are predicted, as in the first
track; the other rows are marked not predicted
(:func:`~deblendkit.ramp.blind_prediction.mark_not_predicted`) and left out of
the training score.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np
from rampwf.utils.importing import import_module_from_source

from deblendkit.errors import DeblendKitError, SubmissionError
from deblendkit.ramp.blind_prediction import check_output, not_predicted

__all__ = ["BlindWorkflow", "TRAIN_SCORE_BLENDS"]

log = logging.getLogger(__name__)

#: Training blends of a fold predicted for the training score.
TRAIN_SCORE_BLENDS = 50


class BlindWorkflow:
    """Load ``detector.py``, fit ``Detector`` and check its catalogues."""

    def __init__(self, *, filename: str = "detector.py", class_name: str = "Detector") -> None:
        self.filename = filename
        self.class_name = class_name
        self.element_names = [os.path.splitext(filename)[0]]

    def _load(self, module_path: str):
        name = os.path.basename(os.path.normpath(module_path))
        path = os.path.join(module_path, self.filename)
        if not os.path.isfile(path):
            raise SubmissionError(f"submission {name!r}: no file {self.filename} in {module_path}",
                                  value=path)
        module = import_module_from_source(path, self.element_names[0], sanitize=True)
        cls = getattr(module, self.class_name, None)
        if not isinstance(cls, type) or not all(callable(getattr(cls, m, None)) for m in ("fit", "predict")):
            raise SubmissionError(f"submission {name!r}: {self.filename} defines no class "
                                  f"{self.class_name!r} with fit(X, y) and predict(X)", value=name)
        return name, cls

    def train_submission(self, module_path, X, y, train_is=None):
        """Fit the submission's ``Detector`` on ``X[train_is], y[train_is]``."""
        name, cls = self._load(module_path)
        if train_is is not None:
            train_is = np.asarray(train_is)
            X, y = X[train_is], y[train_is]
        model = cls()
        t0 = time.perf_counter()
        try:
            fitted = model.fit(X, y)
        except DeblendKitError:
            raise
        except Exception as exc:
            raise SubmissionError(f"submission {name!r} failed in fit on {len(X)} blends: "
                                  f"{type(exc).__name__}: {exc}") from exc
        log.info("submission %s: fit on %d blends in %.1f s", name, len(X), time.perf_counter() - t0)
        return fitted if fitted is not None and hasattr(fitted, "predict") else model

    def predict(self, trained_model, X) -> np.ndarray:
        """Catalogues of ``X`` as a structured array (checked)."""
        try:
            out = trained_model.predict(X)
        except DeblendKitError:
            raise
        except Exception as exc:
            raise SubmissionError(f"submission failed in predict on {len(X)} blends: "
                                  f"{type(exc).__name__}: {exc}") from exc
        return check_output(out, n_blends=len(X), k_out=X.k_out, n_bands=X.n_bands,
                            stamp_size=X.stamp_size)

    def test_submission(self, trained_model, X, fold=None):
        """Predict ``X``; for a CV fold, the validation rows and a training subsample only."""
        if fold is None:
            return self.predict(trained_model, X)
        train_is, valid_is = (np.asarray(f) for f in fold)
        if len(train_is) > TRAIN_SCORE_BLENDS:
            picks = np.linspace(0, len(train_is) - 1, TRAIN_SCORE_BLENDS).round().astype(int)
            train_is = np.sort(train_is)[picks]
        rows = np.union1d(train_is, valid_is)
        part = self.predict(trained_model, X[rows])
        out = not_predicted(len(X), k_out=X.k_out, n_bands=X.n_bands, stamp_size=X.stamp_size)
        out[rows] = part
        return out
