"""The ensemble row of the leaderboard: what ``deblend-ensemble`` wrote.

``deblend-ensemble`` (:mod:`deblendkit.cli.ensemble`) runs the greedy ensemble
of the submissions (:mod:`deblendkit.scoring.ensemble`) on their saved fold
predictions and writes, into its output folder (default ``ensemble/`` beside
``submissions/``):

``ensemble.json``
    ``members``, ``contributivity`` (each member's mean share of the picks),
    ``best_single``, ``valid`` (``ensemble`` and ``best_single``: mean over
    folds of the primary score on the validation blends), ``test`` (per name,
    every summary score of the bagged test predictions), ``folds`` (the picks
    and scores of each fold), ``test_file``;
``galaxies_test.csv.gz``
    The per-galaxy test scores of the ensemble and of the best single member
    (column ``member``), for the score-versus-blendedness plot.

The leaderboard shows the ensemble as its own row (status ``ensemble``, never
ranked), each submission's contributivity in a column, and the ensemble's
score versus blendedness beside the best single submission's.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from deblendkit.errors import DataFileError
from deblendkit.scoring import headline_scores

__all__ = ["ENSEMBLE_FILE", "ENSEMBLE_TABLE_FILE", "ENSEMBLE_NAME", "STATUS_ENSEMBLE", "EnsembleSummary",
           "read_ensemble"]

ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_TABLE_FILE = "galaxies_test.csv.gz"
ENSEMBLE_NAME = "ensemble"
STATUS_ENSEMBLE = "ensemble"
"""Status of the ensemble's row (never ranked)."""


@dataclass(frozen=True)
class EnsembleSummary:
    """What the leaderboard shows of an ensemble.

    Attributes
    ----------
    members : tuple of str
    contributivity : dict of str to float
        Sums to 1.
    best_single : str
    valid : dict
        ``{"ensemble": score, "best_single": score}``: primary score on the validation blends, mean over folds.
    test : dict
        ``{name: {score type name: value}}`` for ``"ensemble"`` and the best single member (bagged test).
    picks : tuple of tuple of str
        The picks of each fold.
    table : DataFrame
        Per-galaxy test scores, column ``member`` (``"ensemble"`` or the best single's name).
    """

    members: tuple[str, ...]
    contributivity: Mapping[str, float]
    best_single: str
    valid: Mapping[str, float]
    test: Mapping[str, Mapping[str, float]]
    picks: tuple[tuple[str, ...], ...] = ()
    table: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def detail(self) -> str:
        """One line for the row: members and picks."""
        return (f"greedy ensemble of {len(self.members)} submissions; best single: {self.best_single}; "
                + "; ".join(f"fold {i}: {'+'.join(p)}" for i, p in enumerate(self.picks)))


def read_ensemble(directory: str | os.PathLike) -> EnsembleSummary | None:
    """The ensemble written in ``directory`` by ``deblend-ensemble``, or None when there is none.

    Raises
    ------
    DataFileError
        ``ensemble.json`` exists but is unreadable or lacks a key.
    """
    path = Path(directory) / ENSEMBLE_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
        table_path = Path(directory) / ENSEMBLE_TABLE_FILE
        table = pd.read_csv(table_path) if table_path.is_file() else None
        test = {name: headline_scores(summary) for name, summary in meta["test"].items()}
        return EnsembleSummary(
            members=tuple(meta["members"]), contributivity={k: float(v) for k, v in meta["contributivity"].items()},
            best_single=str(meta["best_single"]), valid={k: float(v) for k, v in meta["valid"].items()},
            test=test, picks=tuple(tuple(f["picks"]) for f in meta.get("folds", ())), table=table,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataFileError(f"{path}: not an ensemble file of deblend-ensemble ({type(exc).__name__}: {exc}); "
                            "rerun deblend-ensemble", value=str(path)) from exc


def ensemble_row(summary: EnsembleSummary, names, steps=("train", "valid", "test")) -> dict:
    """The ensemble as a leaderboard row: primary valid score, every bagged test score."""
    row = {"rank": math.nan, "submission": ENSEMBLE_NAME, "status": STATUS_ENSEMBLE, "detail": summary.detail,
           "data_file": "", "n_folds": len(summary.picks), "contributivity": math.nan}
    test = summary.test.get(ENSEMBLE_NAME, {})
    for i, s in enumerate(names):
        valid = summary.valid.get("ensemble", math.nan) if i == 0 else math.nan
        value = test.get(s, math.nan)
        row.update({f"{s}_valid_mean": valid, f"{s}_valid_std": math.nan, f"{s}_test_mean": math.nan,
                    f"{s}_test_std": math.nan, f"{s}_bagged_valid": math.nan, f"{s}_bagged_test": value})
    for step in steps:
        row[f"{step}_time_mean"] = row[f"{step}_time_std"] = math.nan
    row["test_seconds_per_blend"] = math.nan
    return row
