"""The greedy ensemble of submissions from what ``ramp-test --save-output`` left on disk.

Run every member first with its prediction arrays saved::

    DEBLEND_SAVE_Y_PRED=1 ramp-test --submission NAME --save-output

which leaves, per fold, ``submissions/NAME/training_output/fold_<i>/y_pred_train.npz``
(the fold's predictions of the training file: its validation blends, NaN where
not predicted) and ``y_pred_test.npz``. :func:`ensemble_from_outputs` then
rebuilds the CV folds exactly as ``ramp-test`` made them (:func:`deblendkit.ramp.problem.get_cv`),
runs the greedy selection of :mod:`deblendkit.scoring.ensemble` on each fold's
validation blends, combines each fold's test predictions with that fold's
picks, and bags the folds (the mean over folds, as rampwf bags), as
ramp-board's ``compute_contributivity`` does.

Memory: each member's arrays are decompressed one at a time and their scored
rows written to a scratch directory as ``.npy`` files that are then memory
mapped; the scratch directory is removed at the end.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deblendkit.errors import ConfigError, DataFileError
from deblendkit.ramp.problem import get_cv
from deblendkit.scoring.ensemble import MAX_ENSEMBLE_SIZE, Selection, greedy_selection, mean_contributivity
from deblendkit.scoring.ensemble import combine as combine_members
from deblendkit.storage import LazyRows

__all__ = ["EnsembleOutcome", "ensemble_from_outputs", "fold_dirs", "TRAIN_ARRAY", "TEST_ARRAY"]

log = logging.getLogger(__name__)

TRAIN_ARRAY = "y_pred_train.npz"
TEST_ARRAY = "y_pred_test.npz"


@dataclass(frozen=True)
class EnsembleOutcome:
    """The ensemble over CV folds.

    Attributes
    ----------
    members : tuple of str
        Submissions considered (sorted).
    folds : tuple of Selection
        The greedy selection of each fold, on its validation blends.
    contributivity : dict of str to float
        Mean over folds of each member's share of the picks (sums to 1).
    best_single : str
        The member with the best mean validation score alone.
    test_predictions : ndarray, (n_test, K, C, H, W)
        The bagged ensemble's test predictions (mean over folds of each fold's combination), ADU.
    best_single_test_predictions : ndarray, same shape
        The bagged test predictions of ``best_single``.
    """

    members: tuple[str, ...]
    folds: tuple[Selection, ...]
    contributivity: dict[str, float]
    best_single: str
    test_predictions: np.ndarray = field(repr=False)
    best_single_test_predictions: np.ndarray = field(repr=False)

    @property
    def valid_score(self) -> float:
        """Mean over folds of the ensemble's validation score."""
        return float(np.mean([s.score for s in self.folds]))

    @property
    def best_single_valid_score(self) -> float:
        """Mean over folds of the best single member's validation score."""
        return float(np.mean([s.single_scores[self.best_single] for s in self.folds]))


def fold_dirs(submission_dir: str | os.PathLike) -> list[Path]:
    """``training_output/fold_<i>`` folders of a submission, in fold order."""
    out = Path(submission_dir) / "training_output"
    folds = sorted((p for p in out.glob("fold_*") if p.name[5:].isdigit()), key=lambda p: int(p.name[5:]))
    return folds


def _npz_array(path: Path) -> np.ndarray:
    try:
        with np.load(path) as z:
            return z["y_pred"]
    except (OSError, KeyError, ValueError) as exc:
        raise DataFileError(f"cannot read the saved predictions {path}: {exc}; rerun with "
                            "DEBLEND_SAVE_Y_PRED=1 ramp-test --save-output", value=str(path)) from exc


def _stage(path: Path, rows: np.ndarray | None, scratch: Path, name: str) -> Path:
    """Write the ``rows`` of the array saved at ``path`` to ``scratch/name.npy`` (to be memory mapped)."""
    arr = _npz_array(path)
    part = arr if rows is None else arr[rows]
    if not np.isfinite(part).all():
        raise DataFileError(f"{path}: the predictions of the rows this fold scores hold NaN or inf; expected "
                            "the fold's validation predictions", value=str(path))
    target = scratch / f"{name}.npy"
    np.save(target, part.astype(np.float32, copy=False))
    return target


def _memmap(path: Path):
    return lambda: np.load(path, mmap_mode="r")


def _check_members(submissions_dir: Path, members) -> tuple[str, tuple[list[Path], ...]]:
    members = tuple(sorted(members))
    if not members:
        raise ConfigError("an ensemble needs at least one submission, got none", value=members,
                          allowed=">= 1 submission")
    folds = {m: fold_dirs(submissions_dir / m) for m in members}
    counts = {m: len(f) for m, f in folds.items()}
    empty = [m for m, n in counts.items() if n == 0]
    if empty:
        raise DataFileError(f"submission {empty[0]!r} has no saved folds in "
                            f"{submissions_dir / empty[0] / 'training_output'}; run "
                            f"`DEBLEND_SAVE_Y_PRED=1 ramp-test --submission {empty[0]} --save-output` first",
                            value=empty[0])
    if len(set(counts.values())) != 1:
        raise DataFileError(f"the submissions' training_output folders hold different numbers of folds: {counts}; "
                            "run every member with the same ramp-test options", value=counts)
    return members, folds


def ensemble_from_outputs(
    submissions_dir: str | os.PathLike,
    members,
    *,
    train_file: str | os.PathLike,
    test_file: str | os.PathLike,
    max_size: int = MAX_ENSEMBLE_SIZE,
    scratch_dir: str | os.PathLike | None = None,
) -> EnsembleOutcome:
    """The greedy ensemble of ``members`` (submission names) from their saved fold predictions.

    Parameters
    ----------
    submissions_dir : path
        The kit's ``submissions/`` folder.
    members : iterable of str
        Submission names; each must have ``training_output/fold_<i>/{y_pred_train,y_pred_test}.npz``.
    train_file, test_file : path
        The data files ``ramp-test`` used (``data/train.h5``, ``data/test.h5``; the ``_mini`` ones after
        ``--quick-test``). The folds are rebuilt from the training file's size.
    max_size : int
        Most picks per fold.
    scratch_dir : path, optional
        Where the memory-mapped copies go (default: a temporary folder), removed at the end.
    """
    submissions_dir = Path(submissions_dir)
    members, folds = _check_members(submissions_dir, members)
    y_train, y_test = LazyRows.from_file(train_file), LazyRows.from_file(test_file)
    cv = list(get_cv(np.zeros(len(y_train)), None))
    n_folds = len(folds[members[0]])
    if len(cv) != n_folds:
        raise DataFileError(f"{n_folds} saved folds but ramp-test's CV makes {len(cv)} on {train_file}; "
                            "was it run on another data file (or --quick-test)?", value=n_folds, allowed=len(cv))
    scratch = Path(tempfile.mkdtemp(prefix="deblend-ensemble-", dir=scratch_dir))
    try:
        selections, test_sum = [], None
        for i, (_, valid_is) in enumerate(cv):
            rows = np.sort(np.asarray(valid_is))
            valid = {m: _memmap(_stage(folds[m][i] / TRAIN_ARRAY, rows, scratch, f"{m}_valid")) for m in members}
            sel = greedy_selection(valid, y_train[rows], max_size=max_size)
            log.info("fold %d: picks %s, score %.4f", i, list(sel.picks), sel.score)
            selections.append(sel)
            test = {m: _memmap(_stage(folds[m][i] / TEST_ARRAY, None, scratch, f"{m}_test")) for m in members}
            combined = combine_members(test, sel.picks)
            test_sum = combined if test_sum is None else test_sum + combined
            for p in scratch.iterdir():
                p.unlink()
        best = max(members, key=lambda m: (np.mean([s.single_scores[m] for s in selections]), -members.index(m)))
        if test_sum.shape != y_test.shape:
            raise DataFileError(f"the saved test predictions have shape {test_sum.shape}, but {test_file} holds "
                                f"{y_test.shape}", value=test_sum.shape, allowed=y_test.shape)
        best_sum = None  # a second pass: one member's test arrays, one fold at a time
        for i in range(n_folds):
            arr = _npz_array(folds[best][i] / TEST_ARRAY).astype(np.float32, copy=False)
            best_sum = arr if best_sum is None else best_sum + arr
        return EnsembleOutcome(
            members=members, folds=tuple(selections), contributivity=mean_contributivity(selections),
            best_single=best, test_predictions=test_sum / np.float32(n_folds),
            best_single_test_predictions=best_sum / np.float32(n_folds),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
