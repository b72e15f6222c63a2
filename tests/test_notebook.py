"""The starting-kit notebook: committed without outputs, and runs top to bottom."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "starting_kit.ipynb"


def _outputs_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def test_notebook_is_committed_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cell"
    stale = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not stale, f"code cells {stale} carry outputs: clear them before committing"


@pytest.mark.slow
def test_notebook_runs_on_small_data(small_data_dir, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("DEBLEND_DATA_DIR", str(small_data_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # A last cell, added here only, reports the notebook's own numbers.
    nb.cells.append(nbformat.v4.new_code_cell(
        'import json\nprint("CHECK" + json.dumps({"trivial": {k: v["deblend"] for k, v in summary.items()}, '
        '"baseline": scores["deblend"], "n_test": len(X_test), '
        '"references": {r.name: r.scores["deblend"] for r in references.rows}, '
        '"reference_blends": references.n_blends}))'))
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    text = "\n".join(_outputs_text(c) for c in nb.cells if c.cell_type == "code")
    assert f"{small_data_dir / 'train.h5'}: 24 blends used" in text
    check = json.loads(_outputs_text(nb.cells[-1]).split("CHECK", 1)[1])
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
