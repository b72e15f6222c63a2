"""The ensemble's row, contributivity column and section on the leaderboard (#20)."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from deblendkit import report
from deblendkit.errors import DataFileError
from deblendkit.report.ensemble import ENSEMBLE_FILE, ENSEMBLE_TABLE_FILE, read_ensemble
from tests.report.test_leaderboard import subs  # noqa: F401  (the fixture of hand-made results)


def _write_ensemble(directory, *, table=True):
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "members": ["also_good", "good"], "contributivity": {"also_good": 0.25, "good": 0.75},
        "best_single": "good", "valid": {"ensemble": 0.8123, "best_single": 0.7},
        "test": {"ensemble": {"deblend": 0.91, "flux_scatter_r": 0.05},
                 "good": {"deblend": 0.65, "flux_scatter_r": 0.18}},
        "folds": [{"picks": ["good", "also_good"]}, {"picks": ["good", "good"]}],
    }
    (directory / ENSEMBLE_FILE).write_text(json.dumps(meta))
    if table:
        pd.DataFrame({"member": ["ensemble"] * 3 + ["good"] * 3, "deblend": [0.9, 0.92, 0.91, 0.6, 0.7, 0.65],
                      "blendedness": [0.1, 0.5, 0.9] * 2, "mag_r": [22.0, 23.0, 24.0] * 2}).to_csv(
            directory / ENSEMBLE_TABLE_FILE, index=False)
    return meta


def test_read_ensemble(tmp_path):
    assert read_ensemble(tmp_path) is None  # none written: no row, no error
    _write_ensemble(tmp_path)
    ens = read_ensemble(tmp_path)
    assert ens.best_single == "good" and sum(ens.contributivity.values()) == pytest.approx(1.0)
    assert ens.test["ensemble"]["deblend"] == 0.91 and ens.picks == (("good", "also_good"), ("good", "good"))
    (tmp_path / ENSEMBLE_FILE).write_text("{}")
    with pytest.raises(DataFileError, match=r"ensemble.json: not an ensemble file of deblend-ensemble \(KeyError"):
        read_ensemble(tmp_path)


def test_the_table_has_the_ensemble_row_unranked_and_the_contributivities(subs, tmp_path):  # noqa: F811
    _write_ensemble(subs.parent / "ensemble")
    paths = report.build(subs, tmp_path / "lb", images=False, references=False)
    csv = pd.read_csv(paths["csv"])
    row = csv[csv["status"] == "ensemble"].iloc[0]
    assert row["submission"] == "ensemble" and math.isnan(row["rank"])
    assert row["deblend_valid_mean"] == 0.8123 and row["deblend_bagged_test"] == 0.91
    assert row["flux_scatter_r_bagged_test"] == 0.05
    contrib = dict(zip(csv["submission"], csv["contributivity"]))
    assert contrib["good"] == 0.75 and contrib["also_good"] == 0.25 and math.isnan(contrib["broken"])
    # the ranked submissions keep their ranks; the ensemble comes after them
    assert list(csv["submission"][:2]) == ["good", "also_good"] and list(csv["rank"][:2]) == [1, 2]
    page = paths["html"].read_text()
    assert page.count('<tr class="ensemble"') == 1 and '<h2 id="ensemble">' in page
    assert "fold 0: good + also_good; fold 1: good + good" in page


def test_the_section_plots_the_ensemble_beside_the_best_single(subs, tmp_path):  # noqa: F811
    _write_ensemble(tmp_path / "ens")
    paths = report.build(subs, tmp_path / "lb", images=True, references=False, ensemble_dir=tmp_path / "ens")
    section = paths["html"].read_text().split('<h2 id="ensemble">')[1].split("<h2>")[0]
    assert 'alt="ensemble and best single: score versus blendedness"' in section
    assert "best single: good" in section


def test_a_broken_ensemble_file_is_left_out_with_a_warning(subs, tmp_path, caplog):  # noqa: F811
    (subs.parent / "ensemble").mkdir()
    (subs.parent / "ensemble" / ENSEMBLE_FILE).write_text("not json")
    paths = report.build(subs, tmp_path / "lb", images=False, references=False)
    assert "ensemble" not in set(pd.read_csv(paths["csv"])["status"])
    assert "ensemble left out: " in caplog.text
