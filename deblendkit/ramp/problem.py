"""What ``problem.py`` exposes to rampwf, kept here so ``problem.py`` stays thin.

* :func:`get_train_data` / :func:`get_test_data`: ``(X, y)`` from
  ``<kit>/data/{train,test}.h5``, or the ``_mini`` files when the environment
  variable ``RAMP_TEST_MODE`` is set (``ramp-test --quick-test`` sets it);
* :func:`get_cv`: deterministic K-fold over blends (3 folds, 2 in test mode);
* :func:`data_meta`: bands and array sizes, read from the data files'
  attributes (defaults of :class:`~deblendkit.config.SimConfig` when no file
  exists yet), from which ``problem.py`` builds ``Predictions`` and the score types;
* :func:`problem_attribute`: ``problem.py``'s data-dependent attributes
  (``Predictions``, ``score_types``), built at first use.

Where the data are: rampwf gives the data directory only to
``get_train_data(path)`` / ``get_test_data(path)`` (``ramp-test
--ramp-data-dir``, the kit by default), never at import. So ``problem.py``
builds ``Predictions`` and ``score_types`` lazily, at their first use (a
module ``__getattr__``, PEP 562), from the data directory the process last
loaded (:func:`data_dir_in_use`), or from the kit's own ``data/`` when nothing
was loaded yet. ``ramp-test`` reads the data before it touches either, so a
kit whose own ``data/`` is stale or absent works with data elsewhere.

Out-of-core mode: automatic from :data:`AUTO_OUT_OF_CORE_TRAIN_BLENDS` training
blends, or forced on or off with the environment variable ``DEBLEND_OUT_OF_CORE``
(``1`` / ``0``; see :func:`out_of_core`). In it,
:func:`get_train_data` / :func:`get_test_data` read nothing up front: ``X`` is a
file-backed :class:`~deblendkit.deblend.blendset.BlendSet` (each batch or subset reads its
rows on access) and ``y`` a :class:`~deblendkit.storage.lazy.LazyRows` of the
``isolated`` dataset (``y[lo:hi]``, ``y.batches(n)``, ``np.asarray(y)`` read
from the file; the workflow passes ``fit`` a lazy subset). A submission can
then train batch by batch on a data set larger than memory. In this mode the
kit's workflow and prediction type also keep ``ramp-test``'s memory flat in the
data size (measured: 1.00x from 1,600 to 20,000 training blends, see
``benchmarks/README.md``): the predictions are file-backed rows holding only the
rows that are scored, and the labels are read per fold, for those rows
(:mod:`deblendkit.ramp.prediction`). Without it (the default data's case, the
fastest there), rampwf keeps each fold's predictions of the whole training and test
sets in memory for the scores and the CV bagging. Score data sets larger than
memory outside ``ramp-test`` with :func:`deblendkit.scoring.out_of_core.score_file`
(``python -m deblendkit.cli.score``).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import KFold

from deblendkit.config import SimConfig
from deblendkit.deblend.blendset import BlendSet, load_split
from deblendkit.errors import ConfigError, DataFileError
from deblendkit.ramp.prediction import make_predictions_type
from deblendkit.ramp.score_types import make_score_types
from deblendkit.storage import H5Source, LazyRows, validate_file

__all__ = ["PROBLEM_TITLE", "CV_RANDOM_STATE", "get_train_data", "get_test_data", "get_cv",
           "data_meta", "DataMeta", "split_path", "out_of_core", "load_lazy", "quick_mode",
           "data_dir_in_use", "problem_attribute", "DATA_DEPENDENT"]

PROBLEM_TITLE = "Galaxy deblending: recover each galaxy's isolated image from a multi-band blend"
#: Fixed random state of the CV shuffle: the folds are the same for every submission.
CV_RANDOM_STATE = 57
N_FOLDS = 3
N_FOLDS_QUICK = 2


def quick_mode() -> bool:
    """True under ``ramp-test --quick-test`` (``RAMP_TEST_MODE`` set)."""
    return bool(os.environ.get("RAMP_TEST_MODE"))


def split_path(path: str, split: str) -> str:
    """``<path>/data/<split>[_mini].h5``."""
    name = f"{split}_mini.h5" if quick_mode() else f"{split}.h5"
    return os.path.join(path, "data", name)


#: Training blends from which ``ramp-test`` runs out of core when
#: ``DEBLEND_OUT_OF_CORE`` is unset or ``auto``. The in-memory path peaks at
#: 4.2 GB with the default 1,600 training and 400 test blends (48 x 48 pixels,
#: 6 bands, 6 slots) and grows by about 1 MB per training blend: two copies of
#: its predictions and its labels, 331 kB each (~20 GB at 20,000; out of core
#: 0.8 GB there, ``benchmarks/README.md``). Both paths print the same scores
#: (tested), so the switch only trades speed for memory.
AUTO_OUT_OF_CORE_TRAIN_BLENDS = 4000


def _train_blends(directory: str) -> int:
    """Blends in the training file of ``directory`` (of the current mode); 0 when there is none."""
    f = split_path(directory, "train")
    return validate_file(f).n_blends if os.path.exists(f) else 0


def out_of_core(path: str | None = None) -> bool:
    """Whether ``ramp-test`` runs out of core (see module doc).

    ``DEBLEND_OUT_OF_CORE`` 1/true/yes/on: always; 0/false/no/off: never; unset or
    ``auto``: when the training file of ``path`` (default: the data directory in
    use, :func:`data_dir_in_use`) holds at least
    :data:`AUTO_OUT_OF_CORE_TRAIN_BLENDS` blends.

    Raises
    ------
    ConfigError
        Any other value of ``DEBLEND_OUT_OF_CORE``.
    """
    raw = os.environ.get("DEBLEND_OUT_OF_CORE", "").strip().lower()
    if raw in ("", "auto"):
        directory = path if path is not None else data_dir_in_use()
        return directory is not None and _train_blends(directory) >= AUTO_OUT_OF_CORE_TRAIN_BLENDS
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"DEBLEND_OUT_OF_CORE must be 1 or 0 (true/false, yes/no, on/off) or auto, got {raw!r}",
                      value=raw, allowed=("1", "0", "true", "false", "yes", "no", "on", "off", "auto"))


def load_lazy(path: str):
    """``(X, y)`` of a data file, both file-backed (nothing read but the layout).

    Raises
    ------
    DataFileError
        Missing, truncated, foreign, other schema version, missing dataset (checked
        now); corrupt chunks are found when they are read.
    """
    X = BlendSet.from_file(path, in_memory=False)
    y = LazyRows(H5Source(path).array("isolated"))
    return X, y


class _DataDirInUse:
    """The data directory this process last loaded from (rampwf's ``ramp_data_dir``).

    One per process: rampwf imports ``problem.py`` afresh for each step of
    ``ramp-test`` (title, data, CV, score types, folds), so the directory
    cannot live in ``problem.py``'s own namespace.
    """

    path: str | None = None


def data_dir_in_use() -> str | None:
    """The ``path`` of the last successful :func:`get_train_data` / :func:`get_test_data`, or None."""
    return _DataDirInUse.path


def _load(path: str, split: str):
    f = split_path(path, split)
    if not os.path.exists(f):
        raise DataFileError(
            f"data file {f} does not exist; make the data first with `python prepare_data.py` "
            f"(in {os.path.abspath(path)})"
        )
    data = load_lazy(f) if out_of_core(path) else load_split(f)
    _DataDirInUse.path = os.path.abspath(path)
    return data


def get_train_data(path: str = "."):
    """``(X, y)`` of the training split: X a BlendSet, y (n, K, C, H, W) float32."""
    return _load(path, "train")


def get_test_data(path: str = "."):
    """``(X, y)`` of the test split."""
    return _load(path, "test")


def get_cv(X, y):
    """Deterministic shuffled K-fold over blends: yields ``(train_is, valid_is)``."""
    n_splits = N_FOLDS_QUICK if quick_mode() else N_FOLDS
    n_splits = max(2, min(n_splits, len(X)))
    cv = KFold(n_splits=n_splits, shuffle=True, random_state=CV_RANDOM_STATE)
    return cv.split(np.zeros(len(X)))


@dataclass(frozen=True)
class DataMeta:
    """Bands and sizes of the problem's arrays."""

    bands: tuple[str, ...]
    max_galaxies: int
    stamp_size: int


def _first_data_file(directory: str) -> str | None:
    for split in ("train", "test"):
        for f in (split_path(directory, split), os.path.join(directory, "data", f"{split}.h5"),
                  os.path.join(directory, "data", f"{split}_mini.h5")):
            if os.path.exists(f):
                return f
    return None


def data_meta(path: str = ".") -> DataMeta:
    """Bands and sizes from the first data file found in ``<path>/data``.

    The split of the current mode first (``_mini`` under ``--quick-test``),
    train before test; with no data file there the simulator's defaults
    (:class:`~deblendkit.config.SimConfig`) are used.

    Raises
    ------
    DataFileError
        The file found is not one this kit can read (e.g. made by an older kit).
    """
    f = _first_data_file(path)
    if f is not None:
        layout = validate_file(f)
        return DataMeta(tuple(layout.bands), int(layout.max_galaxies), int(layout.stamp_size))
    cfg = SimConfig()
    return DataMeta(tuple(cfg.simulated_bands), cfg.max_galaxies, cfg.stamp_size)


DATA_DEPENDENT = ("Predictions", "score_types")
"""The attributes of ``problem.py`` built at first use by :func:`problem_attribute`."""


@functools.lru_cache(maxsize=16)
def _built(name: str, meta: DataMeta):
    if name == "Predictions":
        return make_predictions_type(max_galaxies=meta.max_galaxies, n_bands=len(meta.bands),
                                     stamp_size=meta.stamp_size)
    return make_score_types(meta.bands)


def problem_attribute(name: str, kit_dir: str):
    """``problem.Predictions`` or ``problem.score_types``, from the data in use (see module doc).

    Parameters
    ----------
    name : str
        One of :data:`DATA_DEPENDENT`.
    kit_dir : str
        The kit (``problem.py``'s folder), whose ``data/`` is read when this
        process has loaded no data yet.

    Returns
    -------
    type or list
        The same object for the same bands and sizes (cached).

    Raises
    ------
    AttributeError
        ``name`` is not one of :data:`DATA_DEPENDENT` (what a module
        ``__getattr__`` must raise for a missing attribute).
    DataFileError
        The data file read is not one this kit can read.
    """
    if name not in DATA_DEPENDENT:
        raise AttributeError(f"module 'problem' has no attribute {name!r}")
    directory = data_dir_in_use() or kit_dir
    meta = data_meta(directory) if _first_data_file(directory) is not None else data_meta(kit_dir)
    return _built(name, meta)
