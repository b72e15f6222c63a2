"""Collect what ``ramp-test --submission NAME --save-output`` left in each submission folder.

It reads, in ``submissions/NAME/training_output/``:

* rampwf's files, per fold ``fold_<i>/``: ``scores.csv`` (rows ``train``,
  ``valid``, ``test``; one column per score, then ``time``), ``state.txt``
  (``scored``, or ``training_error`` / ``validating_error`` /
  ``testing_error`` with ``error.txt`` beside it), ``train_time``,
  ``valid_time``, ``test_time`` (seconds); and ``bagged_scores.csv`` (rows
  ``(step, n_bag)``: the scores of the mean of the first ``n_bag + 1`` folds'
  predictions);
* the kit's own files, per fold (:mod:`deblendkit.report.results`): the per-galaxy
  table of the test predictions, a gallery of a few deblended test blends and
  ``results.json`` (which data file was scored);

and, for the provenance section of the page, the attributes of the data files
(:func:`data_provenance`).

A run writes its folds in order, so a fold older than the fold before it was
left by an earlier run (e.g. ``fold_2`` of a full run next to a 2-fold
``--quick-test`` run) and is ignored, as is a ``bagged_scores.csv`` older than
the last fold kept. Submissions that were never run, failed or did not finish
get a status (:data:`STATUS_NOT_RUN`, :data:`STATUS_FAILED`,
:data:`STATUS_INCOMPLETE`); nothing here raises on them.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from deblendkit.errors import ConfigError, DataFileError, DeblendKitError
from deblendkit.report.results import (
    GALAXY_TABLE_FILE,
    GALLERY_FILE,
    RESULTS_FILE,
    read_galaxy_table,
    read_results_meta,
)
from deblendkit.storage import validate_file

__all__ = [
    "STATUS_SCORED",
    "STATUS_NOT_RUN",
    "STATUS_FAILED",
    "STATUS_INCOMPLETE",
    "FoldResult",
    "SubmissionResults",
    "load_submission",
    "collect",
    "data_provenance",
]

log = logging.getLogger(__name__)

STATUS_SCORED = "scored"
STATUS_NOT_RUN = "not run"
STATUS_FAILED = "failed"
STATUS_INCOMPLETE = "incomplete"

_TIME_FILES = {"train": "train_time", "valid": "valid_time", "test": "test_time"}
_ERROR_STATES = ("training_error", "validating_error", "testing_error")


@dataclass(frozen=True)
class FoldResult:
    """What one CV fold of a run left on disk.

    Attributes
    ----------
    fold : int
    state : str
        rampwf's ``state.txt`` (``"scored"``, ``"training_error"``, ...), or
        ``"missing"`` without one.
    scores : DataFrame or None
        ``scores.csv``: index ``train``/``valid``/``test``, one column per
        score (``time`` dropped).
    times : dict
        ``{"train": s, "valid": s, "test": s}`` (NaN when absent), seconds.
    meta : dict or None
        The kit's ``results.json``.
    path : Path
        The fold directory.
    error : str or None
        Last line of ``error.txt`` (the exception) after a failure.
    """

    fold: int
    state: str
    scores: pd.DataFrame | None
    times: dict[str, float]
    meta: dict[str, Any] | None
    path: Path
    error: str | None = None

    @property
    def galaxy_table_path(self) -> Path | None:
        """The fold's per-galaxy test table (:data:`GALAXY_TABLE_FILE`), None if absent."""
        p = self.path / GALAXY_TABLE_FILE
        return p if p.is_file() else None

    @property
    def gallery_path(self) -> Path | None:
        """The fold's gallery (:data:`GALLERY_FILE`), None if absent."""
        p = self.path / GALLERY_FILE
        return p if p.is_file() else None


@dataclass(frozen=True)
class SubmissionResults:
    """The results of one submission folder.

    Attributes
    ----------
    name : str
    path : Path
    status : str
        :data:`STATUS_SCORED`, :data:`STATUS_NOT_RUN`, :data:`STATUS_FAILED`
        or :data:`STATUS_INCOMPLETE`.
    detail : str
        One human-readable line on the status (error, what is missing, what
        was ignored); empty when all is well.
    folds : tuple of FoldResult
        The folds of the latest run, in order.
    bagged : DataFrame or None
        Bagged scores of the latest run (index ``valid``/``test``, the last
        bag, i.e. all folds).
    notes : tuple of str
        What was ignored (folds or bagged scores left by an earlier run).
    """

    name: str
    path: Path
    status: str
    detail: str = ""
    folds: tuple[FoldResult, ...] = ()
    bagged: pd.DataFrame | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def scored_folds(self) -> tuple[FoldResult, ...]:
        """Folds with scores."""
        return tuple(f for f in self.folds if f.scores is not None)

    @property
    def data_file(self) -> str | None:
        """Test data file the results were computed on (from ``results.json``)."""
        for f in self.folds:
            if f.meta and f.meta.get("data_file"):
                return str(f.meta["data_file"])
        return None

    def galaxy_tables(self) -> list[pd.DataFrame]:
        """Per-galaxy test tables of the folds that have one."""
        return [read_galaxy_table(f.galaxy_table_path) for f in self.folds if f.galaxy_table_path]


def _read_float(path: Path) -> float:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return math.nan


def _read_scores(path: Path) -> pd.DataFrame | None:
    try:
        df = pd.read_csv(path, index_col=0)
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    return df.drop(columns=[c for c in ("time",) if c in df.columns])


def _last_line(path: Path) -> str | None:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


def _read_fold(path: Path, fold: int) -> FoldResult:
    state_file = path / "state.txt"
    state = state_file.read_text().strip() if state_file.is_file() else "missing"
    scores = _read_scores(path / "scores.csv") if (path / "scores.csv").is_file() else None
    times = {step: _read_float(path / name) for step, name in _TIME_FILES.items()}
    meta = None
    if (path / RESULTS_FILE).is_file():
        try:
            meta = read_results_meta(path / RESULTS_FILE)
        except DataFileError as exc:
            log.warning("%s", exc)
    error = _last_line(path / "error.txt") if state in _ERROR_STATES else None
    return FoldResult(fold=fold, state=state, scores=scores, times=times, meta=meta, path=path, error=error)


def _mtime(path: Path) -> int:
    for name in ("state.txt", "scores.csv"):
        p = path / name
        if p.exists():
            return p.stat().st_mtime_ns
    return path.stat().st_mtime_ns


def _read_bagged(path: Path) -> pd.DataFrame | None:
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    if not {"step", "n_bag"} <= set(df.columns):
        log.warning("%s lacks the columns step, n_bag", path)
        return None
    last = df.loc[df.groupby("step")["n_bag"].idxmax()]
    return last.set_index("step").drop(columns="n_bag")


def load_submission(path: str | os.PathLike) -> SubmissionResults:
    """Read the results of one submission folder (never raises on missing or failed runs).

    Parameters
    ----------
    path : path
        ``submissions/NAME``.
    """
    path = Path(path)
    name = path.name
    out = path / "training_output"
    fold_dirs = sorted(
        (int(p.name[5:]), p) for p in out.glob("fold_*") if p.is_dir() and p.name[5:].isdigit()
    ) if out.is_dir() else []
    if not fold_dirs:
        return SubmissionResults(
            name=name, path=path, status=STATUS_NOT_RUN,
            detail=f"no results: run `ramp-test --submission {name} --save-output`",
        )
    # Keep the latest run: folds are written in order, an older fold after a newer one is stale.
    kept, notes = [], []
    last = -1
    for i, (k, p) in enumerate(fold_dirs):
        t = _mtime(p)
        if k != i or t < last:
            notes.append(f"ignored {', '.join(q.name for _, q in fold_dirs[i:])} (left by an earlier run)")
            break
        kept.append(_read_fold(p, k))
        last = t
    folds = tuple(kept)
    bagged = None
    bagged_path = out / "bagged_scores.csv"
    if bagged_path.is_file():
        if bagged_path.stat().st_mtime_ns >= last:
            bagged = _read_bagged(bagged_path)
        else:
            notes.append("ignored bagged_scores.csv (older than the folds)")
    failed = [f for f in folds if f.state in _ERROR_STATES]
    unfinished = [f for f in folds if f.state not in _ERROR_STATES and (f.state != "scored" or f.scores is None)]
    if failed:
        f = failed[0]
        status = STATUS_FAILED
        detail = f"{f.state} in fold {f.fold}" + (f": {f.error}" if f.error else "")
    elif unfinished:
        f = unfinished[0]
        status = STATUS_INCOMPLETE
        detail = f"fold {f.fold} stopped at state {f.state!r} (run interrupted?)"
    elif bagged is None:
        status = STATUS_INCOMPLETE
        detail = "no bagged scores (run interrupted before bagging?)"
    else:
        status, detail = STATUS_SCORED, ""
    return SubmissionResults(name=name, path=path, status=status, detail=detail, folds=folds,
                             bagged=bagged, notes=tuple(notes))


def collect(submissions_dir: str | os.PathLike) -> list[SubmissionResults]:
    """Every submission folder of ``submissions_dir`` (one with ``deblender.py`` or results), by name.

    Raises
    ------
    ConfigError
        ``submissions_dir`` is not a directory.
    """
    root = Path(submissions_dir)
    if not root.is_dir():
        raise ConfigError(f"submissions directory {str(root)!r} does not exist or is not a directory")
    subs = [p for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith((".", "_"))
            and ((p / "deblender.py").is_file() or (p / "training_output").is_dir())]
    return [load_submission(p) for p in subs]


def data_provenance(data_dir: str | os.PathLike | None) -> list[dict[str, Any]]:
    """Attributes of every data file (``*.h5``) of ``data_dir``: one dict per file.

    Keys: ``file``, ``error`` (a message if the file is unreadable, else
    None), and for readable files ``split``, ``n_blends``, ``seed``,
    ``first_index``, ``created``, ``schema_version``, ``survey``, ``bands``,
    ``pixel_scale``, ``stamp_size``, ``max_galaxies``, ``config`` (dict),
    ``versions`` (dict).
    """
    if data_dir is None or not Path(data_dir).is_dir():
        return []
    out = []
    for p in sorted(Path(data_dir).glob("*.h5")):
        try:
            lay = validate_file(p)
        except (DeblendKitError, OSError) as exc:
            out.append({"file": p.name, "error": str(exc)})
            continue
        a = lay.attrs
        out.append({
            "file": p.name, "error": None, "split": a.get("split"), "n_blends": lay.n_blends,
            "seed": a.get("seed"), "first_index": a.get("first_index"), "created": a.get("created"),
            "schema_version": a.get("schema_version"), "survey": a.get("survey"),
            "bands": list(lay.bands), "pixel_scale": lay.pixel_scale, "stamp_size": lay.stamp_size,
            "max_galaxies": lay.max_galaxies, "config": a.get("config"), "versions": a.get("versions"),
        })
    return out
