"""rampwf's ``problem.save_y_pred`` hook: the kit's results files instead of the prediction arrays.

rampwf saves, for every CV fold, the fold's predictions through
``problem.save_y_pred(y_pred, data_path, output_path, suffix)`` (``suffix``
``"train"`` then ``"test"``; ``output_path`` is
``submissions/<name>/training_output/fold_<i>``; ``data_path`` is the kit
directory that holds ``data/``). The predictions are 5-D arrays of about
``n x 6 x 6 x 48 x 48`` floats (130 MB for 400 test blends, per fold), too big
to keep for a leaderboard. :func:`save_y_pred` keeps what the leaderboard shows
instead, for the ``"test"`` predictions only: the per-galaxy table, a gallery
and ``results.json`` (:mod:`deblendkit.scoring.results_files`, read back by
:mod:`deblendkit.report.results`).

Nothing is saved for ``"train"``: those predictions cover only the fold's
validation blends and a training subsample (NaN elsewhere, see
:mod:`deblendkit.ramp.workflow`), and rampwf's own ``scores.csv`` already holds
their scores. Together with rampwf's ``scores.csv``, ``state.txt``,
``train_time`` / ``valid_time`` / ``test_time`` per fold and
``bagged_scores.csv`` these files are what :mod:`deblendkit.report.leaderboard` reads.

Tools that read the prediction arrays back need them on disk: ramp-board's
``ramp-database`` (``set_predictions`` loads ``fold_<i>/y_pred_train.npz`` and
``y_pred_test.npz``) and ``ramp-blend`` (rampwf's ``load_y_pred``). Set the
environment variable ``DEBLEND_SAVE_Y_PRED=1`` (:data:`SAVE_ARRAYS_ENV`) to
also write them, exactly as rampwf would without this hook
(``y_pred_<suffix>.npz``, key ``y_pred``).
"""
from __future__ import annotations

import logging
import os

import numpy as np

from deblendkit.errors import ConfigError, DeblendKitError
from deblendkit.ramp.problem import split_path
from deblendkit.scoring import results_files

__all__ = ["SAVE_ARRAYS_ENV", "save_arrays_requested", "save_y_pred"]

log = logging.getLogger(__name__)

SAVE_ARRAYS_ENV = "DEBLEND_SAVE_Y_PRED"
"""Environment variable: ``1`` to also save the prediction arrays as rampwf does."""


def save_arrays_requested() -> bool:
    """Whether :data:`SAVE_ARRAYS_ENV` asks for the prediction arrays too.

    Raises
    ------
    ConfigError
        The variable holds something other than 1/0, true/false, yes/no (or empty).
    """
    raw = os.environ.get(SAVE_ARRAYS_ENV, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ConfigError(f"{SAVE_ARRAYS_ENV} must be 1 or 0 (true/false, yes/no), got {raw!r}",
                      value=raw, allowed=("1", "0", "true", "false", "yes", "no"))


def save_y_pred(y_pred, data_path: str, output_path: str, suffix: str) -> None:
    """Rampwf's hook (``problem.save_y_pred``): write the fold's results files.

    Parameters
    ----------
    y_pred : ndarray, (n, K, C, H, W)
        Predictions of one fold, ADU.
    data_path : str
        Kit directory holding ``data/`` (rampwf's ``ramp_data_dir``).
    output_path : str
        The fold's output directory (``.../training_output/fold_<i>``).
    suffix : str
        ``"test"`` writes the files
        (:func:`~deblendkit.scoring.results_files.write_results`); anything else
        (``"train"``) writes nothing. With ``DEBLEND_SAVE_Y_PRED=1`` the array
        is also saved as ``y_pred_<suffix>.npz`` whatever the suffix.

    Raises
    ------
    DeblendKitError
        Whatever went wrong, as one error of the kit's family. In particular
        an ``AttributeError`` never escapes: rampwf would take it for "no
        ``save_y_pred`` here" and silently save the whole array instead.
    """
    try:
        if save_arrays_requested():
            np.savez_compressed(os.path.join(output_path, f"y_pred_{suffix}"), y_pred=y_pred)
        if suffix != "test":
            log.debug("save_y_pred: no results files for suffix %r in %s", suffix, output_path)
            return
        results_files.write_results(y_pred, split_path(data_path, "test"), output_path)
    except DeblendKitError:
        raise
    except Exception as exc:  # AttributeError included, see above
        raise DeblendKitError(
            f"writing the results files of {output_path} failed: {type(exc).__name__}: {exc}"
        ) from exc
