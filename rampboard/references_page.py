"""Reference rows in the ramp-board event description: what a score means (#19).

ramp-board's event page shows the kit's notebook, converted to
``<kit>/<problem>_starting_kit.html`` by ``ramp-setup deploy-event``, as the
event's *Description* (``/notebook/<problem>``, the page's iframe). After the
event is deployed, :func:`add_reference_section` puts at the top of that page
a table of the reference predictions (zeros, oracle apportioning, known
morphology; :mod:`deblendkit.scoring.references`), scored by ``deblend-score
--references`` on the event's own data: ``train.h5`` for the public board
(ramp-board's public score is the CV validation score, on training blends)
and ``test.h5`` for the private board. They are marked as references: a
section and a table of their own (``id="references"``), never rows of the
leaderboard, never ranked.

Standard library only (it runs in the ramp-board environment; the scores
are computed by the kit's environment in a subprocess).
"""
from __future__ import annotations

import csv
import html
import os
import re
from pathlib import Path

__all__ = ["reference_command", "read_reference_csv", "reference_section", "add_reference_section",
           "SECTION_ID", "TABLE_ID"]

SECTION_ID = "reference-scores"
TABLE_ID = "references"
#: Columns shown (headline scores of deblend-score --references), in this order.
SHOWN = ("deblend", "flux_scatter_r", "abs_flux_bias_r", "flux_catastrophic_r", "colour_scatter_g_r",
         "cosine", "de_median", "ssim")
_EXPLAIN = {
    "zeros": "every galaxy predicted empty (deblend is exactly 0)",
    "oracle apportioning": "the noisy blend split pixel by pixel with the true isolated images as weights",
    "known morphology": "every galaxy's true shape known, only its flux per band fitted to the noisy blend "
                        "(close to the noise-limited ceiling)",
}


def reference_command(python: str | os.PathLike, data_file: str | os.PathLike, output: str | os.PathLike) -> list:
    """``deblend-score --references DATA --output CSV`` with the kit's Python."""
    return [str(python), "-m", "deblendkit.cli.score", "--references", str(data_file), "--output", str(output)]


def read_reference_csv(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """``{reference: {score: value}}`` from the CSV of ``deblend-score --references --output`` (NaN if empty)."""
    out: dict[str, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            name = row.pop("reference")
            out[name] = {k: float(v) if v.strip() else float("nan") for k, v in row.items()}
    return out


def _cell(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


def reference_section(public: dict, private: dict, *, score_name: str = "deblend") -> str:
    """The HTML section: one row per reference, its public (train CV) and private (test) scores.

    ``public`` / ``private`` as :func:`read_reference_csv` returns them.
    """
    cols = [c for c in SHOWN if c != score_name]
    head = (f"<tr><th>reference</th><th>{score_name} (public board: train.h5)</th>"
            f"<th>{score_name} (private board: test.h5)</th>"
            + "".join(f"<th>{html.escape(c)} (test)</th>" for c in cols) + "<th>what it is</th></tr>")
    rows = []
    for name in private:
        pub = public.get(name, {})
        rows.append(
            f'<tr class="reference-row"><td>{html.escape(name)}</td><td>{_cell(pub.get(score_name))}</td>'
            f"<td>{_cell(private[name].get(score_name))}</td>"
            + "".join(f"<td>{_cell(private[name].get(c))}</td>" for c in cols)
            + f"<td>{html.escape(_EXPLAIN.get(name, ''))}</td></tr>"
        )
    return (
        f'<section id="{SECTION_ID}" style="margin:1em 0;padding:0.5em 1em;border:1px solid #ccc;">'
        "<h2>Reference scores (not submissions, not ranked)</h2>"
        "<p>Predictions computed from this event's data files themselves, to tell what a score means: "
        "zeros, and two predictions that use the true isolated images. They are not on the leaderboard. "
        "The public board shows CV validation scores on the training blends, the private board the test "
        "scores; the table gives the references on each (computed by <code>deblend-score --references</code>).</p>"
        f'<table id="{TABLE_ID}" border="1" cellpadding="4"><thead>{head}</thead><tbody>'
        + "".join(rows) + "</tbody></table></section>"
    )


def add_reference_section(page: str | os.PathLike, section: str) -> None:
    """Insert ``section`` at the top of the page's body (replacing one inserted before); atomic rewrite."""
    path = Path(page)
    text = path.read_text(encoding="utf-8")
    text = re.sub(rf'<section id="{SECTION_ID}".*?</section>', "", text, flags=re.S)
    match = re.search(r"<body[^>]*>", text)
    if match is None:
        text = section + text
    else:
        text = text[:match.end()] + section + text[match.end():]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
