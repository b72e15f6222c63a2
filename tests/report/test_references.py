"""Reference rows of the leaderboard (deblendkit.report.references, #19) and the score directions.

The scoring function (deblendkit.scoring.reference_scores) is replaced by a stub
returning its result type here: these tests check how the rows are placed and
marked, not the reference scores themselves (tests/scoring does; the browser
test of test_leaderboard.py computes them on real data).
"""
from __future__ import annotations

import logging
import math
from html.parser import HTMLParser

import pandas as pd
import pytest

from deblendkit import report
from deblendkit.cli import leaderboard as cli_leaderboard
from deblendkit.errors import ConfigError, DataFileError
from deblendkit.ramp.score_types import make_score_types
from deblendkit.report import references as refs_module
from deblendkit.scoring import ReferenceResult, ReferenceScores
from tests.report.test_leaderboard import subs  # noqa: F401  (the fixture of hand-made results)

# The figures measured in #19 on 200 default test blends (deblend), and made-up flux scatters.
STUB = pd.DataFrame({"deblend": [0.0, 0.708, 0.972], "flux_scatter_r": [1.0, 0.12, 0.03]},
                    index=["zeros", "oracle apportioning", "known morphology"])


def _result(path: str, n_blends: int) -> ReferenceScores:
    rows = tuple(ReferenceResult(name=name, scores=row.to_dict(), summary=row.to_dict(), table=pd.DataFrame())
                 for name, row in STUB.iterrows())
    return ReferenceScores(path=path, n_blends=n_blends, rows=rows)


def _stub(calls):
    def compute(path, *, max_blends=None):
        calls.append((path, max_blends))
        return _result(path, max_blends or 400)
    return compute


@pytest.mark.parametrize("bands,ref_band", [(tuple("ugrizy"), "r"), (("g", "r"), "r"), (("i",), "r"),
                                            (("r",), "r"), (tuple("griz"), "i")])
def test_score_directions_match_the_score_types(bands, ref_band):
    types = make_score_types(bands, ref_band=ref_band)
    expected = {st.name: bool(st.is_lower_the_better) for st in types}
    assert report.score_directions(expected) == expected
    assert report.lower_is_better("not_a_score") is None


def test_reference_rows_of_the_scoring_result():
    rows = report.reference_rows("some/dir/test.h5", max_blends=200, compute=_stub(calls := []))
    assert calls == [("some/dir/test.h5", 200)]
    assert [r.name for r in rows] == ["zeros", "oracle apportioning", "known morphology"]
    assert rows[2].scores == {"deblend": 0.972, "flux_scatter_r": 0.03}
    assert rows[2].data_file == "test.h5" and rows[2].n_blends == 200
    assert rows[2].description == report.REFERENCE_DESCRIPTIONS["known morphology"]
    # A mapping gives the same rows; non-finite scores are left out, not shown as numbers.
    as_dict = {name: row.to_dict() for name, row in STUB.iterrows()}
    assert [r.scores for r in report.as_reference_rows(as_dict)] == [r.scores for r in rows]
    (row,) = report.as_reference_rows({"zeros": {"deblend": 0.0, "ssim": math.nan}})
    assert row.scores == {"deblend": 0.0}
    with pytest.raises(ConfigError, match="a reference needs a non-empty name, got ''"):
        report.ReferenceRow(name="", scores={})


def test_references_follow_the_submissions_best_first_unranked(subs):  # noqa: F811
    results = report.collect(subs)
    rows = report.as_reference_rows(_result("test.h5", 400).rows, data_file="test.h5")
    t = report.leaderboard_table(results, references=rows)
    assert list(t["submission"]) == ["good", "also_good", "broken", "never_run",
                                     "known morphology", "oracle apportioning", "zeros"]
    assert list(t["rank"][:2]) == [1, 2] and t["rank"][2:].isna().all()
    ref = t[t["status"] == report.STATUS_REFERENCE].set_index("submission")
    assert ref.loc["known morphology", "deblend_test_mean"] == 0.972
    assert ref.loc["known morphology", "deblend_bagged_test"] == 0.972
    assert ref["deblend_valid_mean"].isna().all() and ref["train_time_mean"].isna().all()
    assert t.attrs["n_references"] == 3
    # Ranked on a lower-is-better score, the references are sorted the other way round.
    by_flux = report.leaderboard_table(results, score="flux_scatter_r", references=rows)
    assert list(by_flux["submission"][4:]) == ["known morphology", "oracle apportioning", "zeros"]
    by_flux_rev = report.leaderboard_table(results, score="flux_scatter_r", references=rows[::-1])
    assert list(by_flux_rev["submission"][4:]) == ["known morphology", "oracle apportioning", "zeros"]
    # A reference without the ranked score goes last.
    partial = rows + report.as_reference_rows({"other": {"flux_scatter_r": 0.5}})
    assert list(report.leaderboard_table(results, references=partial)["submission"][-1:]) == ["other"]


class _Table(HTMLParser):
    """The main table's rows in page order: (kind, name, {col: (data-value, text)})."""

    def __init__(self):
        super().__init__()
        self.rows, self._cells, self._col, self._text = [], None, None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and ("data-submission" in a or "data-reference" in a):
            kind = "reference" if "data-reference" in a else "submission"
            self._cells = {}
            self.rows.append((kind, a.get("data-reference") or a.get("data-submission"), a.get("class"),
                              self._cells))
        elif tag == "td" and self._cells is not None:
            self._col, self._value, self._text = a["data-col"], a.get("data-value", ""), []

    def handle_endtag(self, tag):
        if tag == "td" and self._col is not None:
            self._cells[self._col] = (self._value, " ".join(" ".join(self._text).split()))
            self._col = None
        elif tag == "tr":
            self._cells = None

    def handle_data(self, data):
        if self._col is not None:
            self._text.append(data)


def test_the_page_and_tables_show_the_references_marked(subs, tmp_path, monkeypatch):  # noqa: F811
    calls = []
    monkeypatch.setattr(refs_module, "reference_scores", _stub(calls))
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.h5").write_bytes(b"")  # the stub does not read it
    paths = report.build(subs, tmp_path / "lb", data_dir=data, images=False, reference_blends=50)
    assert calls == [(str(data / "test.h5"), 50)]
    parsed = _Table()
    parsed.feed(paths["html"].read_text())
    kinds = [(k, n) for k, n, _, _ in parsed.rows]
    assert kinds == [("submission", "good"), ("submission", "also_good"), ("submission", "broken"),
                     ("submission", "never_run"), ("reference", "known morphology"),
                     ("reference", "oracle apportioning"), ("reference", "zeros")]
    for kind, name, cls, cells in parsed.rows:
        if kind != "reference":
            continue
        assert cls == "reference"
        assert cells["rank"] == ("", "ref")  # marked, and no rank value to sort on
        assert cells["status"][1].startswith("reference " + report.REFERENCE_DESCRIPTIONS[name])
        assert float(cells["deblend_test_mean"][0]) == STUB.loc[name, "deblend"]
        assert cells["deblend_test_mean"][1] == f"{STUB.loc[name, 'deblend']:.4f}"
        assert cells["deblend_valid_mean"] == ("", "")
    page = paths["html"].read_text()
    assert page.count('<tr class="status-') == 4 and page.count('<tr class="reference"') == 3
    assert "not ranked" in page
    md = paths["md"].read_text().splitlines()
    assert md[-3].startswith("| ref | known morphology | reference (true shapes, fluxes fitted per band to "
                             "the noisy blend: near the noise limit; 50 blends) | test.h5 |  |  | 0.9720 | 0.9720 "
                             "| 0.0300 |")
    assert [line.split(" | ")[1] for line in md[-3:]] == ["known morphology", "oracle apportioning", "zeros"]
    csv = pd.read_csv(paths["csv"])
    assert list(csv["status"][-3:]) == ["reference"] * 3 and csv["rank"][-3:].isna().all()


def test_build_leaves_the_references_out_when_asked_or_when_they_fail(subs, tmp_path, monkeypatch,  # noqa: F811
                                                                      caplog):
    calls = []
    monkeypatch.setattr(refs_module, "reference_scores", _stub(calls))
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.h5").write_bytes(b"")
    paths = report.build(subs, tmp_path / "a", data_dir=data, images=False, references=False)
    assert calls == [] and 'class="reference"' not in paths["html"].read_text()

    def broken(path, *, max_blends=None):
        raise DataFileError(f"{path} is not a data file")

    monkeypatch.setattr(refs_module, "reference_scores", broken)
    with caplog.at_level(logging.WARNING):
        paths = report.build(subs, tmp_path / "b", data_dir=data, images=False)
    assert f"reference rows left out: {data / 'test.h5'} is not a data file" in caplog.text
    assert list(pd.read_csv(paths["csv"])["submission"]) == ["good", "also_good", "broken", "never_run"]


def test_reference_file_is_the_one_the_submissions_were_scored_on(subs, tmp_path):  # noqa: F811
    results = report.collect(subs)  # scored on test.h5 (results.json)
    data = tmp_path / "data"
    data.mkdir()
    assert report.reference_data_file(results, data) is None
    (data / "test_mini.h5").write_bytes(b"")
    assert report.reference_data_file(results, data) == data / "test_mini.h5"
    (data / "test.h5").write_bytes(b"")
    assert report.reference_data_file(results, data) == data / "test.h5"
    assert report.reference_data_file(results, tmp_path / "missing") is None


def test_cli_refuses_a_bad_reference_blends(subs, tmp_path, capsys):  # noqa: F811
    argv = ["--submissions", str(subs), "--out", str(tmp_path / "o"), "--reference-blends", "0"]
    assert cli_leaderboard.main(argv) == 2
    assert capsys.readouterr().err == "error: --reference-blends must be a positive integer, got 0\n"


def test_a_bad_rank_by_is_refused_before_the_references_are_computed(subs, tmp_path, monkeypatch):  # noqa: F811
    calls = []
    monkeypatch.setattr(refs_module, "reference_scores", _stub(calls))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test.h5").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"rank_by must be one of \['valid', 'test', 'bagged_valid', "
                                          r"'bagged_test'\], got 'train'") as info:
        report.build(subs, tmp_path / "lb", data_dir=tmp_path / "data", rank_by="train")
    assert info.value.value == "train" and info.value.allowed == report.RANK_STEPS
    assert calls == []
