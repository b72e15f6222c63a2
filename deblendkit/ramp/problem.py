"""What ``problem.py`` exposes to rampwf, kept here so ``problem.py`` stays thin.

* :func:`get_train_data` / :func:`get_test_data`: ``(X, y)`` from
  ``<kit>/data/{train,test}.h5``, or the ``_mini`` files when the environment
  variable ``RAMP_TEST_MODE`` is set (``ramp-test --quick-test`` sets it);
* :func:`get_cv`: deterministic K-fold over blends (3 folds, 2 in test mode);
* :func:`data_meta`: bands and array sizes, read from the data files'
  attributes (defaults of :class:`~deblendkit.config.SimConfig` when no file
  exists yet), from which ``problem.py`` builds ``Predictions`` and the score types.

Out-of-core mode: with the environment variable ``DEBLEND_OUT_OF_CORE=1``,
:func:`get_train_data` / :func:`get_test_data` read nothing up front: ``X`` is a
file-backed :class:`~deblendkit.deblend.blendset.BlendSet` (each batch or subset reads its
rows on access) and ``y`` a :class:`~deblendkit.storage.files.LazyRows` of the
``isolated`` dataset (``y[lo:hi]``, ``y.batches(n)``, ``np.asarray(y)`` read
from the file; the workflow passes ``fit`` a lazy subset). A submission can
then train batch by batch on a data set larger than memory. rampwf itself is
not out-of-core: ``ramp-test`` builds ``Predictions(y_true=y)`` (which reads
the labels of the fold into memory) and keeps each fold's predictions of the
whole training and test sets in memory for the scores and the CV bagging;
score data sets larger than memory with :func:`deblendkit.scoring.out_of_core.score_file`
(``python -m deblendkit.scoring.out_of_core``) instead.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import KFold

from deblendkit.errors import DataFileError

__all__ = ["PROBLEM_TITLE", "CV_RANDOM_STATE", "get_train_data", "get_test_data", "get_cv",
           "data_meta", "DataMeta", "split_path", "out_of_core", "load_lazy"]

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


def out_of_core() -> bool:
    """True when ``DEBLEND_OUT_OF_CORE`` is set to 1/true/yes/on (see module doc)."""
    raw = os.environ.get("DEBLEND_OUT_OF_CORE", "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    from deblendkit.errors import ConfigError

    raise ConfigError(f"DEBLEND_OUT_OF_CORE must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")


def load_lazy(path: str):
    """``(X, y)`` of a data file, both file-backed (nothing read but the layout).

    Raises
    ------
    DataFileError
        Missing, truncated, foreign, other schema version, missing dataset (checked
        now); corrupt chunks are found when they are read.
    """
    from deblendkit.deblend.blendset import BlendSet
    from deblendkit.storage.files import H5Source, LazyRows

    X = BlendSet.from_file(path, in_memory=False)
    y = LazyRows(H5Source(path).array("isolated"))
    return X, y


def _load(path: str, split: str):
    from deblendkit.deblend.blendset import load_split

    f = split_path(path, split)
    if not os.path.exists(f):
        raise DataFileError(
            f"data file {f} does not exist; make the data first with `python prepare_data.py` "
            f"(in {os.path.abspath(path)})"
        )
    return load_lazy(f) if out_of_core() else load_split(f)


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


def ramp_data_dir(argv=None) -> str | None:
    """The ``--ramp-data-dir`` of a ``ramp-test`` command line (``sys.argv`` by default), or None."""
    argv = sys.argv if argv is None else argv
    for i, arg in enumerate(argv):
        if arg == "--ramp-data-dir" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--ramp-data-dir="):
            return arg.split("=", 1)[1]
    return None


def data_meta(path: str = ".", *, argv=None) -> DataMeta:
    """Bands and sizes from the first data file found in ``<dir>/data``.

    ``problem.py`` calls this when ``ramp-test`` imports it, before any data is
    read and without being told where the data are; so the folder given to
    ``ramp-test --ramp-data-dir`` (read from its command line, ``argv``) is
    looked at first, then ``path`` (the kit). With no data file anywhere the
    simulator's defaults are used.
    """
    from deblendkit.storage.files import validate_file

    dirs = [d for d in (ramp_data_dir(argv), path) if d]
    for directory in dirs:
        for split in ("train", "test"):
            for f in (split_path(directory, split), os.path.join(directory, "data", f"{split}.h5"),
                      os.path.join(directory, "data", f"{split}_mini.h5")):
                if os.path.exists(f):
                    layout = validate_file(f)
                    return DataMeta(tuple(layout.bands), int(layout.max_galaxies), int(layout.stamp_size))
    from deblendkit.config import SimConfig

    cfg = SimConfig()
    return DataMeta(tuple(cfg.band_names), cfg.max_galaxies, cfg.stamp_size)
