"""The starting-kit notebook: committed without outputs, and runs top to bottom."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("nbformat")

from tests.helpers.notebooks import assert_committed_clean, outputs_text, run_on_small_data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "starting_kit.ipynb"


def test_notebook_is_committed_clean():
    assert_committed_clean(NOTEBOOK)


@pytest.mark.slow
def test_notebook_runs_on_small_data(small_data_dir, monkeypatch):
    # A last cell, added here only, reports the notebook's own numbers.
    check_cell = (
        'import json\nprint("CHECK" + json.dumps({"trivial": {k: v["deblend"] for k, v in summary.items()}, '
        '"baseline": scores["deblend"], "n_test": len(X_test), '
        '"references": {r.name: r.scores["deblend"] for r in references.rows}, '
        '"reference_blends": references.n_blends}))')
    nb, text = run_on_small_data(NOTEBOOK, small_data_dir, monkeypatch, check_cell=check_cell, cwd=REPO)
    assert f"{small_data_dir / 'train.h5'}: 24 blends used" in text
    check = json.loads(outputs_text(nb.cells[-1]).split("CHECK", 1)[1])
    # The trivial predictions: zeros score exactly 0, the truth 1, the blend in between.
    trivial = check["trivial"]
    assert trivial["zeros"] == 0.0 and trivial["truth"] == pytest.approx(1.0, abs=1e-6)
    assert 0.0 <= trivial["whole blend in every slot"] < 0.5
    # The baseline was trained and scored on the test blends, and beats the trivial predictions.
    assert check["n_test"] == 12
    assert max(trivial["whole blend in every slot"], trivial["blend / n_galaxies"]) < check["baseline"] < 1.0
    assert "starting_kit (test)" in text
    # The reference rows (#19), on the same test blends: zeros the floor, the baseline below the
    # noise-limited known-morphology ceiling, oracle apportioning between zeros and that ceiling.
    refs = check["references"]
    assert list(refs) == ["zeros", "oracle apportioning", "known morphology"]
    assert check["reference_blends"] == check["n_test"]
    assert refs["zeros"] == 0.0
    assert 0.0 < refs["oracle apportioning"] < refs["known morphology"] <= 1.0
    assert check["baseline"] < refs["known morphology"]
    for name in refs:
        assert f"{name} (reference)" in text
    # The broken example submission was caught with a message naming the problem.
    assert "broken: SubmissionError: submission 'broken', predict: predictions have shape" in text
    images = sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert images >= 6
