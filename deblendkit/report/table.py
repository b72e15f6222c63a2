"""The leaderboard table: one row per submission (and per reference), ranked; its Markdown form.

Conventions. Means and standard deviations over folds are those ramp-test
prints (``numpy.std``, ddof=0). Submissions are ranked by one score (the
primary by default) on one step (``rank_by``, default ``valid``: the mean over
folds on the validation blends, what a participant may tune on); submissions
that were never run, failed or did not finish are listed with their status,
unranked. Reference rows (:mod:`deblendkit.report.references`) come after the
submissions, best first by the ranked score, with the status
:data:`STATUS_REFERENCE` and no rank: their scores are on the test file, in
the ``test`` and ``bagged test`` columns.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from deblendkit.errors import ConfigError
from deblendkit.report.collect import STATUS_SCORED, SubmissionResults
from deblendkit.report.ensemble import STATUS_ENSEMBLE, EnsembleSummary, ensemble_row
from deblendkit.report.references import ReferenceRow

__all__ = [
    "RANK_STEPS",
    "STATUS_REFERENCE",
    "check_rank_by",
    "lower_is_better",
    "score_directions",
    "leaderboard_table",
    "render_markdown",
    "fmt_score",
    "fmt_pm",
    "fmt_time",
    "rank_text",
]

RANK_STEPS = ("valid", "test", "bagged_valid", "bagged_test")
"""What ``--rank-by`` may name: mean over folds (valid, test) or bagged score."""
STATUS_REFERENCE = "reference"
"""Status of a reference row (never ranked)."""

_STEPS = ("train", "valid", "test")
# Directions of the problem's score types (deblendkit.ramp.score_types, whose names these are; a test
# checks both agree): report reads results files and never imports the RAMP adapter.
_HIGHER_IS_BETTER = ("deblend", "cosine", "ssim")
_LOWER_IS_BETTER = ("de_median",)
_LOWER_IS_BETTER_PREFIXES = ("flux_scatter_", "abs_flux_bias_", "flux_catastrophic_", "colour_scatter_")


def lower_is_better(score: str) -> bool | None:
    """Whether a lower value of the score named ``score`` is better; None for a name not known."""
    if score in _HIGHER_IS_BETTER:
        return False
    if score in _LOWER_IS_BETTER or score.startswith(_LOWER_IS_BETTER_PREFIXES):
        return True
    return None


def score_directions(names: Iterable[str]) -> dict[str, bool]:
    """``{score name: is_lower_the_better}`` of the known scores among ``names``."""
    return {s: d for s in names if (d := lower_is_better(s)) is not None}


def check_rank_by(rank_by: str) -> str:
    """``rank_by`` if it is one of :data:`RANK_STEPS`; else a ConfigError naming them."""
    if rank_by not in RANK_STEPS:
        raise ConfigError(f"rank_by must be one of {list(RANK_STEPS)}, got {rank_by!r}",
                          value=rank_by, allowed=RANK_STEPS)
    return rank_by


def _score_names(results: Sequence[SubmissionResults]) -> list[str]:
    names: list[str] = []
    for r in results:
        for f in r.scored_folds:
            for c in f.scores.columns:
                if c not in names:
                    names.append(c)
    return names


def _stats(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std())


def _submission_row(r: SubmissionResults, names: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "rank": math.nan, "submission": r.name, "status": r.status,
        "detail": "; ".join([d for d in (r.detail, *r.notes) if d]),
        "data_file": r.data_file or "", "n_folds": len(r.scored_folds),
    }
    for s in names:
        for step in ("valid", "test"):
            vals = [f.scores.at[step, s] if step in f.scores.index and s in f.scores.columns else math.nan
                    for f in r.scored_folds]
            row[f"{s}_{step}_mean"], row[f"{s}_{step}_std"] = _stats(vals)
        for step in ("valid", "test"):
            b = r.bagged
            row[f"{s}_bagged_{step}"] = (float(b.at[step, s]) if b is not None and step in b.index
                                         and s in b.columns else math.nan)
    for step in _STEPS:
        row[f"{step}_time_mean"], row[f"{step}_time_std"] = _stats([f.times[step] for f in r.scored_folds])
    per_blend = [f.times["test"] / f.meta["n_blends"] for f in r.scored_folds
                 if f.meta and f.meta.get("n_blends")]
    row["test_seconds_per_blend"] = _stats(per_blend)[0]
    return row


def _reference_row(ref: ReferenceRow, names: Sequence[str]) -> dict[str, Any]:
    """A reference as a table row: its scores on the test file in the test columns, nothing else."""
    row: dict[str, Any] = {
        "rank": math.nan, "submission": ref.name, "status": STATUS_REFERENCE,
        "detail": "; ".join(d for d in (ref.description, f"{ref.n_blends} blends" if ref.n_blends else "") if d),
        "data_file": ref.data_file, "n_folds": 0,
    }
    for s in names:
        value = ref.scores.get(s, math.nan)
        row.update({f"{s}_valid_mean": math.nan, f"{s}_valid_std": math.nan, f"{s}_test_mean": value,
                    f"{s}_test_std": math.nan, f"{s}_bagged_valid": math.nan, f"{s}_bagged_test": value})
    for step in _STEPS:
        row[f"{step}_time_mean"] = row[f"{step}_time_std"] = math.nan
    row["test_seconds_per_blend"] = math.nan
    return row


def _rank_key(score: str, rank_by: str) -> str:
    return f"{score}_{rank_by}" + ("_mean" if rank_by in ("valid", "test") else "")


def _ranked(table: pd.DataFrame, score: str | None, rank_by: str, lower: bool) -> pd.DataFrame:
    """Rank the scored rows on ``score``, sort them first (then the unranked by name)."""
    if score is not None:
        key = _rank_key(score, rank_by)
        ok = (table["status"] == STATUS_SCORED) & np.isfinite(table[key].astype(float))
        table.loc[ok, "rank"] = table.loc[ok, key].astype(float).rank(ascending=lower, method="min")
    return table.sort_values(["rank", "submission"], na_position="last", kind="stable").reset_index(drop=True)


def _sorted_references(refs: Sequence[ReferenceRow], names: Sequence[str], score: str | None,
                       lower: bool) -> pd.DataFrame:
    """Reference rows best first on ``score``'s test value (those without it last, in their order)."""
    table = pd.DataFrame([_reference_row(r, names) for r in refs])
    if score is None or table.empty:
        return table
    key = table[f"{score}_test_mean"].astype(float)
    order = np.lexsort((np.arange(len(table)), key.to_numpy() if lower else -key.to_numpy(),
                        ~np.isfinite(key.to_numpy())))
    return table.iloc[order].reset_index(drop=True)


def leaderboard_table(results: Sequence[SubmissionResults], *, rank_by: str = "valid",
                      score: str | None = None, directions: dict[str, bool] | None = None,
                      references: Sequence[ReferenceRow] = (),
                      ensemble: EnsembleSummary | None = None) -> pd.DataFrame:
    """One row per submission, ranked, then the ensemble's row, then one row per reference.

    Columns: ``rank`` (1 = best, NaN when not scored and for references),
    ``submission`` (the reference's name on a reference row), ``status``,
    ``detail``, ``data_file``, ``n_folds``; per score ``S``:
    ``S_valid_mean``, ``S_valid_std``, ``S_test_mean``, ``S_test_std``
    (over folds, ddof=0), ``S_bagged_valid``, ``S_bagged_test``; times
    ``train_time_mean``, ``train_time_std``, ``valid_time_mean``, ...,
    ``test_time_mean``, ``test_time_std`` (seconds per fold) and
    ``test_seconds_per_blend`` (test prediction time over the number of
    test blends, mean over folds). A reference row holds its score on the
    test file in ``S_test_mean`` and ``S_bagged_test``, NaN elsewhere.
    ``table.attrs``: ``score_names``, ``rank_by``, ``rank_score``,
    ``directions``, ``n_references``.

    Parameters
    ----------
    results : sequence of SubmissionResults
    rank_by : str
        One of :data:`RANK_STEPS`.
    score : str, optional
        Score ranked on (default: the first score column, the primary).
    directions : dict, optional
        ``{score: is_lower_the_better}`` (default: :func:`score_directions`).
    references : sequence of ReferenceRow
        Reference rows to list after the submissions (their scores not
        found in the submissions' are left out).
    ensemble : EnsembleSummary, optional
        The greedy ensemble of the submissions (:mod:`deblendkit.report.ensemble`): its row (status
        ``ensemble``, unranked: primary validation score, bagged test scores) after the submissions,
        and every submission's ``contributivity`` (NaN for one outside the ensemble, or without one).

    Raises
    ------
    ConfigError
        ``rank_by`` is not one of :data:`RANK_STEPS`, or ``score`` is not
        among the scores found.
    """
    check_rank_by(rank_by)
    names = _score_names(results)
    if not names:  # no submission was scored: the references' scores make the columns
        names = list(dict.fromkeys(s for r in references for s in r.scores))
    directions = score_directions(names) if directions is None else directions
    table = pd.DataFrame([_submission_row(r, names) for r in results])
    if table.empty and not references:
        return table
    score = score or (names[0] if names else None)
    if score is not None and score not in names:
        raise ConfigError(f"score {score!r} is not among the scores found {names}", value=score, allowed=names)
    lower = directions.get(score, False)
    if not table.empty:
        contrib = ensemble.contributivity if ensemble is not None else {}
        table["contributivity"] = [contrib.get(n, math.nan) for n in table["submission"]]
    parts = [_ranked(table, score, rank_by, lower)] if not table.empty else []
    if ensemble is not None and names:
        parts.append(pd.DataFrame([ensemble_row(ensemble, names, _STEPS)]))
    if references:
        parts.append(_sorted_references(references, names, score, lower))
    table = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    table.attrs.update(score_names=names, rank_by=rank_by, rank_score=score, directions=directions,
                       n_references=len(references), has_ensemble=ensemble is not None)
    return table


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------
def fmt_score(x: float, prec: int = 4) -> str:
    """A score with ``prec`` decimals; empty for None, NaN or inf."""
    return "" if x is None or not np.isfinite(x) else f"{x:.{prec}f}"


def fmt_time(x: float) -> str:
    """Seconds with 3 significant digits (whole seconds from 100 s); empty for None, NaN or inf."""
    if x is None or not np.isfinite(x):
        return ""
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def fmt_pm(mean: float, std: float, prec: int = 4) -> str:
    """``"mean ± std"`` (``"mean"`` when the std is not finite); empty when the mean is not finite."""
    if not np.isfinite(mean):
        return ""
    return fmt_score(mean, prec) + ("" if not np.isfinite(std) else f" ± {fmt_score(std, prec)}")


def rank_text(row: pd.Series) -> str:
    """The rank column's text: the rank, ``ref`` on a reference row, empty when unranked."""
    if row["status"] == STATUS_REFERENCE:
        return "ref"
    if row["status"] == STATUS_ENSEMBLE:
        return "ens"
    return "" if not np.isfinite(row["rank"]) else str(int(row["rank"]))


def render_markdown(table: pd.DataFrame) -> str:
    """The table in Markdown.

    Columns: rank (``ref`` on reference rows), submission, status, data file,
    folds, the primary score (valid, test, bagged test), the secondary scores
    on test (mean +- std), the train time and the test time per blend.
    """
    names = table.attrs.get("score_names", [])
    if table.empty:
        return "No submissions found.\n"
    primary, secondary = (names[0], names[1:]) if names else (None, [])
    head = ["#", "submission", "status", "data", "folds"]
    if primary:
        head += [f"{primary} valid", f"{primary} test", f"{primary} bagged test"]
    head += [f"{s} test" for s in secondary] + ["train (s)", "test s/blend"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for _, row in table.iterrows():
        status = row["status"] + (f" ({row['detail']})" if row["detail"] else "")
        folds = "" if row["status"] == STATUS_REFERENCE else str(int(row["n_folds"]))
        cells = [rank_text(row), row["submission"], status.replace("|", "\\|"), row["data_file"], folds]
        if primary:
            cells += [fmt_pm(row[f"{primary}_valid_mean"], row[f"{primary}_valid_std"]),
                      fmt_pm(row[f"{primary}_test_mean"], row[f"{primary}_test_std"]),
                      fmt_score(row[f"{primary}_bagged_test"])]
        cells += [fmt_pm(row[f"{s}_test_mean"], row[f"{s}_test_std"]) for s in secondary]
        cells += [fmt_time(row["train_time_mean"]),
                  "" if not np.isfinite(row["test_seconds_per_blend"]) else f"{row['test_seconds_per_blend']:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
