"""The RAMP workflow of the challenge: train and run a submission's ``Deblender``.

A submission is a folder with ``deblender.py`` defining a class ``Deblender``
with ``fit(X, y)`` and ``predict(X)``:

* ``X`` is a :class:`~deblendkit.data.BlendSet` (blend images, PSFs, noise
  sigma, galaxy centres, number of galaxies, bands, pixel scale; no truth);
* ``y`` is the isolated images, ndarray (n, K, C, H, W) float32, ADU;
* ``predict`` returns an array of that shape (zeros in empty slots).

Why not rampwf's ``Estimator`` workflow: it passes X through scikit-learn's
``_safe_indexing`` and, since scikit-learn 1.6, needs submitted objects to
inherit ``BaseEstimator`` (estimator tags). This workflow indexes X itself
(lazily, no copy of the data set per fold), so a ``Deblender`` is a plain class.

Failures are reported as one :class:`~deblendkit.errors.SubmissionError`
naming the submission, the step (fit / predict) and what was expected; the
original exception is chained.

Training-set predictions: rampwf asks for predictions on the whole training
set of each fold to print a "train" score. Deblenders that fit each blend
(forward models) would spend most of a run there, so :meth:`test_submission`
predicts the fold's validation blends and a fixed subsample of at most
:data:`TRAIN_SCORE_BLENDS` training blends (NaN rows elsewhere, which the
score types skip). Set the environment variable ``DEBLEND_TRAIN_SCORE_BLENDS``
to change it (``all`` for every blend).
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np
from rampwf.utils.importing import import_module_from_source

from .errors import DeblendKitError, PredictionError, SubmissionError
from .prediction import check_predictions

__all__ = ["DeblenderWorkflow", "TRAIN_SCORE_BLENDS", "train_score_rows"]

log = logging.getLogger(__name__)

#: Training blends predicted per fold for the "train" score (see module doc).
TRAIN_SCORE_BLENDS = 128


def _n_train_score() -> int | None:
    raw = os.environ.get("DEBLEND_TRAIN_SCORE_BLENDS", str(TRAIN_SCORE_BLENDS)).strip().lower()
    if raw == "all":
        return None
    try:
        n = int(raw)
    except ValueError:
        raise SubmissionError(
            f"DEBLEND_TRAIN_SCORE_BLENDS must be an integer >= 0 or 'all', got {raw!r}"
        ) from None
    if n < 0:
        raise SubmissionError(f"DEBLEND_TRAIN_SCORE_BLENDS must be >= 0 or 'all', got {n}")
    return n


def train_score_rows(train_is, valid_is, n_train_score: int | None) -> np.ndarray:
    """Rows to predict in a fold: all validation rows + a fixed subsample of training rows."""
    train_is = np.asarray(train_is)
    valid_is = np.asarray(valid_is)
    if n_train_score is None or n_train_score >= len(train_is):
        sub = train_is
    else:
        # Deterministic, spread over the fold: evenly spaced picks of the sorted training rows.
        picks = np.linspace(0, len(train_is) - 1, n_train_score).round().astype(int)
        sub = np.sort(train_is)[picks]
    return np.union1d(sub, valid_is)


class DeblenderWorkflow:
    """rampwf workflow with one element, ``deblender.py``.

    Parameters
    ----------
    filename : str
        Submission file (``deblender.py``).
    class_name : str
        Class to instantiate (``Deblender``).
    """

    def __init__(self, *, filename: str = "deblender.py", class_name: str = "Deblender"):
        self.filename = filename
        self.class_name = class_name
        self.element_names = [os.path.splitext(filename)[0]]

    # -- helpers -------------------------------------------------------------
    def _load(self, module_path: str):
        name = os.path.basename(os.path.normpath(module_path))
        path = os.path.join(module_path, self.filename)
        if not os.path.isfile(path):
            raise SubmissionError(f"submission {name!r}: no file {self.filename} in {module_path}")
        try:
            module = import_module_from_source(path, self.element_names[0], sanitize=True)
        except Exception as exc:
            raise SubmissionError(
                f"submission {name!r} failed on import of {self.filename}: {type(exc).__name__}: {exc}"
            ) from exc
        cls = getattr(module, self.class_name, None)
        if cls is None:
            raise SubmissionError(
                f"submission {name!r}: {self.filename} defines no class {self.class_name!r}; "
                f"expected a class with fit(X, y) and predict(X)"
            )
        return name, cls

    # -- rampwf API ----------------------------------------------------------
    def train_submission(self, module_path, X, y, train_is=None):
        """Instantiate the submission's Deblender and fit it on ``X[train_is], y[train_is]``."""
        name, cls = self._load(module_path)
        if train_is is not None:
            train_is = np.asarray(train_is)
            X, y = X[train_is], y[train_is]
        try:
            model = cls()
            t0 = time.perf_counter()
            fitted = model.fit(X, y)
            log.info("submission %s: fit on %d blends in %.1f s", name, len(X), time.perf_counter() - t0)
        except DeblendKitError:
            raise
        except Exception as exc:
            raise SubmissionError(
                f"submission {name!r} failed in fit on {len(X)} blends: {type(exc).__name__}: {exc}"
            ) from exc
        model = fitted if fitted is not None and hasattr(fitted, "predict") else model
        model._deblendkit_name = name  # for messages in predict
        return model

    def test_submission(self, trained_model, X, fold=None):
        """Predict isolated images for ``X`` (for a CV fold: validation rows + a training subsample).

        Returns
        -------
        ndarray (n, K, C, H, W) float32; rows not predicted are NaN.
        """
        if fold is None:
            return self.predict(trained_model, X)
        train_is, valid_is = fold
        rows = train_score_rows(train_is, valid_is, _n_train_score())
        if len(rows) == len(X):
            return self.predict(trained_model, X)
        part = self.predict(trained_model, X[rows])
        out = np.full((len(X),) + part.shape[1:], np.nan, dtype=np.float32)
        out[rows] = part
        return out

    def predict(self, trained_model, X) -> np.ndarray:
        """Run ``trained_model.predict(X)`` and check its output against the contract."""
        name = getattr(trained_model, "_deblendkit_name", type(trained_model).__name__)
        expected = (len(X), X.max_galaxies, X.n_bands, X.stamp_size, X.stamp_size)
        try:
            y_pred = trained_model.predict(X)
        except DeblendKitError:
            raise
        except Exception as exc:
            raise SubmissionError(
                f"submission {name!r} failed in predict on {len(X)} blends: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            y_pred = check_predictions(
                y_pred, n_blends=expected[0], max_galaxies=expected[1], n_bands=expected[2],
                stamp_size=expected[3],
            )
        except PredictionError as exc:
            raise SubmissionError(f"submission {name!r}, predict: {exc}") from exc
        return np.asarray(y_pred, dtype=np.float32)
