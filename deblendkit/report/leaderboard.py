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
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from deblendkit.errors import DeblendKitError
from deblendkit.report.collect import SubmissionResults, collect, data_provenance
from deblendkit.report.ensemble import EnsembleSummary, read_ensemble
from deblendkit.report.page import render_html
from deblendkit.report.references import ReferenceRow, reference_rows
from deblendkit.report.table import check_rank_by, leaderboard_table, render_markdown

__all__ = ["reference_data_file", "build"]

log = logging.getLogger(__name__)


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
          reference_blends: int | None = None, ensemble_dir: str | os.PathLike | None = None) -> dict[str, Path]:
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

    Returns
    -------
    dict
        ``{"html": path, "csv": path, "md": path}``.

    Raises
    ------
    ConfigError
        ``submissions_dir`` is missing or ``rank_by`` unknown.
    """
    check_rank_by(rank_by)  # before the reference scores are computed
    results = collect(submissions_dir)
    refs = _references(results, data_dir, reference_blends) if references else []
    ens = _ensemble(submissions_dir, ensemble_dir)
    table = leaderboard_table(results, rank_by=rank_by, references=refs, ensemble=ens)
    prov = data_provenance(data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "index.html", "csv": out / "leaderboard.csv", "md": out / "leaderboard.md"}
    paths["html"].write_text(render_html(results, table, prov, title=title, images=images, ensemble=ens),
                             encoding="utf-8")
    table.to_csv(paths["csv"], index=False)
    paths["md"].write_text(render_markdown(table), encoding="utf-8")
    log.debug("leaderboard of %d submission(s), %d reference(s) written to %s", len(results), len(refs), out)
    return paths
