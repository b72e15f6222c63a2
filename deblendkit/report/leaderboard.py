"""A static leaderboard of every submission: ``python -m deblendkit.cli.leaderboard``.

:func:`build` reads what ``ramp-test --submission NAME --save-output`` left in
each ``submissions/NAME/training_output/`` (:mod:`deblendkit.report.collect`),
makes the table (:mod:`deblendkit.report.table`), adds the reference rows of
the test file (:mod:`deblendkit.report.references`) and writes into the output
folder:

``index.html``
    One self-contained page (:mod:`deblendkit.report.page`).
``leaderboard.csv``, ``leaderboard.md``
    The table as CSV (every number) and as Markdown (the main columns).
``blind_leaderboard.csv``, ``blind_leaderboard.md``
    The blind track's table (issue #17), when a blind submissions folder is
    given or found (``blind/submissions`` beside ``submissions_dir``): what
    ``ramp-test --submission NAME --save-output`` left in each
    ``blind/submissions/NAME/training_output/`` (the same rampwf files as the
    first track, read by :func:`deblendkit.report.collect.load_submission`),
    ranked on the ``blind`` score, with precision, recall, F1 and the
    unrecognised-blend fraction; a section of its own on the page.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from deblendkit._fs import atomic_write_text
from deblendkit.errors import ConfigError, DeblendKitError
from deblendkit.report.collect import SubmissionResults, collect, data_provenance, load_submission
from deblendkit.report.ensemble import EnsembleSummary, read_ensemble
from deblendkit.report.page import render_html
from deblendkit.report.references import ReferenceRow, reference_rows
from deblendkit.report.table import check_rank_by, leaderboard_table, render_markdown, score_directions

__all__ = ["BLIND_DIRECTIONS", "BLIND_SCORES", "blind_submissions_dir", "collect_blind", "blind_table",
           "reference_data_file", "build"]

log = logging.getLogger(__name__)

#: The blind track's score types (deblendkit.ramp.blind_score_types, primary first) and their directions
#: (True: lower is better); report reads results files and never imports the RAMP adapter.
BLIND_DIRECTIONS = {"blind": False, "recall": False, "precision": False, "f1": False, "unrecognised": True,
                    "deblend_matched": False}
#: The scores the page's blind table shows, in order.
BLIND_SCORES = ("blind", "precision", "recall", "f1", "unrecognised", "deblend_matched")


def blind_submissions_dir(submissions_dir: str | os.PathLike,
                          blind_dir: str | os.PathLike | None = None) -> Path | None:
    """The blind track's submissions folder: ``blind_dir`` when given, else ``blind/submissions`` beside
    ``submissions_dir`` when it is a directory, else None.

    Raises
    ------
    ConfigError
        ``blind_dir`` is given and is not a directory.
    """
    if blind_dir is not None:
        if not Path(blind_dir).is_dir():
            raise ConfigError(f"blind submissions directory {str(blind_dir)!r} does not exist or is not a directory",
                              value=str(blind_dir))
        return Path(blind_dir)
    found = Path(submissions_dir).parent / "blind" / "submissions"
    return found if found.is_dir() else None


def collect_blind(blind_dir: str | os.PathLike) -> list[SubmissionResults]:
    """Every blind submission of ``blind_dir`` (a folder with ``detector.py`` or ``training_output/``), by name.

    The results are rampwf's files, as for the first track (:func:`load_submission`); a submission never run
    gets the status ``not run``.
    """
    root = Path(blind_dir)
    subs = [p for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith((".", "_"))
            and ((p / "detector.py").is_file() or (p / "training_output").is_dir())]
    return [load_submission(p) for p in subs]


def blind_table(results: Sequence[SubmissionResults], rank_by: str = "valid") -> pd.DataFrame:
    """The blind track's leaderboard table: :func:`leaderboard_table` ranked on ``blind``.

    The columns are those of the first track's table (per score ``S``: ``S_valid_mean``, ``S_test_mean``,
    ``S_bagged_test``, ...); ``recall``, ``precision``, ``f1``, ``unrecognised``... are fractions of true
    sources or detections (:mod:`deblendkit.scoring.blind_metrics`). No reference rows, no ensemble.
    """
    scored = any(r.scored_folds for r in results)
    directions = {**score_directions(s for r in results for f in r.scored_folds for s in f.scores.columns),
                  **BLIND_DIRECTIONS}
    return leaderboard_table(results, rank_by=rank_by, score="blind" if scored else None, directions=directions)


def reference_data_file(results: Sequence[SubmissionResults], data_dir: str | os.PathLike | None) -> Path | None:
    """The data file of ``data_dir`` the reference rows are computed on.

    The test file most of the submissions were scored on (``results.json``'s
    ``data_file``) when it is in ``data_dir``, else ``test.h5``, else
    ``test_mini.h5``; None when there is none.
    """
    if data_dir is None or not Path(data_dir).is_dir():
        return None
    used = Counter(r.data_file for r in results if r.data_file)
    for name in [n for n, _ in used.most_common()] + ["test.h5", "test_mini.h5"]:
        path = Path(data_dir) / name
        if path.is_file():
            return path
    return None


def _references(results: Sequence[SubmissionResults], data_dir, max_blends: int | None) -> list[ReferenceRow]:
    path = reference_data_file(results, data_dir)
    if path is None:
        log.info("no test file in %s: no reference rows", data_dir)
        return []
    try:
        return reference_rows(path, max_blends=max_blends)
    except DeblendKitError as exc:
        log.warning("reference rows left out: %s", exc)
        return []


def _ensemble(submissions_dir, ensemble_dir) -> EnsembleSummary | None:
    directory = Path(ensemble_dir) if ensemble_dir is not None else Path(submissions_dir).parent / "ensemble"
    try:
        return read_ensemble(directory)
    except DeblendKitError as exc:
        log.warning("ensemble left out: %s", exc)
        return None


def build(submissions_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
          data_dir: str | os.PathLike | None = None, title: str = "Galaxy deblending leaderboard",
          rank_by: str = "valid", images: bool = True, references: bool = True,
          reference_blends: int | None = None, ensemble_dir: str | os.PathLike | None = None,
          blind_dir: str | os.PathLike | None = None, blind: bool = True) -> dict[str, Path]:
    """Read every submission's results and write ``index.html``, ``leaderboard.csv``, ``leaderboard.md``.

    Parameters
    ----------
    submissions_dir : path
        Folder of submissions.
    out_dir : path
        Output folder (created if needed).
    data_dir : path, optional
        Data folder: provenance section and the test file of the reference rows.
    title : str
    rank_by : str
        One of :data:`deblendkit.report.table.RANK_STEPS`.
    images : bool
        Include the plots and galleries.
    references : bool
        Add the reference rows (zeros, oracle apportioning, known morphology)
        of the test file (:func:`reference_data_file`).
    reference_blends : int, optional
        Score the references on the first ``reference_blends`` blends only
        (default: the whole file).
    ensemble_dir : path, optional
        Where ``deblend-ensemble`` wrote the ensemble (default: ``ensemble/`` beside ``submissions_dir``);
        shown when it holds one (:mod:`deblendkit.report.ensemble`).
    blind_dir : path, optional
        The blind track's submissions (default: ``blind/submissions`` beside ``submissions_dir``, when
        there is one): its own section and table (:func:`blind_table`).
    blind : bool
        False leaves the blind track out.

    Returns
    -------
    dict
        ``{"html": path, "csv": path, "md": path}``, and ``"blind_csv"``, ``"blind_md"`` when the blind
        track is shown.

    Raises
    ------
    ConfigError
        ``submissions_dir`` or a given ``blind_dir`` is missing, or ``rank_by`` unknown.
    """
    check_rank_by(rank_by)  # before the reference scores are computed
    results = collect(submissions_dir)
    bdir = blind_submissions_dir(submissions_dir, blind_dir) if blind else None
    btable = blind_table(collect_blind(bdir), rank_by) if bdir is not None else None
    refs = _references(results, data_dir, reference_blends) if references else []
    ens = _ensemble(submissions_dir, ensemble_dir)
    table = leaderboard_table(results, rank_by=rank_by, references=refs, ensemble=ens)
    prov = data_provenance(data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "index.html", "csv": out / "leaderboard.csv", "md": out / "leaderboard.md"}
    html_text = render_html(results, table, prov, title=title, images=images, ensemble=ens, blind_table=btable)
    atomic_write_text(paths["html"], html_text)
    atomic_write_text(paths["csv"], table.to_csv(index=False))
    atomic_write_text(paths["md"], render_markdown(table))
    if btable is not None:
        paths.update(blind_csv=out / "blind_leaderboard.csv", blind_md=out / "blind_leaderboard.md")
        atomic_write_text(paths["blind_csv"], btable.to_csv(index=False))
        atomic_write_text(paths["blind_md"], render_markdown(btable))
    log.debug("leaderboard of %d submission(s), %d reference(s) written to %s", len(results), len(refs), out)
    return paths
