"""The blind track's notebook (blind/blind_kit.ipynb): committed without outputs, and runs top to bottom."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("nbformat")

from tests.helpers.notebooks import assert_committed_clean, outputs_text, run_on_small_data  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "blind" / "blind_kit.ipynb"


def test_blind_notebook_is_committed_clean():
    assert_committed_clean(NOTEBOOK)


@pytest.mark.slow
def test_blind_notebook_runs_on_small_data(small_data_dir, monkeypatch):
    # A last cell, added here only, reports the notebook's own numbers.
    check_cell = (
        'import json\nprint("CHECK" + json.dumps({"summary": {k: float(v) for k, v in summary.items()}, '
        '"perfect": float(perfect_score), "missing": float(missing_score), "n_test": len(X), '
        '"n_galaxies": int(y["n_galaxies"].sum()), "first_track": first_track, '
        '"by_mag_n": int(by_mag["n_true"].sum())}))')
    nb, text = run_on_small_data(NOTEBOOK, small_data_dir, monkeypatch, check_cell=check_cell, cwd=REPO)
    assert f"{small_data_dir / 'test.h5'}: 12 test blends used" in text
    assert "X.centers? False" in text  # the blind set has no centres
    check = json.loads(outputs_text(nb.cells[-1]).split("CHECK", 1)[1])
    n, n_gal = check["n_test"], check["n_galaxies"]
    assert n == 12
    # True centres and images score 1; missing the first galaxy of every blend loses exactly n / n_true.
    assert check["perfect"] == pytest.approx(1.0, abs=1e-6)
    assert check["missing"] == pytest.approx(1.0 - n / n_gal, abs=1e-6)
    s = check["summary"]
    assert s["n_true"] == n_gal and 0.0 < s["recall"] <= 1.0 and 0.0 < s["precision"] <= 1.0
    # blind = recall x deblend(matched) x n_true / (n_true + n_spurious), by the formula.
    expected = s["recall"] * s["deblend_matched"] * s["n_true"] / (s["n_true"] + s["n_spurious"])
    assert s["blind"] == pytest.approx(expected, rel=1e-9)
    assert 0.0 < check["first_track"] < 1.0 and check["by_mag_n"] <= n_gal
