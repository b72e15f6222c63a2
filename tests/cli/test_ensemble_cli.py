"""deblend-ensemble: files written, scores printed, errors as one line."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from deblendkit.cli.ensemble import main
from deblendkit.report.ensemble import ENSEMBLE_FILE, ENSEMBLE_TABLE_FILE
from deblendkit.scoring.table import galaxy_table, summarize
from deblendkit.storage import read_dataset
from tests.ramp.test_ensemble_outputs import _save_member


def test_the_command_writes_the_ensemble_and_its_galaxy_table(small_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RAMP_TEST_MODE", raising=False)
    train, test = small_data_dir / "train.h5", small_data_dir / "test.h5"
    subs = tmp_path / "submissions"
    y_test = _save_member(subs, "bright", train, test, 1.35)
    _save_member(subs, "faint", train, test, 0.6)
    out = tmp_path / "ens"
    rc = main(["bright", "faint", "--submissions", str(subs), "--data", str(small_data_dir), "--out", str(out)])
    assert rc == 0
    meta = json.loads((out / ENSEMBLE_FILE).read_text())
    assert meta["contributivity"] == {"bright": 0.5, "faint": 0.5} and meta["best_single"] == "bright"
    data = read_dataset(test)
    expected = summarize(galaxy_table(y_test, y_test * 0.975, bands=data.bands, truth=data.truth), bands=data.bands)
    assert meta["test"]["ensemble"]["deblend"] == pytest.approx(expected["deblend"], abs=1e-6)
    assert meta["test"]["bright"]["deblend"] == pytest.approx(0.65, abs=1e-5)
    table = pd.read_csv(out / ENSEMBLE_TABLE_FILE)
    assert set(table["member"]) == {"ensemble", "bright"} and len(table) == 2 * int((data.truth["slot"] >= 0).sum())
    printed = capsys.readouterr().out
    assert "best single: bright" in printed and "contributivity: bright 0.500, faint 0.500" in printed


def test_missing_outputs_give_one_line(small_data_dir, tmp_path, capsys):
    rc = main(["nobody", "--submissions", str(tmp_path), "--data", str(small_data_dir), "--out", str(tmp_path / "o")])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"deblend-ensemble: submission 'nobody' has no saved folds in {tmp_path}/nobody/training_output; "
                   "run `DEBLEND_SAVE_Y_PRED=1 ramp-test --submission nobody --save-output` first"]
