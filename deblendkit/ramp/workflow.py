"""The RAMP workflow of the challenge: train and run a submission's ``Deblender``.

A submission is a folder with ``deblender.py`` defining a class ``Deblender``
with ``fit(X, y)`` and ``predict(X)``:

* ``X`` is a :class:`~deblendkit.deblend.blendset.BlendSet` (blend images, PSFs, noise
  sigma, galaxy centres, number of galaxies, bands, pixel scale; no truth);
* ``y`` is the isolated images, ndarray (n, K, C, H, W) float32, ADU;
* ``predict`` returns an array of that shape (zeros in empty slots).

Why not rampwf's ``Estimator`` workflow: it passes X through scikit-learn's
``_safe_indexing`` and, since scikit-learn 1.6, needs submitted objects to
inherit ``BaseEstimator`` (estimator tags). This workflow indexes X itself
(lazily, no copy of the data set per fold), so a ``Deblender`` is a plain class.

Failures are reported as one :class:`~deblendkit.errors.SubmissionError`
naming the submission, the step (import, init, fit, predict) and what was
expected; the original exception is chained.

What ``predict`` must return, and what is refused
--------------------------------------------------
* a ``numpy.ndarray`` (a memmap is one): a list, tuple, torch tensor or None
  is refused, even when numpy could convert it (``np.stack`` a list of
  arrays, ``tensor.numpy()`` a tensor);
* of shape (n, K, C, H, W) exactly;
* of a real number dtype: float32 preferred; float64/float16 and integer
  dtypes are accepted and converted to float32 (integers are exact counts of
  ADU, a legitimate if coarse prediction); bool, complex, object and string
  dtypes are refused;
* finite after conversion to float32 (NaN, inf, and float64 values beyond
  float32's range are refused, with how many and in which blends);
* without strongly negative flux: in every filled slot (``slot <
  n_galaxies``) and band, the total predicted flux over the stamp must be at
  least ``-NEGATIVE_FLUX_SIGMA`` (5) times the background noise of that sum,
  ``noise_sigma * H`` (the standard deviation of the sum of ``H x W`` pixels
  of pure background noise). A galaxy's flux is positive, so a total below
  that is a sign error or a subtracted background, not noise. Negative
  *pixels* are fine (deblending noisy images gives some), and empty slots are
  not scored, so any finite values are accepted there.

Time budget
-----------
Set the environment variable ``DEBLEND_TIME_BUDGET_S`` (seconds, or pass
``time_budget_s``) to bound each step (fit; each predict). On the main thread
a ``SIGALRM`` timer interrupts the step when the budget runs out (Python code
is interrupted at once; a long call into compiled code, e.g. one big numpy or
torch operation, at its end); elsewhere, or if the submission swallows the
interruption, the step's duration is checked when it returns. Either way the
participant gets one SubmissionError naming the submission, the step and the
budget. A hard limit (a submission stuck in compiled code) is the job of
:mod:`deblendkit.ramp.runner`, which can run each submission in its own process
with a wall-clock timeout.

Training-set predictions: rampwf asks for predictions on the whole training
set of each fold to print a "train" score. Deblenders that fit each blend
(forward models) would spend most of a run there, so :meth:`test_submission`
predicts the fold's validation blends and a fixed subsample of at most
:data:`TRAIN_SCORE_BLENDS` training blends (NaN rows elsewhere, which the
score types skip). Set the environment variable ``DEBLEND_TRAIN_SCORE_BLENDS``
to change it (``all`` for every blend).

Out of core (``DEBLEND_OUT_OF_CORE=1``, see :mod:`deblendkit.ramp.problem`),
:meth:`DeblenderWorkflow.test_submission` predicts :data:`PREDICT_BATCH_BLENDS`
blends at a time (the time budget still bounds the whole step) and writes each
batch to a scratch file: it returns file-backed
:class:`~deblendkit.ramp.rows.PredictionRows` holding only the rows predicted,
not an array of the whole set (see :mod:`deblendkit.ramp.prediction`), so
memory does not grow with the training set.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time

import numpy as np
from rampwf.utils.importing import import_module_from_source

from deblendkit.errors import ConfigError, DeblendKitError, PredictionError, SubmissionError
from deblendkit.ramp.prediction import check_predictions
from deblendkit.ramp.problem import out_of_core
from deblendkit.ramp.rows import RowStore, scattered_rows, stored_rows

__all__ = ["DeblenderWorkflow", "TRAIN_SCORE_BLENDS", "NEGATIVE_FLUX_SIGMA", "PREDICT_BATCH_BLENDS",
           "n_train_score", "train_score_rows", "time_budget_from_env", "step_time_budget", "check_flux"]

log = logging.getLogger(__name__)

#: Training blends predicted per fold for the "train" score (see module doc).
TRAIN_SCORE_BLENDS = 128

#: Blends per ``predict`` call out of core (module doc): 256 x 331 kB = 85 MB of
#: predictions at the default shape (6 slots, 6 bands, 48 x 48).
PREDICT_BATCH_BLENDS = 256

#: A filled slot whose total flux in a band is below -NEGATIVE_FLUX_SIGMA x
#: (noise of the stamp sum) is refused (see module doc).
NEGATIVE_FLUX_SIGMA = 5.0

_BUDGET_ENV = "DEBLEND_TIME_BUDGET_S"


def time_budget_from_env() -> float | None:
    """Seconds per step from ``DEBLEND_TIME_BUDGET_S`` (None when unset or empty).

    Raises
    ------
    ConfigError
        The value is not a positive finite number.
    """
    raw = os.environ.get(_BUDGET_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{_BUDGET_ENV} must be a positive number of seconds, got {raw!r}")
    return value


class _OutOfTime(BaseException):
    """Raised by the SIGALRM handler; a BaseException so ``except Exception`` does not swallow it."""


def _budget_error(name: str, step: str, budget: float, elapsed: float, n: int | None) -> SubmissionError:
    what = f" on {n} blends" if n is not None else ""
    return SubmissionError(
        f"submission {name!r} ran out of time in {step}{what}: the budget is {budget:g} s per step "
        f"({_BUDGET_ENV}), it was stopped after {elapsed:.1f} s; expected {step} to finish within "
        "the budget (make it faster, or train on fewer blends)"
    )


@contextlib.contextmanager
def step_time_budget(name: str, step: str, budget_s: float | None, *, n_blends: int | None = None):
    """Bound the wall time of one step of submission ``name`` (see module doc).

    Parameters
    ----------
    name : submission name (for the message).
    step : "fit" or "predict".
    budget_s : seconds, or None for no limit.
    n_blends : blends of the step (for the message).

    Raises
    ------
    SubmissionError
        The step ran past ``budget_s``.
    """
    if budget_s is None:
        yield
        return
    t0 = time.perf_counter()
    use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if not use_alarm:
        yield
        elapsed = time.perf_counter() - t0
        if elapsed > budget_s:
            raise _budget_error(name, step, budget_s, elapsed, n_blends)
        return

    def on_alarm(signum, frame):
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer_delay, _ = signal.setitimer(signal.ITIMER_REAL, budget_s)
    try:
        yield
    except _OutOfTime:
        raise _budget_error(name, step, budget_s, time.perf_counter() - t0, n_blends) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay > 0:  # an enclosing timer: give it back what is left of it
            left = outer_delay - (time.perf_counter() - t0)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3))
    elapsed = time.perf_counter() - t0
    if elapsed > budget_s:  # the submission caught the interruption, or it came in compiled code
        raise _budget_error(name, step, budget_s, elapsed, n_blends)


def check_flux(y_pred: np.ndarray, X, *, n_sigma: float = NEGATIVE_FLUX_SIGMA) -> None:
    """Refuse strongly negative total flux in filled slots (see module doc).

    Parameters
    ----------
    y_pred : ndarray (n, K, C, H, W), finite
        Predictions, ADU per pixel.
    X : BlendSet of the same n blends (``noise_sigma``, ``n_galaxies``).
    n_sigma : threshold in units of the noise of the stamp sum.

    Raises
    ------
    PredictionError
        Naming the first offending blend, slot and band, the flux and the bound.
    """
    n, k, c, h, w = y_pred.shape
    if n == 0:
        return
    n_gal = np.asarray(X.n_galaxies)
    sigma_sum = np.asarray(X.noise_sigma, dtype=np.float64) * math.sqrt(h * w)  # (n, C)
    filled = np.arange(k)[None, :] < n_gal[:, None]  # (n, K)
    bands = tuple(getattr(X, "bands", ())) or tuple(str(i) for i in range(c))
    for s in range(0, n, 64):
        e = min(n, s + 64)
        flux = y_pred[s:e].reshape(e - s, k, c, -1).sum(axis=-1, dtype=np.float64)  # (m, K, C)
        bound = -n_sigma * sigma_sum[s:e, None, :]
        bad = (flux < bound) & filled[s:e, :, None]
        if bad.any():
            i, slot, band = (int(v) for v in np.argwhere(bad)[0])
            count = int(bad.sum())
            raise PredictionError(
                f"blend {s + i} slot {slot} band {bands[band]!r} has total flux "
                f"{flux[i, slot, band]:.4g} ADU, below -{n_sigma:g} x the noise of the stamp sum "
                f"({bound[i, 0, band]:.4g} ADU); expected a galaxy's (positive) flux "
                f"({count} slot-band(s) in blends {s}..{e - 1} are that negative)"
            )


def n_train_score() -> int | None:
    """Training blends scored per fold (``DEBLEND_TRAIN_SCORE_BLENDS``: an integer >= 0, or
    ``"all"`` for None; default :data:`TRAIN_SCORE_BLENDS`).

    Raises
    ------
    SubmissionError
        The variable is set to something else.
    """
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


def _exit_error(name: str, step: str, exc: SystemExit) -> SubmissionError:
    return SubmissionError(
        f"submission {name!r} called exit({exc.code!r}) in {step}; expected {step} to return "
        "(raise an exception to report a problem)"
    )


class DeblenderWorkflow:
    """rampwf workflow with one element, ``deblender.py``.

    Parameters
    ----------
    filename : str
        Submission file (``deblender.py``).
    class_name : str
        Class to instantiate (``Deblender``).
    time_budget_s : float, optional
        Seconds allowed per step (fit; each predict); default from the
        environment variable ``DEBLEND_TIME_BUDGET_S``, else no limit.
    """

    def __init__(self, *, filename: str = "deblender.py", class_name: str = "Deblender",
                 time_budget_s: float | None = None):
        if time_budget_s is not None and (
            isinstance(time_budget_s, bool) or not isinstance(time_budget_s, (int, float))
            or not math.isfinite(time_budget_s) or time_budget_s <= 0
        ):
            raise ConfigError(f"time_budget_s must be a positive number of seconds, got {time_budget_s!r}")
        self.filename = filename
        self.class_name = class_name
        self.time_budget_s = time_budget_s
        self.element_names = [os.path.splitext(filename)[0]]

    # -- helpers -------------------------------------------------------------
    def _budget(self) -> float | None:
        return self.time_budget_s if self.time_budget_s is not None else time_budget_from_env()

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
        if cls is None or not isinstance(cls, type):
            raise SubmissionError(
                f"submission {name!r}: {self.filename} defines no class {self.class_name!r}; "
                f"expected a class with fit(X, y) and predict(X)"
            )
        for method in ("fit", "predict"):
            if not callable(getattr(cls, method, None)):
                raise SubmissionError(
                    f"submission {name!r}: class {self.class_name} has no method {method}(); "
                    "expected fit(X, y) and predict(X)"
                )
        return name, cls

    # -- rampwf API ----------------------------------------------------------
    def train_submission(self, module_path, X, y, train_is=None):
        """Instantiate the submission's Deblender and fit it on ``X[train_is], y[train_is]``.

        ``y`` may be an ndarray or a file-backed :class:`~deblendkit.storage.lazy.LazyRows`
        (out-of-core mode), which stays lazy here.
        """
        name, cls = self._load(module_path)
        if train_is is not None:
            train_is = np.asarray(train_is)
            X = X[train_is]
            y = y.subset(train_is) if hasattr(y, "subset") else y[train_is]
        try:
            model = cls()
        except Exception as exc:
            raise SubmissionError(
                f"submission {name!r} failed when creating {self.class_name}(): "
                f"{type(exc).__name__}: {exc}; expected a constructor that takes no arguments"
            ) from exc
        budget = self._budget()
        try:
            t0 = time.perf_counter()
            with step_time_budget(name, "fit", budget, n_blends=len(X)):
                fitted = model.fit(X, y)
            log.info("submission %s: fit on %d blends in %.1f s", name, len(X), time.perf_counter() - t0)
        except DeblendKitError:
            raise
        except SystemExit as exc:
            raise _exit_error(name, "fit", exc) from exc
        except Exception as exc:
            raise SubmissionError(
                f"submission {name!r} failed in fit on {len(X)} blends: {type(exc).__name__}: {exc}"
            ) from exc
        model = fitted if fitted is not None and hasattr(fitted, "predict") else model
        try:
            model._deblendkit_name = name  # for messages in predict
        except AttributeError:  # __slots__ or a read-only object: messages use the class name
            pass
        return model

    def test_submission(self, trained_model, X, fold=None):
        """Predict isolated images for ``X`` (for a CV fold: validation rows + a training subsample).

        Returns
        -------
        ndarray (n, K, C, H, W) float32; rows not predicted are NaN. Out of core
        (module doc), file-backed PredictionRows of that shape instead.
        """
        if out_of_core():
            rows = np.arange(len(X)) if fold is None else train_score_rows(*fold, n_train_score())
            return self._predict_to_scratch(trained_model, X, rows)
        if fold is None:
            return self.predict(trained_model, X)
        train_is, valid_is = fold
        rows = train_score_rows(train_is, valid_is, n_train_score())
        if len(rows) == len(X):
            return self.predict(trained_model, X)
        part = self.predict(trained_model, X[rows])
        out = np.full((len(X),) + part.shape[1:], np.nan, dtype=np.float32)
        out[rows] = part
        return out

    def _predict_to_scratch(self, trained_model, X, rows: np.ndarray):
        """Predict ``X[rows]`` batch by batch into a scratch file; the rows among ``len(X)`` samples."""
        store = RowStore((X.max_galaxies, X.n_bands, X.stamp_size, X.stamp_size))
        budget = self._budget()
        name = getattr(trained_model, "_deblendkit_name", type(trained_model).__name__)
        t0 = time.perf_counter()
        for start in range(0, len(rows), PREDICT_BATCH_BLENDS):
            left = None if budget is None else budget - (time.perf_counter() - t0)
            if left is not None and left <= 0:
                raise _budget_error(name, "predict", budget, time.perf_counter() - t0, len(rows))
            store.append(self.predict(trained_model, X[rows[start:start + PREDICT_BATCH_BLENDS]],
                                      budget_s=left))
        if len(rows) == len(X) and np.array_equal(rows, np.arange(len(X))):
            return stored_rows(store)
        return scattered_rows(len(X), rows, store)

    def predict(self, trained_model, X, *, budget_s: float | None = None) -> np.ndarray:
        """Run ``trained_model.predict(X)`` and check its output against the contract.

        ``budget_s`` (seconds) replaces the workflow's time budget for this call
        when given.

        Returns
        -------
        ndarray (n, K, C, H, W) float32.

        Raises
        ------
        SubmissionError
            ``predict`` raised, ran out of time, or returned something that
            breaks the contract (see the module docstring); one message naming
            the submission, the step and what was expected.
        """
        name = getattr(trained_model, "_deblendkit_name", type(trained_model).__name__)
        expected = (len(X), X.max_galaxies, X.n_bands, X.stamp_size, X.stamp_size)
        want = f"a numpy.ndarray of shape {expected} = (n_blends, max_galaxies, n_bands, H, W), float32"
        try:
            budget = self._budget() if budget_s is None else budget_s
            with step_time_budget(name, "predict", budget, n_blends=len(X)):
                y_pred = trained_model.predict(X)
        except DeblendKitError:
            raise
        except SystemExit as exc:
            raise _exit_error(name, "predict", exc) from exc
        except Exception as exc:
            raise SubmissionError(
                f"submission {name!r} failed in predict on {len(X)} blends: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(y_pred, np.ndarray):
            kind = type(y_pred).__name__
            hint = {"list": " (np.stack the list)", "tuple": " (np.stack the tuple)",
                    "Tensor": " (call .detach().cpu().numpy())"}.get(kind, "")
            raise SubmissionError(
                f"submission {name!r}, predict: returned a {kind}{hint}; expected {want}"
            )
        try:
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf in the scans: reported below
                y_pred = check_predictions(
                    y_pred, n_blends=expected[0], max_galaxies=expected[1], n_bands=expected[2],
                    stamp_size=expected[3],
                )
            if y_pred.dtype != np.float32:
                dtype = y_pred.dtype
                with np.errstate(over="ignore", invalid="ignore"):
                    y_pred = y_pred.astype(np.float32)
                try:
                    with np.errstate(invalid="ignore", over="ignore"):
                            check_predictions(
                            y_pred, n_blends=expected[0], max_galaxies=expected[1], n_bands=expected[2],
                            stamp_size=expected[3],
                        )
                except PredictionError as exc:
                    raise PredictionError(
                        f"after conversion from {dtype} to float32 (values beyond +-3.4e38 overflow): {exc}"
                    ) from None
            check_flux(y_pred, X)
        except PredictionError as exc:
            raise SubmissionError(f"submission {name!r}, predict: {exc}") from exc
        return y_pred
