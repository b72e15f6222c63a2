"""The leaderboard page: one self-contained HTML file.

Images are embedded as base64 PNG, the CSS and the sorting script are inline,
nothing is fetched. The page holds a table of every submission, sortable by
clicking a column, with every score as mean +- standard deviation over the CV
folds on validation and test and the bagged test score, the train and predict
times; then the reference rows (:mod:`deblendkit.report.references`),
marked and not ranked; per submission the per-fold scores, the score versus
blendedness and magnitude, a gallery of its deblends next to the truth; the
data set's provenance (simulation config, seed, package versions); and, when
given, the blind track's table (detect and deblend, scored by matching; issue
#17) in a section of its own (:func:`blind_section`).
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from deblendkit.errors import DataFileError
from deblendkit.report.collect import SubmissionResults
from deblendkit.report.ensemble import ENSEMBLE_NAME, STATUS_ENSEMBLE, EnsembleSummary
from deblendkit.report.plots import figure_png, gallery_figure, png_data_uri, score_vs_figure
from deblendkit.report.results import read_galaxy_table, read_gallery
from deblendkit.report.table import STATUS_REFERENCE, fmt_pm, fmt_score, fmt_time, rank_text

__all__ = ["render_html", "blind_section"]


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
tr.reference td{background:#f4f6fa;font-style:italic}
tr.ensemble td{background:#f3f8f1;font-weight:600}
tr.reference td.status{color:#2b4a7a}
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


def _header(names: Sequence[str], directions: dict[str, bool]) -> str:
    """The two header rows of the main table."""
    h1 = ['<th rowspan="2" class="sortable" data-col="rank" data-type="num" data-first="asc">#</th>']
    for col, label, numeric, first_desc in (("submission", "submission", False, False),
                                            ("status", "status", False, False),
                                            ("data_file", "data", False, False), ("n_folds", "folds", True, True),
                                            ("contributivity", "contrib.", True, True)):
        cls = "" if numeric else "text"
        th = _th(col, label, numeric=numeric, first_desc=first_desc, cls=cls)
        h1.append(th.replace("<th ", '<th rowspan="2" ', 1))
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
    return "<tr>" + "".join(h1) + "</tr><tr>" + "".join(h2) + "</tr>"


def _row(row: pd.Series, names: Sequence[str]) -> str:
    """One row of the main table: a submission (linked to its section) or a reference (marked)."""
    reference = row["status"] == STATUS_REFERENCE
    ensemble = row["status"] == STATUS_ENSEMBLE
    name = html.escape(row["submission"], quote=True)
    label = (f'<a href="#ensemble">{name}</a>' if ensemble else html.escape(row["submission"]) if reference
             else f'<a href="#{_anchor(row["submission"])}">{name}</a>')
    contrib = row.get("contributivity", math.nan)
    contrib = math.nan if contrib is None else float(contrib)
    cells = [_cell("rank", rank_text(row), row["rank"]),
             f'<td data-col="submission" data-value="{name}" class="text">{label}</td>',
             f'<td data-col="status" data-value="{html.escape(row["status"])}" class="text status">'
             f'{html.escape(row["status"])}'
             + (f'<div class="detail">{html.escape(row["detail"])}</div>' if row["detail"] else "") + "</td>",
             _cell("data_file", row["data_file"], row["data_file"], "text"),
             _cell("n_folds", "" if reference else str(int(row["n_folds"])), math.nan if reference else row["n_folds"]),
             _cell("contributivity", "" if not np.isfinite(contrib) else f"{contrib:.3f}", contrib)]
    for s in names:
        cls = "primary" if names and s == names[0] else ""
        for step in ("valid", "test"):
            m, sd = row[f"{s}_{step}_mean"], row[f"{s}_{step}_std"]
            cells.append(_cell(f"{s}_{step}_mean", fmt_pm(m, sd), m, cls))
        b = row[f"{s}_bagged_test"]
        cells.append(_cell(f"{s}_bagged_test", fmt_score(b), b, cls))
    for col in ("train_time_mean", "valid_time_mean", "test_time_mean"):
        m, sd = row[col], row[col.replace("_mean", "_std")]
        text = "" if not np.isfinite(m) else fmt_time(m) + ("" if not np.isfinite(sd) else f" ± {fmt_time(sd)}")
        cells.append(_cell(col, text, m))
    spb = row["test_seconds_per_blend"]
    cells.append(_cell("test_seconds_per_blend", "" if not np.isfinite(spb) else f"{spb:.3g}", spb))
    attrs = (f'class="reference" data-reference="{name}"' if reference else
             'class="ensemble" data-ensemble="ensemble"' if ensemble else
             f'class="status-{str(row["status"]).replace(" ", "-")}" data-submission="{name}"')
    return f"<tr {attrs}>" + "".join(cells) + "</tr>"


def _main_table(table: pd.DataFrame) -> str:
    names = table.attrs.get("score_names", [])
    body = [_row(row, names) for _, row in table.iterrows()]
    return ('<div class="wrap"><table id="leaderboard" data-sorted-by="rank"><thead>'
            + _header(names, table.attrs.get("directions", {})) + "</thead><tbody>\n" + "\n".join(body)
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
                    + "".join(f"<td>{fmt_time(v) if c == 'time (s)' else fmt_score(v)}</td>" for c, v in vals.items())
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


_RANK_TEXT = {"valid": "mean over CV folds on the validation blends",
              "test": "mean over CV folds on the test blends",
              "bagged_valid": "bagged validation score", "bagged_test": "bagged test score"}


def _intro(table: pd.DataFrame, n_submissions: int) -> str:
    """The paragraph above the table: what is ranked, what the numbers are, what the references are."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rank_score = table.attrs.get("rank_score")
    rank_by = _RANK_TEXT[table.attrs.get("rank_by", "valid")]
    text = (f'<p class="note">{n_submissions} submission(s); generated {now}. '
            + (f"Ranked by <b>{html.escape(str(rank_score))}</b>, {rank_by}. " if rank_score else "")
            + "Scores are mean ± standard deviation over the cross-validation folds; the bagged test "
              "score is that of the mean of the folds' test predictions. Click a column header to sort.</p>")
    n_ref = int(table.attrs.get("n_references", 0))
    if n_ref:
        text += ('\n<p class="note">The last rows (marked <i>reference</i>, # = ref, not ranked) are references '
                 "computed on the test file: predicting zeros (the floor), splitting the noisy blend with the "
                 "true isolated images as weights (oracle apportioning) and fitting only the fluxes of the true "
                 "shapes to the noisy blend (known morphology, near the noise-limited ceiling).</p>")
    return text


def _overall_plot(per_sub: dict[str, tuple[list[pd.DataFrame], str | None]], ref_band: str) -> list[str]:
    tables = {name: t for name, (t, _) in per_sub.items() if t}
    if not tables:
        return []
    fig = score_vs_figure(tables, ref_band=ref_band, show_points=False)
    return ["<h2>Score versus blendedness and magnitude</h2>",
            '<p class="note">Test galaxies binned by their true blendedness and magnitude; '
            "points are the mean score per bin, bars the spread over the CV folds.</p>",
            _img(png_data_uri(figure_png(fig)), "all submissions: score versus blendedness and magnitude", "score-vs")]


def _ensemble_section(ens: EnsembleSummary, *, images: bool, ref_band: str) -> list[str]:
    """The ensemble: contributivities, the picks of each fold, its scores beside the best single submission's."""
    best = ens.best_single
    rows = "".join(f"<tr><td class='text'>{html.escape(m)}</td><td>{ens.contributivity.get(m, 0.0):.3f}</td></tr>"
                   for m in sorted(ens.members, key=lambda m: -ens.contributivity.get(m, 0.0)))
    score_rows = []
    for label, key in (("ensemble", ENSEMBLE_NAME), (f"best single: {best}", best)):
        test = ens.test.get(key, {})
        score_rows.append(f"<tr><td class='text'>{html.escape(label)}</td>"
                          f"<td>{fmt_score(ens.valid.get('ensemble' if key == ENSEMBLE_NAME else 'best_single'))}</td>"
                          f"<td>{fmt_score(test.get('deblend', math.nan))}</td>"
                          f"<td>{fmt_score(test.get('flux_scatter_r', math.nan))}</td></tr>")
    parts = ['<h2 id="ensemble">Ensemble of the submissions</h2>',
             '<p class="note">Greedy forward selection with replacement on each fold\'s validation blends (as '
             "ramp-board's contributivity): start from the best submission, add the one that raises the primary "
             "score most, until none does. The combination is the mean of the picked submissions' isolated "
             "images; a submission's contributivity is its share of the picks, averaged over folds. "
             + html.escape("; ".join(f"fold {i}: {' + '.join(p)}" for i, p in enumerate(ens.picks))) + "</p>",
             "<div class='wrap'><table class='folds'><thead><tr><th class='text'>submission</th>"
             "<th>contributivity</th></tr></thead><tbody>" + rows + "</tbody></table></div>",
             "<div class='wrap'><table class='folds'><thead><tr><th class='text'></th><th>deblend valid</th>"
             "<th>deblend bagged test</th><th>flux scatter r, test</th></tr></thead><tbody>"
             + "".join(score_rows) + "</tbody></table></div>"]
    if images and ens.table is not None and len(ens.table):
        tables = {name: [ens.table[ens.table["member"] == name]] for name in (ENSEMBLE_NAME, best)}
        fig = score_vs_figure(tables, ref_band=ref_band, show_points=False)
        parts.append(_img(png_data_uri(figure_png(fig)), "ensemble and best single: score versus blendedness",
                          "score-vs"))
    return parts


_BLIND_LABELS = {"blind": "blind", "precision": "precision", "recall": "recall", "f1": "F1",
                 "unrecognised": "unrecognised", "deblend_matched": "deblend (matched)"}
_BLIND_NOTE = (
    "Detect and deblend: no centres, no galaxy counts are given. Per blend, detections are matched to the "
    "true sources one to one (Hungarian assignment on centre distance within a match radius of the widest "
    "PSF's FWHM, at least 2 px); blind = sum over true sources of the deblend score of the matched image "
    "(0 if missed) / (n_true + n_spurious). Recall: matched true sources / true sources; precision: matched "
    "detections / detections; F1 their harmonic mean; unrecognised: the fraction of true sources missed while "
    "a detection within their match radius went to a neighbour (unrecognised blends, lower is better); "
    "deblend (matched): the first track's score over matched sources. Scores on the test blends are mean "
    "± standard deviation over the CV folds; ranked by the blind score on {rank}.")


def _blind_header(scores: Sequence[str]) -> str:
    cells = ["<th>#</th>", "<th class='text'>submission</th>", "<th class='text'>status</th>",
             "<th>folds</th>", "<th title='blind, mean over folds on the validation blends'>blind valid</th>"]
    cells += [f"<th title='{html.escape(s)}, test, mean ± std over folds'>{html.escape(_BLIND_LABELS.get(s, s))}"
              f" test</th>" for s in scores]
    cells += ["<th title='blind score of the bagged (first fold) test catalogue'>blind bagged test</th>",
              "<th>train (s)</th>"]
    return "<tr>" + "".join(cells) + "</tr>"


def blind_section(table: pd.DataFrame) -> list[str]:
    """The blind track's section: its table (id ``blind-leaderboard``) and what the columns are.

    ``table`` is :func:`deblendkit.report.leaderboard.blind_table`'s; a table without submissions says so.
    """
    parts = ['<h2 id="blind">Blind track: detect and deblend</h2>']
    rank = _RANK_TEXT[table.attrs.get("rank_by", "valid")]
    parts.append(f'<p class="note">{html.escape(_BLIND_NOTE.format(rank=rank))}</p>')
    if table.empty:
        parts.append('<p class="note">No blind submissions found.</p>')
        return parts
    names = table.attrs.get("score_names", [])
    scores = [s for s in ("blind", "precision", "recall", "f1", "unrecognised", "deblend_matched") if s in names]
    rows = []
    for _, row in table.iterrows():
        name = html.escape(str(row["submission"]), quote=True)
        status = html.escape(str(row["status"])) + (
            f'<div class="detail">{html.escape(row["detail"])}</div>' if row["detail"] else "")
        cells = [f"<td>{html.escape(rank_text(row))}</td>", f"<td class='text'>{name}</td>",
                 f"<td class='text status'>{status}</td>", f"<td>{int(row['n_folds'])}</td>"]
        if "blind" in names:
            cells.append(f"<td class='primary'>{fmt_pm(row['blind_valid_mean'], row['blind_valid_std'])}</td>")
        for s in scores:
            cls = " class='primary'" if s == "blind" else ""
            cells.append(f"<td data-col='{s}_test_mean'{cls}>"
                         f"{fmt_pm(row[f'{s}_test_mean'], row[f'{s}_test_std'])}</td>")
        if "blind" in names:
            cells.append(f"<td>{fmt_score(row['blind_bagged_test'])}</td>")
        cells.append(f"<td>{fmt_time(row['train_time_mean'])}</td>")
        rows.append(f'<tr class="status-{str(row["status"]).replace(" ", "-")}" data-blind-submission="{name}">'
                    + "".join(cells) + "</tr>")
    parts.append('<div class="wrap"><table id="blind-leaderboard"><thead>' + _blind_header(scores)
                 + "</thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>")
    return parts


def render_html(results: Sequence[SubmissionResults], table: pd.DataFrame, prov: list[dict[str, Any]], *,
                title: str = "Galaxy deblending leaderboard", images: bool = True, ref_band: str = "r",
                ensemble: EnsembleSummary | None = None, blind_table: pd.DataFrame | None = None) -> str:
    """The leaderboard page as one self-contained HTML string.

    Parameters
    ----------
    results : sequence of SubmissionResults
        What :func:`deblendkit.report.collect.collect` read.
    table : DataFrame
        :func:`deblendkit.report.table.leaderboard_table` of ``results`` (reference rows included).
    prov : list of dict
        :func:`deblendkit.report.collect.data_provenance`.
    title : str
    images : bool
        Include the plots and galleries.
    ref_band : str
        Band of the magnitudes of the score-versus-magnitude plots.
    ensemble : EnsembleSummary, optional
        The ensemble of the submissions: a section with its contributivities and score versus blendedness.
    blind_table : DataFrame, optional
        The blind track's table (:func:`deblendkit.report.leaderboard.blind_table`): its own section
        (:func:`blind_section`) after the first track's submissions.
    """
    by_name = {r.name: r for r in results}
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", _intro(table, len(results)),
             _main_table(table) if not table.empty else '<p class="note">No submissions found.</p>']
    names = ([] if table.empty else
             [n for n, st in zip(table["submission"], table["status"]) if st != STATUS_REFERENCE and n in by_name])
    per_sub = {name: _galaxy_tables(by_name[name]) if images else ([], None) for name in names}
    if images:
        parts += _overall_plot(per_sub, ref_band)
    if ensemble is not None:
        parts += _ensemble_section(ensemble, images=images, ref_band=ref_band)
    parts.append("<h2>Submissions</h2>")
    for name in names:
        parts.append(_submission_section(by_name[name], per_sub[name], images=images, ref_band=ref_band))
    if blind_table is not None:
        parts += blind_section(blind_table)
    parts.append(_provenance_section(prov, results))
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts)
