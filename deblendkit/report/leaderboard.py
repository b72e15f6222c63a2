"""A static leaderboard of every submission: ``python -m deblendkit.report.leaderboard``.

It reads what ``ramp-test --submission NAME --save-output`` left in
``submissions/NAME/training_output/``:

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

and writes into ``--out``:

``index.html``
    One self-contained page (images embedded as base64 PNG, inline CSS and
    sorting script, nothing fetched): a table of every submission, sortable by
    clicking a column, with every score as mean +- standard deviation over the
    CV folds on validation and test and the bagged test score, the train and
    predict times; per submission the per-fold scores, the score versus
    blendedness and magnitude, a gallery of its deblends next to the truth;
    the data set's provenance (simulation config, seed, package versions).
``leaderboard.csv``, ``leaderboard.md``
    The table as CSV (every number) and as Markdown (the main columns).

Conventions. Means and standard deviations over folds are those ramp-test
prints (``numpy.std``, ddof=0). Submissions are ranked by one score (the
primary by default) on one step (``--rank-by``, default ``valid``: the mean
over folds on the validation blends, what a participant may tune on);
submissions that were never run, failed or did not finish are listed with a
status, unranked. A run writes its folds in order, so a fold older than the
fold before it was left by an earlier run (e.g. ``fold_2`` of a full run next
to a 2-fold ``--quick-test`` run) and is ignored, as is a
``bagged_scores.csv`` older than the last fold kept.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deblendkit.errors import ConfigError, DataFileError, DeblendKitError
from deblendkit.report.results import GALAXY_TABLE_FILE, GALLERY_FILE, RESULTS_FILE, read_galaxy_table, read_gallery, \
    read_results_meta

__all__ = [
    "STATUS_SCORED",
    "STATUS_NOT_RUN",
    "STATUS_FAILED",
    "STATUS_INCOMPLETE",
    "RANK_STEPS",
    "FoldResult",
    "SubmissionResults",
    "load_submission",
    "collect",
    "score_directions",
    "leaderboard_table",
    "data_provenance",
    "render_html",
    "render_markdown",
    "build",
    "main",
]

log = logging.getLogger(__name__)

STATUS_SCORED = "scored"
STATUS_NOT_RUN = "not run"
STATUS_FAILED = "failed"
STATUS_INCOMPLETE = "incomplete"
RANK_STEPS = ("valid", "test", "bagged_valid", "bagged_test")
"""What ``--rank-by`` may name: mean over folds (valid, test) or bagged score."""

_STEPS = ("train", "valid", "test")
_TIME_FILES = {"train": "train_time", "valid": "valid_time", "test": "test_time"}
_ERROR_STATES = ("training_error", "validating_error", "testing_error")


# ---------------------------------------------------------------------------
# Reading one submission
# ---------------------------------------------------------------------------
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
        p = self.path / GALAXY_TABLE_FILE
        return p if p.is_file() else None

    @property
    def gallery_path(self) -> Path | None:
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


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------
def score_directions(bands: Sequence[str] | None) -> dict[str, bool]:
    """``{score name: is_lower_the_better}`` of the problem's score types for ``bands``."""
    from deblendkit.ramp.score_types import make_score_types

    if not bands:
        from deblendkit.config import SimConfig

        bands = SimConfig().band_names
    return {st.name: bool(st.is_lower_the_better) for st in make_score_types(tuple(bands))}


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


def leaderboard_table(results: Sequence[SubmissionResults], *, rank_by: str = "valid",
                      score: str | None = None, directions: dict[str, bool] | None = None) -> pd.DataFrame:
    """One row per submission, ranked.

    Columns: ``rank`` (1 = best, NaN when not scored), ``submission``,
    ``status``, ``detail``, ``data_file``, ``n_folds``; per score ``S``:
    ``S_valid_mean``, ``S_valid_std``, ``S_test_mean``, ``S_test_std``
    (over folds, ddof=0), ``S_bagged_valid``, ``S_bagged_test``; times
    ``train_time_mean``, ``train_time_std``, ``valid_time_mean``, ...,
    ``test_time_mean``, ``test_time_std`` (seconds per fold) and
    ``test_seconds_per_blend`` (test prediction time over the number of
    test blends, mean over folds).

    Parameters
    ----------
    results : sequence of SubmissionResults
    rank_by : str
        One of :data:`RANK_STEPS`.
    score : str, optional
        Score ranked on (default: the first score column, the primary).
    directions : dict, optional
        ``{score: is_lower_the_better}`` (default: :func:`score_directions` of
        the bands the results were computed with).
    """
    if rank_by not in RANK_STEPS:
        raise ConfigError(f"rank_by must be one of {list(RANK_STEPS)}, got {rank_by!r}")
    names = _score_names(results)
    if directions is None:
        bands = next((f.meta.get("bands") for r in results for f in r.folds if f.meta), None)
        directions = score_directions(bands)
    rows = []
    for r in results:
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
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    score = score or (names[0] if names else None)
    if score is not None:
        if score not in names:
            raise ConfigError(f"score {score!r} is not among the scores found {names}")
        key = f"{score}_{rank_by}" + ("_mean" if rank_by in ("valid", "test") else "")
        lower = directions.get(score, False)
        ok = (table["status"] == STATUS_SCORED) & np.isfinite(table[key].astype(float))
        order = table.loc[ok, key].astype(float).rank(ascending=lower, method="min")
        table.loc[ok, "rank"] = order
    table = table.sort_values(["rank", "submission"], na_position="last", kind="stable").reset_index(drop=True)
    table.attrs.update(score_names=names, rank_by=rank_by, rank_score=score, directions=directions)
    return table


# ---------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------
def data_provenance(data_dir: str | os.PathLike | None) -> list[dict[str, Any]]:
    """Attributes of every data file (``*.h5``) of ``data_dir``: one dict per file.

    Keys: ``file``, ``error`` (a message if the file is unreadable, else
    None), and for readable files ``split``, ``n_blends``, ``seed``,
    ``first_index``, ``created``, ``schema_version``, ``survey``, ``bands``,
    ``pixel_scale``, ``stamp_size``, ``max_galaxies``, ``config`` (dict),
    ``versions`` (dict).
    """
    from deblendkit.storage.files import validate_file

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


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------
def _fmt(x: float, prec: int = 4) -> str:
    return "" if x is None or not np.isfinite(x) else f"{x:.{prec}f}"


def _fmt_time(x: float) -> str:
    if x is None or not np.isfinite(x):
        return ""
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def _pm(mean: float, std: float, prec: int = 4) -> str:
    if not np.isfinite(mean):
        return ""
    return _fmt(mean, prec) + ("" if not np.isfinite(std) else f" ± {_fmt(std, prec)}")


def _attr_value(x: Any) -> str:
    if isinstance(x, (float, np.floating)):
        return "" if not np.isfinite(x) else repr(float(x))
    return html.escape(str(x), quote=True)


def _anchor(name: str) -> str:
    return "sub-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
h3{font-size:1.05em}
.wrap{overflow-x:auto}
table{border-collapse:collapse;font-size:12px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
td.text,th.text{text-align:left}
thead th{background:#f3f3f3}
th.sortable{cursor:pointer;user-select:none}
th.sortable:hover{background:#e4e9f2}
th.sorted-asc::after{content:" \\25B2"} th.sorted-desc::after{content:" \\25BC"}
tr.status-scored td.status{color:#176317}
tr.status-failed td.status{color:#b00020;font-weight:bold}
tr.status-incomplete td.status,tr.status-not-run td.status{color:#8a6d00}
td.primary{font-weight:bold}
.detail{color:#666;font-size:11px;white-space:normal;max-width:28em;text-align:left}
img{max-width:100%;border:1px solid #eee}
pre{background:#f7f7f7;padding:.6em;font-size:11px;overflow-x:auto}
.note{color:#555;font-size:13px}
"""

_JS = """
(function(){
  var table=document.getElementById('leaderboard');
  if(!table){return;}
  var tbody=table.tBodies[0];
  function val(row,col){
    var td=row.querySelector('td[data-col="'+col+'"]');
    if(!td){return null;}
    var v=td.getAttribute('data-value');
    return v;
  }
  function sortBy(th,dir){
    var col=th.getAttribute('data-col'), numeric=th.getAttribute('data-type')==='num';
    var rows=Array.prototype.slice.call(tbody.rows);
    rows.sort(function(a,b){
      var x=val(a,col), y=val(b,col);
      var xe=(x===null||x===''), ye=(y===null||y==='');
      if(xe&&ye){return 0;} if(xe){return 1;} if(ye){return -1;}
      if(numeric){x=parseFloat(x);y=parseFloat(y);return dir*(x-y);}
      return dir*x.localeCompare(y);
    });
    rows.forEach(function(r){tbody.appendChild(r);});
    Array.prototype.forEach.call(table.querySelectorAll('th.sortable'),function(h){
      h.classList.remove('sorted-asc','sorted-desc');h.removeAttribute('aria-sort');});
    th.classList.add(dir>0?'sorted-asc':'sorted-desc');
    th.setAttribute('aria-sort',dir>0?'ascending':'descending');
    table.setAttribute('data-sorted-by',col);
  }
  Array.prototype.forEach.call(table.querySelectorAll('th.sortable'),function(th){
    th.addEventListener('click',function(){
      var dir;
      if(th.classList.contains('sorted-asc')){dir=-1;}
      else if(th.classList.contains('sorted-desc')){dir=1;}
      else{dir=th.getAttribute('data-first')==='desc'?-1:1;}
      sortBy(th,dir);
    });
  });
})();
"""


def _cell(col: str, text: str, value: Any, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<td data-col="{col}" data-value="{_attr_value(value)}"{c}>{html.escape(text)}</td>'


def _th(col: str, label: str, *, numeric: bool, first_desc: bool, cls: str = "", title: str = "") -> str:
    classes = " ".join(x for x in ("sortable", cls) if x)
    t = f' title="{html.escape(title, quote=True)}"' if title else ""
    return (f'<th class="{classes}" data-col="{col}" data-type="{"num" if numeric else "text"}" '
            f'data-first="{"desc" if first_desc else "asc"}"{t}>{html.escape(label)}</th>')


def _main_table(table: pd.DataFrame) -> str:
    names = table.attrs.get("score_names", [])
    directions = table.attrs.get("directions", {})
    primary = names[0] if names else None
    h1 = ['<th rowspan="2" class="sortable" data-col="rank" data-type="num" data-first="asc">#</th>',
          _th("submission", "submission", numeric=False, first_desc=False, cls="text").replace(
              "<th ", '<th rowspan="2" ', 1),
          _th("status", "status", numeric=False, first_desc=False, cls="text").replace("<th ", '<th rowspan="2" ', 1),
          _th("data_file", "data", numeric=False, first_desc=False, cls="text").replace("<th ", '<th rowspan="2" ', 1),
          _th("n_folds", "folds", numeric=True, first_desc=True).replace("<th ", '<th rowspan="2" ', 1)]
    h2 = []
    for s in names:
        lower = directions.get(s)
        arrow = "" if lower is None else (" ↓" if lower else " ↑")
        tip = "" if lower is None else ("lower is better" if lower else "higher is better")
        h1.append(f'<th colspan="3" title="{tip}">{html.escape(s + arrow)}</th>')
        for step, label in (("valid_mean", "valid"), ("test_mean", "test"), ("bagged_test", "bagged test")):
            h2.append(_th(f"{s}_{step}", label, numeric=True, first_desc=not lower,
                          title=f"{s}, {label}" + (" (mean ± std over folds)" if step.endswith("mean") else "")))
    h1.append('<th colspan="4">time (s)</th>')
    for col, label, tip in (("train_time_mean", "train", "fit, per fold"),
                            ("valid_time_mean", "predict valid", "predict validation (+ training subsample), per fold"),
                            ("test_time_mean", "predict test", "predict the test set, per fold"),
                            ("test_seconds_per_blend", "per blend", "test prediction time per blend")):
        h2.append(_th(col, label, numeric=True, first_desc=False, title=tip))
    body = []
    for _, row in table.iterrows():
        status_cls = "status-" + str(row["status"]).replace(" ", "-")
        cells = [_cell("rank", "" if not np.isfinite(row["rank"]) else str(int(row["rank"])), row["rank"]),
                 f'<td data-col="submission" data-value="{html.escape(row["submission"], quote=True)}" class="text">'
                 f'<a href="#{_anchor(row["submission"])}">{html.escape(row["submission"])}</a></td>',
                 f'<td data-col="status" data-value="{html.escape(row["status"])}" class="text status">'
                 f'{html.escape(row["status"])}'
                 + (f'<div class="detail">{html.escape(row["detail"])}</div>' if row["detail"] else "") + "</td>",
                 _cell("data_file", row["data_file"], row["data_file"], "text"),
                 _cell("n_folds", str(int(row["n_folds"])), row["n_folds"])]
        for s in names:
            cls = "primary" if s == primary else ""
            for step in ("valid", "test"):
                m, sd = row[f"{s}_{step}_mean"], row[f"{s}_{step}_std"]
                cells.append(_cell(f"{s}_{step}_mean", _pm(m, sd), m, cls))
            b = row[f"{s}_bagged_test"]
            cells.append(_cell(f"{s}_bagged_test", _fmt(b), b, cls))
        for col in ("train_time_mean", "valid_time_mean", "test_time_mean"):
            m, sd = row[col], row[col.replace("_mean", "_std")]
            text = "" if not np.isfinite(m) else _fmt_time(m) + ("" if not np.isfinite(sd) else f" ± {_fmt_time(sd)}")
            cells.append(_cell(col, text, m))
        spb = row["test_seconds_per_blend"]
        cells.append(_cell("test_seconds_per_blend", "" if not np.isfinite(spb) else f"{spb:.3g}", spb))
        body.append(f'<tr class="{status_cls}" data-submission="{html.escape(row["submission"], quote=True)}">'
                    + "".join(cells) + "</tr>")
    return ('<div class="wrap"><table id="leaderboard" data-sorted-by="rank"><thead><tr>' + "".join(h1)
            + "</tr><tr>" + "".join(h2) + "</tr></thead><tbody>\n" + "\n".join(body)
            + "\n</tbody></table></div>")


def _fold_table(r: SubmissionResults) -> str:
    if not r.scored_folds:
        return ""
    frames = []
    for f in r.scored_folds:
        df = f.scores.copy()
        df["time (s)"] = [f.times.get(step, math.nan) for step in df.index]
        df.index = pd.MultiIndex.from_product([[f"fold {f.fold}"], df.index])
        frames.append(df)
    if r.bagged is not None:
        b = r.bagged.copy()
        b.index = pd.MultiIndex.from_product([["bagged"], b.index])
        frames.append(b)
    df = pd.concat(frames)
    head = "<tr><th class='text'>fold</th><th class='text'>step</th>" + "".join(
        f"<th>{html.escape(str(c))}</th>" for c in df.columns) + "</tr>"
    rows = []
    for (fold, step), vals in df.iterrows():
        rows.append(f"<tr><td class='text'>{html.escape(fold)}</td><td class='text'>{html.escape(str(step))}</td>"
                    + "".join(f"<td>{_fmt_time(v) if c == 'time (s)' else _fmt(v)}</td>" for c, v in vals.items())
                    + "</tr>")
    return ('<div class="wrap"><table class="folds"><thead>' + head + "</thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")


def _img(uri: str, alt: str, cls: str) -> str:
    return f'<p><img class="{cls}" alt="{html.escape(alt, quote=True)}" src="{uri}"></p>'


def _galaxy_tables(r: SubmissionResults) -> tuple[list[pd.DataFrame], str | None]:
    """The per-galaxy test tables of a submission's scored folds, or an error message."""
    if not r.scored_folds:
        return [], None
    try:
        return [read_galaxy_table(f.galaxy_table_path) for f in r.scored_folds if f.galaxy_table_path], None
    except DataFileError as exc:
        return [], str(exc)


def _submission_section(r: SubmissionResults, tables: tuple[list[pd.DataFrame], str | None], *,
                        images: bool, ref_band: str) -> str:
    from deblendkit.report.plots import figure_png, gallery_figure, png_data_uri, score_vs_figure

    parts = [f'<section class="submission" id="{_anchor(r.name)}"><h3>{html.escape(r.name)} '
             f'<small>({html.escape(r.status)})</small></h3>']
    lines = [d for d in (r.detail, *r.notes) if d]
    if r.data_file:
        lines.append(f"test data: {r.data_file}")
    for d in lines:
        parts.append(f'<p class="note">{html.escape(d)}</p>')
    parts.append(_fold_table(r))
    if images and r.scored_folds:
        tables, problem = tables
        if problem:
            parts.append(f'<p class="note">{html.escape(problem)}</p>')
        if tables:
            fig = score_vs_figure({r.name: tables}, ref_band=ref_band)
            parts.append(_img(png_data_uri(figure_png(fig)), f"{r.name}: score versus blendedness and magnitude",
                              "score-vs"))
        gal = next((f.gallery_path for f in r.scored_folds if f.gallery_path), None)
        if gal is not None:
            try:
                g = read_gallery(gal)
                fig = gallery_figure(g)
                parts.append(f'<p class="note">Test blends (fold {gal.parent.name[5:]}): in each pair of rows, '
                             "the blend and the true galaxies (b = blendedness), then the sum of the "
                             "predicted galaxies and each prediction (s = score). Lupton colour "
                             f"composites ({'/'.join(g.bands)} as red/green/blue).</p>")
                parts.append(_img(png_data_uri(figure_png(fig, dpi=90)), f"{r.name}: gallery of deblended blends",
                                  "gallery"))
            except DataFileError as exc:
                parts.append(f'<p class="note">{html.escape(str(exc))}</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _provenance_section(prov: list[dict[str, Any]], results: Sequence[SubmissionResults]) -> str:
    parts = ['<h2 id="provenance">Data provenance</h2>']
    if not prov:
        parts.append('<p class="note">No data files found.</p>')
        return "\n".join(parts)
    cols = ("file", "split", "n_blends", "seed", "first_index", "created", "schema_version", "survey",
            "bands", "pixel_scale", "stamp_size", "max_galaxies")
    head = "".join(f"<th class='text'>{c}</th>" for c in cols)
    rows = []
    for p in prov:
        if p.get("error"):
            rows.append(f"<tr><td class='text'>{html.escape(p['file'])}</td>"
                        f"<td class='text' colspan='{len(cols) - 1}'>unreadable: {html.escape(p['error'])}</td></tr>")
            continue
        rows.append("<tr>" + "".join(
            f"<td class='text'>{html.escape(', '.join(p[c]) if isinstance(p[c], list) else str(p[c]))}</td>"
            for c in cols) + "</tr>")
    parts.append(f'<div class="wrap"><table class="provenance"><thead><tr>{head}</tr></thead><tbody>'
                 + "".join(rows) + "</tbody></table></div>")
    # Results computed on another data set than the one here.
    created = {p["file"]: p.get("created") for p in prov if not p.get("error")}
    for r in results:
        for f in r.folds:
            if f.meta and f.meta.get("data_file") in created and f.meta.get("data_created") \
                    and f.meta["data_created"] != created[f.meta["data_file"]]:
                parts.append(f'<p class="note">Warning: {html.escape(r.name)} was scored on a '
                             f'{html.escape(f.meta["data_file"])} created {html.escape(str(f.meta["data_created"]))}, '
                             f'not the one here (created {html.escape(str(created[f.meta["data_file"]]))}).</p>')
                break
    ref = next((p for p in prov if not p.get("error") and p.get("split") == "test"),
               next((p for p in prov if not p.get("error")), None))
    if ref is not None:
        parts.append(f"<h3>Simulation config ({html.escape(ref['file'])})</h3>"
                     f"<pre>{html.escape(json.dumps(ref.get('config'), indent=1, sort_keys=True))}</pre>")
        versions = json.dumps(ref.get("versions"), indent=1, sort_keys=True)
        parts.append(f"<h3>Package versions</h3><pre>{html.escape(versions)}</pre>")
    return "\n".join(parts)


def render_html(results: Sequence[SubmissionResults], table: pd.DataFrame, prov: list[dict[str, Any]], *,
                title: str = "Galaxy deblending leaderboard", images: bool = True, ref_band: str = "r") -> str:
    """The leaderboard page as one self-contained HTML string."""
    from deblendkit.report.plots import figure_png, png_data_uri, score_vs_figure

    by_name = {r.name: r for r in results}
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rank_score = table.attrs.get("rank_score")
    rank_by = table.attrs.get("rank_by", "valid")
    rank_text = {"valid": "mean over CV folds on the validation blends",
                 "test": "mean over CV folds on the test blends",
                 "bagged_valid": "bagged validation score", "bagged_test": "bagged test score"}[rank_by]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">{len(results)} submission(s); generated {now}. '
             + (f"Ranked by <b>{html.escape(str(rank_score))}</b>, {rank_text}. " if rank_score else "")
             + "Scores are mean ± standard deviation over the cross-validation folds; the bagged test "
               "score is that of the mean of the folds' test predictions. Click a column header to sort.</p>",
             _main_table(table) if not table.empty else '<p class="note">No submissions found.</p>']
    names = list(table["submission"]) if not table.empty else []
    per_sub = {name: _galaxy_tables(by_name[name]) if images else ([], None) for name in names}
    if images:
        tables = {name: t for name, (t, _) in per_sub.items() if t}
        if tables:
            fig = score_vs_figure(tables, ref_band=ref_band, show_points=False)
            parts.append("<h2>Score versus blendedness and magnitude</h2>")
            parts.append('<p class="note">Test galaxies binned by their true blendedness and magnitude; '
                         "points are the mean score per bin, bars the spread over the CV folds.</p>")
            parts.append(_img(png_data_uri(figure_png(fig)), "all submissions: score versus blendedness and magnitude",
                              "score-vs"))
    parts.append("<h2>Submissions</h2>")
    for name in names:
        parts.append(_submission_section(by_name[name], per_sub[name], images=images, ref_band=ref_band))
    parts.append(_provenance_section(prov, results))
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts)


def render_markdown(table: pd.DataFrame) -> str:
    """The table in Markdown: rank, submission, status, primary score (valid, test, bagged test),
    secondary scores on test (mean +- std), train time and test time per blend."""
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
        cells = ["" if not np.isfinite(row["rank"]) else str(int(row["rank"])), row["submission"],
                 status.replace("|", "\\|"), row["data_file"], str(int(row["n_folds"]))]
        if primary:
            cells += [_pm(row[f"{primary}_valid_mean"], row[f"{primary}_valid_std"]),
                      _pm(row[f"{primary}_test_mean"], row[f"{primary}_test_std"]),
                      _fmt(row[f"{primary}_bagged_test"])]
        cells += [_pm(row[f"{s}_test_mean"], row[f"{s}_test_std"]) for s in secondary]
        cells += [_fmt_time(row["train_time_mean"]),
                  "" if not np.isfinite(row["test_seconds_per_blend"]) else f"{row['test_seconds_per_blend']:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def build(submissions_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
          data_dir: str | os.PathLike | None = None, title: str = "Galaxy deblending leaderboard",
          rank_by: str = "valid", images: bool = True) -> dict[str, Path]:
    """Read every submission's results and write ``index.html``, ``leaderboard.csv``, ``leaderboard.md``.

    Returns
    -------
    dict
        ``{"html": path, "csv": path, "md": path}``.

    Raises
    ------
    ConfigError
        ``submissions_dir`` is missing or ``rank_by`` unknown.
    """
    results = collect(submissions_dir)
    table = leaderboard_table(results, rank_by=rank_by)
    prov = data_provenance(data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "index.html", "csv": out / "leaderboard.csv", "md": out / "leaderboard.md"}
    paths["html"].write_text(render_html(results, table, prov, title=title, images=images), encoding="utf-8")
    table.to_csv(paths["csv"], index=False)
    paths["md"].write_text(render_markdown(table), encoding="utf-8")
    log.debug("leaderboard of %d submission(s) written to %s", len(results), out)
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deblendkit.report.leaderboard",
        description="Build a static HTML (+ CSV, Markdown) leaderboard from the results that "
        "`ramp-test --submission NAME --save-output` left in each submission folder.",
    )
    p.add_argument("--submissions", default="submissions", help="folder of submissions (default %(default)s)")
    p.add_argument("--data", default="data", help="data folder, for the provenance section (default %(default)s)")
    p.add_argument("--out", default="leaderboard", help="output folder (default %(default)s)")
    p.add_argument("--title", default="Galaxy deblending leaderboard", help="page title")
    p.add_argument("--rank-by", default="valid", choices=RANK_STEPS,
                   help="rank on the primary score's mean over folds on valid/test, or its bagged "
                   "valid/test score (default %(default)s)")
    p.add_argument("--no-images", action="store_true", help="leave out the plots and galleries (faster)")
    p.add_argument("--quiet", action="store_true", help="only errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit code (2 with a one-line message on a kit error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        paths = build(args.submissions, args.out, data_dir=args.data, title=args.title,
                      rank_by=args.rank_by, images=not args.no_images)
    except DeblendKitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"leaderboard: {paths['html']}  ({paths['csv'].name}, {paths['md'].name} beside it)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
