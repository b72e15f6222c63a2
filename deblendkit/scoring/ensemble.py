"""Combining deblenders: the greedy ensemble and each member's contributivity.

The combination of deblenders, defined for this problem: per blend and galaxy
slot, the weighted mean of the members' isolated images (every band and
pixel), with integer weights = how many times the member was picked. It is
what the prediction type's ``combine`` gives for a list of members with
repeats, and what ramp-board's ``compute_contributivity`` builds.

The greedy ensemble is Caruana et al.'s forward selection with replacement
(ICML 2004, "Ensemble selection from libraries of models"), as ramp-board's
``ramp_database.tools.contributivity`` runs it on each cross-validation fold:
start from the best single member on the validation blends, then repeatedly
add (again, if it is already in) the member whose addition raises the primary
score most; stop when no addition raises it by more than ``min_improvement``
or the ensemble holds ``max_size`` picks. A member's contributivity on a fold
is its share of the picks; over folds, the mean of those shares. The
contributivities of all members sum to 1.

Two choices make the result independent of the order the members are given
in (ramp-board takes the first of equal scores in database order): members are
visited in the order of their names, and of equal scores the first name wins.

Memory: a member's predictions are read only when it is scored
(``loaders`` are zero-argument callables, e.g. memory-mapped ``.npy`` files):
the running sum of the picks, one member's predictions and the labels are all
that is held, whatever the number of members.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from deblendkit._checks import positive_int
from deblendkit.errors import ConfigError, PredictionError
from deblendkit.scoring.metrics import deblend_scores

__all__ = ["Selection", "greedy_selection", "combine", "mean_contributivity", "score_of_mean"]

log = logging.getLogger(__name__)

#: ramp-board's default ``max_n_ensemble`` (``ramp_database.model.Event``).
MAX_ENSEMBLE_SIZE = 80
_ROWS_PER_BATCH = 64

Loader = Callable[[], np.ndarray]


@dataclass(frozen=True)
class Selection:
    """The greedy ensemble of one fold.

    Attributes
    ----------
    picks : tuple of str
        Member names in the order they were picked (repeats allowed); the first is the best single member.
    score : float
        Primary score (mean ``deblend`` over real galaxies) of the combination.
    history : tuple of float
        Score after each pick (``history[0]`` is the best single member's, ``history[-1] == score``).
    single_scores : dict
        Primary score of each member alone, by name.
    """

    picks: tuple[str, ...]
    score: float
    history: tuple[float, ...]
    single_scores: Mapping[str, float]

    @property
    def weights(self) -> dict[str, float]:
        """Each member's share of the picks (its contributivity on this fold); sums to 1."""
        return {name: self.picks.count(name) / len(self.picks) for name in self.single_scores}

    @property
    def best_single(self) -> str:
        """The member that scores best alone."""
        return self.picks[0]


def _mean_of_sum(total: np.ndarray | None, count: int, extra: np.ndarray | None) -> np.ndarray:
    if extra is None:
        return total / np.float32(count)
    if total is None:  # one member alone
        return extra
    return (total + extra) / np.float32(count + 1)


def score_of_mean(y_true, total: np.ndarray, count: int, extra: np.ndarray | None = None) -> float:
    """Primary score of ``(total + extra) / (count + 1)`` (or ``total / count``), read in batches of blends.

    Parameters
    ----------
    y_true : array-like, (n_blends, K, C, H, W)
        Labels (noiseless isolated images, ADU).
    total : ndarray or None, (n_blends, K, C, H, W)
        Sum of ``count`` members' predictions (float32); None (with ``count`` 0) to score ``extra`` alone.
    count : int
        Number of predictions summed in ``total``.
    extra : array-like or None, same shape
        A further member's predictions (memory-mapped is fine), added before the mean.

    Returns
    -------
    float
        Mean ``deblend`` score over the real galaxies of all blends.
    """
    n = len(total if total is not None else extra)
    scores = []
    for a in range(0, n, _ROWS_PER_BATCH):
        b = min(n, a + _ROWS_PER_BATCH)
        part = None if extra is None else np.asarray(extra[a:b], dtype=np.float32)
        _, s = deblend_scores(np.asarray(y_true[a:b]), _mean_of_sum(None if total is None else total[a:b], count, part))
        scores.append(s)
    all_scores = np.concatenate(scores) if scores else np.empty(0)
    if all_scores.size == 0:
        raise PredictionError("cannot score an ensemble on blends without any galaxy; expected >= 1 real slot")
    return float(all_scores.mean())


def _load(name: str, loader: Loader, shape: tuple[int, ...] | None) -> np.ndarray:
    arr = loader()
    if arr.ndim != 5:
        raise PredictionError(f"member {name!r}: predictions must be (n_blends, K, C, H, W), got shape {arr.shape}",
                              value=arr.shape)
    if shape is not None and arr.shape != shape:
        raise PredictionError(f"member {name!r}: predictions of shape {arr.shape}, expected {shape} like the others",
                              value=arr.shape, allowed=shape)
    return arr


def _best_addition(y_true, total, count, loaders, names, shape) -> tuple[str, float, np.ndarray]:
    best = (None, -math.inf, None)
    for name in names:
        arr = _load(name, loaders[name], shape)
        s = score_of_mean(y_true, total, count, arr)
        if s > best[1]:  # strictly better: of equal scores the first name (sorted) is kept
            best = (name, s, arr)
    return best


def greedy_selection(
    loaders: Mapping[str, Loader],
    y_true,
    *,
    max_size: int = MAX_ENSEMBLE_SIZE,
    min_improvement: float = 0.0,
) -> Selection:
    """Caruana's forward selection with replacement, on one set of blends (a CV fold's validation blends).

    Parameters
    ----------
    loaders : mapping of str to callable
        Member name -> zero-argument callable returning its predictions, (n_blends, K, C, H, W), ADU,
        the same blends in the same order as ``y_true``. Called once per scoring: return a memory map
        (``np.load(path, mmap_mode="r")``) to keep memory flat.
    y_true : array-like, (n_blends, K, C, H, W)
        Labels.
    max_size : int
        Most picks (ramp-board's ``max_n_ensemble``, default 80).
    min_improvement : float
        An addition must raise the score by more than this to be kept (>= 0).

    Returns
    -------
    Selection
    """
    if not loaders:
        raise ConfigError("an ensemble needs at least one member, got none", value=0, allowed=">= 1 member")
    max_size = positive_int("max_size", max_size)
    if not (isinstance(min_improvement, (int, float)) and math.isfinite(min_improvement) and min_improvement >= 0):
        raise ConfigError(f"min_improvement must be a finite number >= 0, got {min_improvement!r}",
                          value=min_improvement, allowed=">= 0")
    names = sorted(loaders)
    singles, shape = {}, None
    for name in names:
        arr = _load(name, loaders[name], shape)
        shape = arr.shape
        singles[name] = score_of_mean(y_true, None, 0, arr)
    first = max(names, key=lambda n: (singles[n], -names.index(n)))
    total = np.array(loaders[first](), dtype=np.float32)
    picks, history = [first], [singles[first]]
    while len(picks) < max_size:
        name, s, arr = _best_addition(y_true, total, len(picks), loaders, names, shape)
        if not s > history[-1] + min_improvement:
            break
        np.add(total, np.asarray(arr, dtype=np.float32), out=total)
        picks.append(name)
        history.append(s)
        log.info("ensemble: +%s -> %.4f (%d picks)", name, s, len(picks))
    return Selection(picks=tuple(picks), score=history[-1], history=tuple(history), single_scores=singles)


def combine(loaders: Mapping[str, Loader], picks) -> np.ndarray:
    """The combination of ``picks`` (names, repeats = weights): the mean of their predictions, float32.

    Each distinct member is read once and added with its multiplicity.
    """
    picks = list(picks)
    if not picks:
        raise ConfigError("combine needs at least one pick, got none", value=picks, allowed=">= 1 pick")
    unknown = sorted(set(picks) - set(loaders))
    if unknown:
        raise ConfigError(f"picks name members without predictions: {unknown}; known: {sorted(loaders)}",
                          value=unknown, allowed=sorted(loaders))
    total, shape = None, None
    for name in sorted(set(picks)):
        arr = _load(name, loaders[name], shape)
        shape = arr.shape
        weighted = np.asarray(arr, dtype=np.float32) * np.float32(picks.count(name))
        total = weighted if total is None else total + weighted
    return total / np.float32(len(picks))


def mean_contributivity(selections) -> dict[str, float]:
    """Each member's contributivity over folds: the mean of its per-fold shares of the picks (sums to 1)."""
    selections = list(selections)
    if not selections:
        raise ConfigError("contributivity needs at least one fold's selection, got none", value=0,
                          allowed=">= 1 fold")
    names = sorted({n for s in selections for n in s.single_scores})
    return {n: float(np.mean([s.weights.get(n, 0.0) for s in selections])) for n in names}
