"""The event description's reference rows and the ``/user_interactions`` workaround (#19), without a server.

The deployed pages are checked end to end in ``tests/test_rampboard.py``.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deblendkit.scoring.references import reference_scores

REPO = Path(__file__).resolve().parents[2]
RAMP_PYTHON = REPO / ".venv-rampboard" / "bin" / "python"
sys.path.insert(0, str(REPO / "rampboard"))

import references_page  # noqa: E402  (rampboard/references_page.py, standard library only)
from leaderboard_client import parse_table  # noqa: E402


@pytest.fixture(scope="module")
def reference_csvs(small_data_dir, tmp_path_factory):
    """``deblend-score --references`` of the small train and test files, as the deploy runs it."""
    out = tmp_path_factory.mktemp("refs")
    paths = {}
    for split in ("train", "test"):
        paths[split] = out / f"{split}.csv"
        cmd = references_page.reference_command(REPO / ".venv" / "bin" / "python", small_data_dir / f"{split}.h5",
                                                paths[split])
        subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, timeout=600)
    return paths


def test_reference_section_holds_the_three_references_of_both_boards_unranked(reference_csvs, small_data_dir,
                                                                              tmp_path):
    public = references_page.read_reference_csv(reference_csvs["train"])
    private = references_page.read_reference_csv(reference_csvs["test"])
    page = tmp_path / "galaxy_deblending_starting_kit.html"
    page.write_text('<html><head></head><body class="x"><h1>Notebook</h1></body></html>')
    references_page.add_reference_section(page, references_page.reference_section(public, private))
    references_page.add_reference_section(page, references_page.reference_section(public, private))  # idempotent
    text = page.read_text()
    assert text.count('id="reference-scores"') == 1 and "not ranked" in text
    assert text.index('id="reference-scores"') < text.index("<h1>Notebook</h1>")
    table = parse_table(text, table_id="references")
    rows = {r["reference"]: r for r in table.records()}
    assert list(rows) == ["zeros", "oracle apportioning", "known morphology"]
    expected = reference_scores(small_data_dir / "test.h5")
    for name, row in rows.items():
        assert float(row["deblend (private board: test.h5)"]) == pytest.approx(expected[name].score, abs=5e-5)
        assert float(row["deblend (public board: train.h5)"]) == pytest.approx(public[name]["deblend"], abs=5e-5)
    assert float(rows["zeros"]["deblend (private board: test.h5)"]) == 0.0
    assert float(rows["zeros"]["deblend (public board: train.h5)"]) == 0.0


USER_INTERACTIONS = """
import sys
sys.path.insert(0, {rampboard!r})
import ramp_compat
from ramp_database.tools.user import get_user_interactions_by_name

class NoRows:
    def query(self, *args):
        return self
    def filter(self, *args):
        return self
    def all(self):
        return []

try:
    get_user_interactions_by_name(NoRows(), output_format="html")
except KeyError as exc:
    print("original:", repr(exc))
compat = ramp_compat._user_interactions_compat(get_user_interactions_by_name)
print(compat(NoRows(), output_format="html"))
print("frame:", list(compat(NoRows(), name="someone").columns))
"""


def test_user_interactions_table_is_empty_instead_of_a_key_error():
    if not RAMP_PYTHON.exists():
        subprocess.run(["bash", str(REPO / "rampboard" / "deploy.sh"), "down", "--deploy-dir", "/nonexistent/rb"],
                       cwd=REPO, check=True, timeout=1800, stdout=subprocess.DEVNULL)
    out = subprocess.run([str(RAMP_PYTHON), "-c", USER_INTERACTIONS.format(rampboard=str(REPO / "rampboard"))],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert out.returncode == 0, out.stdout
    # ramp-database 0.10.1 itself fails on an empty interaction table (the page's HTTP 500) ...
    assert "original: KeyError('timestamp (UTC)')" in out.stdout
    # ... the workaround gives the table's header and no row
    table = parse_table(out.stdout, table_id=None)
    assert table.header == ramp_columns()[1:] and table.rows == ()
    assert "frame: " + repr(list(ramp_columns()[1:])) in out.stdout


def ramp_columns() -> tuple[str, ...]:
    import ramp_compat

    return ramp_compat.USER_INTERACTION_COLUMNS
