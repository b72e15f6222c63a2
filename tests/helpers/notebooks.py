"""What the notebook tests share: the clean-commit check and running a notebook on the small data."""
from __future__ import annotations

from pathlib import Path

import nbformat


def outputs_text(cell) -> str:
    """The text a code cell printed (streams and text/plain results)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def assert_committed_clean(path: Path) -> None:
    """The notebook is valid and its code cells carry no outputs or execution counts."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cell"
    stale = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not stale, f"code cells {stale} carry outputs: clear them before committing"


def run_on_small_data(path: Path, data_dir: Path, monkeypatch, *, check_cell: str, cwd: Path):
    """Execute the notebook on ``data_dir`` with a last ``check_cell`` appended; returns (nb, all text)."""
    from nbclient import NotebookClient

    monkeypatch.setenv("DEBLEND_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(check_cell))
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    return nb, "\n".join(outputs_text(c) for c in nb.cells if c.cell_type == "code")
