"""Reference rows of the leaderboard: what simple and ideal predictions score on the test file.

A score of 0.87 means little alone. Three predictions computed from the test
file itself bracket every submission (:func:`deblendkit.scoring.references.reference_scores`):

``zeros``
    Every galaxy predicted empty: the floor (``deblend`` = 0).
``oracle apportioning``
    The noisy blend split with the *true* isolated images as weights,
    ``y_k / sum_j y_j x blend``: what flux apportioning reaches with perfect
    templates.
``known morphology``
    Every galaxy's true shape known, only its flux per band fitted by least
    squares to the noisy blend: close to the noise-limited ceiling.

They are shown on the page and in the tables as references, marked as such and
never ranked (:data:`deblendkit.report.table.STATUS_REFERENCE`).
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from deblendkit.errors import ConfigError
from deblendkit.scoring import ReferenceScores, reference_scores

__all__ = ["REFERENCE_DESCRIPTIONS", "ReferenceRow", "as_reference_rows", "reference_rows"]

log = logging.getLogger(__name__)

#: One line on each reference of :data:`deblendkit.scoring.REFERENCES`, shown beside its row.
REFERENCE_DESCRIPTIONS = {
    "zeros": "every galaxy predicted empty (the floor)",
    "oracle apportioning": "the noisy blend split with the true isolated images as weights",
    "known morphology": "true shapes, fluxes fitted per band to the noisy blend: near the noise limit",
}


@dataclass(frozen=True)
class ReferenceRow:
    """The scores of one reference prediction on one data file, as the leaderboard shows them.

    Attributes
    ----------
    name : str
        E.g. ``"known morphology"``.
    scores : dict
        ``{score name: value}``, the names of the problem's score types
        (``deblend``, ``flux_scatter_r``, ...); a score not computed (or not
        finite) is absent.
    data_file : str
        Base name of the data file scored (``test.h5``).
    n_blends : int or None
        Blends scored (the first ``n_blends`` of the file), None if unknown.
    description : str
        One line on what the reference is.
    """

    name: str
    scores: Mapping[str, float]
    data_file: str = ""
    n_blends: int | None = None
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a reference needs a non-empty name, got {self.name!r}", value=self.name)
        scores = {str(k): float(v) for k, v in dict(self.scores).items()}
        object.__setattr__(self, "scores", {k: v for k, v in scores.items() if math.isfinite(v)})


def as_reference_rows(results: Iterable[Any] | Mapping[str, Mapping[str, float]], *, data_file: str = "",
                      n_blends: int | None = None) -> list[ReferenceRow]:
    """:class:`ReferenceRow` s of reference results, in their order.

    Parameters
    ----------
    results : iterable or mapping
        Objects with ``name`` and ``scores`` attributes (the ``rows`` of a
        :class:`deblendkit.scoring.ReferenceScores`), or ``{name: {score: value}}``.
    data_file : str
        Base name of the data file scored.
    n_blends : int, optional
        Blends scored.
    """
    pairs = results.items() if isinstance(results, Mapping) else ((r.name, r.scores) for r in results)
    return [ReferenceRow(name=str(name), scores=scores, data_file=data_file, n_blends=n_blends,
                         description=REFERENCE_DESCRIPTIONS.get(str(name), "")) for name, scores in pairs]


def reference_rows(data_file: str | os.PathLike, *, max_blends: int | None = None,
                   compute: Callable[..., ReferenceScores] | None = None) -> list[ReferenceRow]:
    """Compute the reference scores of ``data_file`` as rows of the leaderboard.

    Parameters
    ----------
    data_file : path
        A data file with its ``isolated`` images (the test file the
        submissions were scored on).
    max_blends : int, optional
        Score only the first ``max_blends`` blends (default: all).
    compute : callable, optional
        ``compute(path, max_blends=...) -> ReferenceScores`` (default
        :func:`deblendkit.scoring.reference_scores`).

    Raises
    ------
    DataFileError
        The data file is missing or unreadable.
    ConfigError
        ``max_blends`` is not a positive integer.
    """
    result = (compute or reference_scores)(os.fspath(data_file), max_blends=max_blends)
    name = os.path.basename(os.fspath(data_file))
    rows = as_reference_rows(result.rows, data_file=name, n_blends=int(result.n_blends))
    log.info("reference rows of %s (%d blends): %s", name, result.n_blends, ", ".join(r.name for r in rows))
    return rows
