"""The blind track's notebook (blind/blind_kit.ipynb): committed without outputs, and runs top to bottom."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "blind" / "blind_kit.ipynb"


def _outputs_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def test_blind_notebook_is_committed_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cell"
    stale = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not stale, f"code cells {stale} carry outputs: clear them before committing"


@pytest.mark.slow
def test_blind_notebook_runs_on_small_data(small_data_dir, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("DEBLEND_DATA_DIR", str(small_data_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # A last cell, added here only, reports the notebook's own numbers.
    nb.cells.append(nbformat.v4.new_code_cell(
        'import json\nprint("CHECK" + json.dumps({"summary": {k: float(v) for k, v in summary.items()}, '
        '"perfect": float(perfect_score), "missing": float(missing_score), "n_test": len(X), '
        '"n_galaxies": int(y["n_galaxies"].sum()), "first_track": first_track, '
        '"by_mag_n": int(by_mag["n_true"].sum())}))'))
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    text = "\n".join(_outputs_text(c) for c in nb.cells if c.cell_type == "code")
    assert f"{small_data_dir / 'test.h5'}: 12 test blends used" in text
    assert "X.centers? False" in text  # the blind set has no centres
    check = json.loads(_outputs_text(nb.cells[-1]).split("CHECK", 1)[1])
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
