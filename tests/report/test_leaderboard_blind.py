"""The static leaderboard's blind-track section (issue #17): deblendkit.report.leaderboard.build with blind results.

The blind results are built by hand the way ``ramp-test --save-output`` of the
``blind/`` kit lays them out (rampwf's ``fold_<i>/scores.csv``, ``state.txt``,
times and ``bagged_scores.csv``, with the blind track's score columns).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from deblendkit.errors import ConfigError
from deblendkit.ramp.blind_score_types import make_blind_score_types
from deblendkit.report import leaderboard as LB
from deblendkit.report.leaderboard import BLIND_DIRECTIONS, blind_table, build, collect_blind

SCORES = ["blind", "recall", "precision", "f1", "unrecognised", "deblend_matched", "flux_scatter_r"]


def _blind_scores(blind: float, recall: float, precision: float, unrec: float) -> list[float]:
    f1 = 2 * recall * precision / (recall + precision)
    return [blind, recall, precision, f1, unrec, blind / recall, 0.3]


def _write_fold(sub: Path, fold: int, t: int, valid: list[float], test: list[float]) -> None:
    d = sub / "training_output" / f"fold_{fold}"
    d.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame([test, valid, test], index=["train", "valid", "test"], columns=SCORES)
    df.index.name = "step"
    df["time"] = [2.0, 1.0, 1.0]
    df.to_csv(d / "scores.csv")
    for name, v in (("train_time", 2.0 + fold), ("valid_time", 1.0), ("test_time", 1.0)):
        (d / name).write_text(str(v))
    (d / "state.txt").write_text("scored")
    for p in d.iterdir():
        os.utime(p, ns=(t * 10**9, t * 10**9))


def _write_sub(root: Path, name: str, folds: list[tuple[list[float], list[float]]]) -> Path:
    sub = root / name
    sub.mkdir(parents=True)
    (sub / "detector.py").write_text("class Detector:\n    pass\n")
    for i, (valid, test) in enumerate(folds):
        _write_fold(sub, i, 100 + i, valid, test)
    rows = [("valid", len(folds) - 1, *folds[0][0]), ("test", len(folds) - 1, *folds[0][1])]
    p = sub / "training_output" / "bagged_scores.csv"
    pd.DataFrame(rows, columns=["step", "n_bag", *SCORES]).to_csv(p, index=False)
    os.utime(p, ns=(200 * 10**9, 200 * 10**9))
    return sub


@pytest.fixture()
def kit(tmp_path):
    """``submissions/`` (empty first track) and ``blind/submissions/`` with three blind submissions."""
    (tmp_path / "submissions").mkdir()
    blind = tmp_path / "blind" / "submissions"
    # good: higher blind on valid; fair: lower; never_run: no results.
    _write_sub(blind, "good", [(_blind_scores(0.30, 0.5, 1.0, 0.2), _blind_scores(0.28, 0.5, 0.9, 0.2)),
                               (_blind_scores(0.26, 0.5, 1.0, 0.2), _blind_scores(0.24, 0.4, 0.9, 0.1))])
    _write_sub(blind, "fair", [(_blind_scores(0.20, 0.4, 1.0, 0.3), _blind_scores(0.21, 0.4, 1.0, 0.3)),
                               (_blind_scores(0.20, 0.4, 1.0, 0.3), _blind_scores(0.21, 0.4, 1.0, 0.3))])
    (blind / "never_run").mkdir()
    (blind / "never_run" / "detector.py").write_text("class Detector:\n    pass\n")
    return tmp_path


class _Table(HTMLParser):
    """The rows (lists of cell texts) of the table with id ``blind-leaderboard``."""

    def __init__(self):
        super().__init__()
        self.inside = False
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == "blind-leaderboard":
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def test_blind_table_ranks_on_blind_with_fold_statistics(kit):
    results = collect_blind(kit / "blind" / "submissions")
    assert [r.name for r in results] == ["fair", "good", "never_run"]
    table = blind_table(results)
    assert list(table["submission"]) == ["good", "fair", "never_run"]
    assert list(table["rank"].iloc[:2]) == [1.0, 2.0] and pd.isna(table["rank"].iloc[2])
    good = table.iloc[0]
    assert good["blind_valid_mean"] == pytest.approx((0.30 + 0.26) / 2)
    assert good["blind_valid_std"] == pytest.approx(0.02)
    assert good["recall_test_mean"] == pytest.approx(0.45)
    assert good["unrecognised_test_mean"] == pytest.approx(0.15)
    assert good["blind_bagged_test"] == pytest.approx(0.28)
    assert table.iloc[2]["status"] == "not run"
    # Directions: the unrecognised-blend fraction is lower-better, the rest higher-better.
    assert table.attrs["directions"]["unrecognised"] is True
    assert {k for k, v in table.attrs["directions"].items() if not v} >= {"blind", "recall", "precision", "f1"}
    assert table.attrs["rank_score"] == "blind"


def test_blind_directions_agree_with_the_score_types():
    types = {s.name: s.is_lower_the_better for s in make_blind_score_types(list("ugrizy"))}
    assert {k: types[k] for k in BLIND_DIRECTIONS} == BLIND_DIRECTIONS


def test_build_writes_the_blind_section_and_files(kit, tmp_path):
    out = tmp_path / "board"
    paths = build(kit / "submissions", out, references=False, images=False)
    assert paths["blind_csv"].is_file() and paths["blind_md"].is_file()
    csv = pd.read_csv(paths["blind_csv"])
    assert list(csv["submission"]) == ["good", "fair", "never_run"]
    assert "| 1 | good |" in paths["blind_md"].read_text()
    page = paths["html"].read_text()
    assert 'id="blind"' in page
    parser = _Table()
    parser.feed(page)
    head, *rows = parser.rows
    assert head[:5] == ["#", "submission", "status", "folds", "blind valid"]
    assert {"precision test", "recall test", "F1 test", "unrecognised test"} <= set(head)
    assert [r[1] for r in rows] == ["good", "fair", "never_run"]
    col = head.index("unrecognised test")
    assert rows[0][col] == "0.1500 ± 0.0500" and rows[1][col] == "0.3000 ± 0.0000"
    assert rows[2][2].startswith("not run")


def test_build_without_blind_or_with_an_explicit_folder(kit, tmp_path):
    paths = build(kit / "submissions", tmp_path / "a", references=False, images=False, blind=False)
    assert "blind_csv" not in paths and 'id="blind-leaderboard"' not in paths["html"].read_text()
    moved = tmp_path / "elsewhere"
    (kit / "blind" / "submissions").rename(moved)
    paths = build(kit / "submissions", tmp_path / "b", references=False, images=False)
    assert "blind_csv" not in paths  # nothing found beside submissions/
    paths = build(kit / "submissions", tmp_path / "c", references=False, images=False, blind_dir=moved)
    assert list(pd.read_csv(paths["blind_csv"])["submission"]) == ["good", "fair", "never_run"]
    with pytest.raises(ConfigError, match="blind submissions directory .*nowhere.* does not exist"):
        LB.blind_submissions_dir(kit / "submissions", tmp_path / "nowhere")


def test_empty_blind_folder_says_so(tmp_path):
    (tmp_path / "submissions").mkdir()
    (tmp_path / "blind" / "submissions").mkdir(parents=True)
    paths = build(tmp_path / "submissions", tmp_path / "out", references=False, images=False)
    assert "No blind submissions found." in paths["html"].read_text()


@pytest.mark.slow
def test_blind_section_from_a_real_ramp_test(small_data_dir, tmp_path):
    """``ramp-test --quick-test --save-output`` of sep_detect in a copy of the blind kit, then the board."""
    repo = Path(__file__).resolve().parents[2]
    kit = tmp_path / "kit"
    (kit / "blind" / "submissions" / "sep_detect").mkdir(parents=True)
    shutil.copy(repo / "blind" / "problem.py", kit / "blind" / "problem.py")
    shutil.copy(repo / "blind" / "submissions" / "sep_detect" / "detector.py",
                kit / "blind" / "submissions" / "sep_detect" / "detector.py")
    (kit / "submissions").symlink_to(repo / "submissions", target_is_directory=True)  # the first track's templates
    (kit / "blind" / "data").symlink_to(small_data_dir, target_is_directory=True)
    run = subprocess.run([str(Path(sys.executable).with_name("ramp-test")), "--submission", "sep_detect",
                          "--quick-test", "--save-output"], capture_output=True, text=True, timeout=900,
                         cwd=kit / "blind", env={**os.environ, "NO_COLOR": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (kit / "empty").mkdir()
    paths = build(kit / "empty", tmp_path / "board", references=False, images=False,
                  blind_dir=kit / "blind" / "submissions")
    row = pd.read_csv(paths["blind_csv"]).iloc[0]
    bagged = pd.read_csv(kit / "blind" / "submissions" / "sep_detect" / "training_output" / "bagged_scores.csv")
    last_test = bagged[bagged["step"] == "test"].sort_values("n_bag").iloc[-1]
    assert row["submission"] == "sep_detect" and row["status"] == "scored" and row["rank"] == 1
    assert row["blind_bagged_test"] == pytest.approx(last_test["blind"])
    # Missed sources are missed: recall + the unrecognised fraction (a subset of the missed) is at most 1.
    assert 0.0 < row["recall_test_mean"] and row["recall_test_mean"] + row["unrecognised_test_mean"] <= 1.0 + 1e-9
    assert 'data-blind-submission="sep_detect"' in paths["html"].read_text()


def test_cli_flags_for_the_blind_section(kit, tmp_path, capsys):
    from deblendkit.cli.leaderboard import main

    moved = tmp_path / "elsewhere"
    (kit / "blind" / "submissions").rename(moved)
    base = ["--submissions", str(kit / "submissions"), "--data", str(tmp_path / "nodata"), "--no-images",
            "--no-references", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "with"), "--blind-submissions", str(moved)]) == 0
    assert (tmp_path / "with" / "blind_leaderboard.csv").is_file()
    assert main(base + ["--out", str(tmp_path / "without"), "--blind-submissions", str(moved), "--no-blind"]) == 0
    assert not (tmp_path / "without" / "blind_leaderboard.csv").exists()
    assert main(base + ["--out", str(tmp_path / "bad"), "--blind-submissions", str(tmp_path / "nowhere")]) == 2
    assert "blind submissions directory" in capsys.readouterr().err
