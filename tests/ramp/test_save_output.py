"""rampwf's hook ``problem.save_y_pred`` (deblendkit.ramp.save_output): the results files, never the arrays."""
from __future__ import annotations

import types

import numpy as np
import pytest

from deblendkit.errors import ConfigError, DeblendKitError
from deblendkit.ramp import save_output as S
from deblendkit.report import results as R
from deblendkit.storage import read_dataset


@pytest.fixture()
def kit_dir(small_data_dir, tmp_path):
    """A kit directory whose data/ is the shared small data set."""
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "data").symlink_to(small_data_dir, target_is_directory=True)
    return kit


@pytest.fixture(scope="module")
def test_set(small_data_dir):
    return read_dataset(small_data_dir / "test.h5")


def test_save_y_pred_test_and_train_suffixes(kit_dir, test_set, tmp_path, monkeypatch):
    monkeypatch.delenv("RAMP_TEST_MODE", raising=False)
    out = tmp_path / "fold_0"
    out.mkdir()
    S.save_y_pred(np.full_like(test_set.isolated, np.nan), str(kit_dir), str(out), "train")
    assert list(out.iterdir()) == []  # nothing for the training predictions
    S.save_y_pred(test_set.isolated, str(kit_dir), str(out), "test")
    assert sorted(p.name for p in out.iterdir()) == sorted([R.GALAXY_TABLE_FILE, R.GALLERY_FILE, R.RESULTS_FILE])


def test_save_y_pred_quick_mode_reads_the_mini_file(kit_dir, small_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RAMP_TEST_MODE", "1")
    mini = read_dataset(small_data_dir / "test_mini.h5")
    S.save_y_pred(np.zeros_like(mini.isolated), str(kit_dir), str(tmp_path), "test")
    meta = R.read_results_meta(tmp_path / R.RESULTS_FILE)
    assert meta["data_file"] == "test_mini.h5" and meta["quick_test"] is True
    assert meta["n_blends"] == len(mini)
    table = R.read_galaxy_table(tmp_path / R.GALAXY_TABLE_FILE)
    np.testing.assert_array_equal(table["deblend"], 0.0)  # zeros score 0


def test_rampwf_uses_the_hook_and_never_falls_back(kit_dir, test_set, tmp_path, monkeypatch):
    """rampwf treats an AttributeError as "no hook" and would save the whole array."""
    from rampwf.utils.io import save_y_pred as rampwf_save

    monkeypatch.delenv("RAMP_TEST_MODE", raising=False)
    problem = types.SimpleNamespace(save_y_pred=S.save_y_pred)
    rampwf_save(problem, test_set.isolated, data_path=str(kit_dir), output_path=str(tmp_path), suffix="test")
    assert (tmp_path / R.GALAXY_TABLE_FILE).is_file()
    assert not (tmp_path / "y_pred_test.npz").exists()

    def broken(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'shape'")

    monkeypatch.setattr(S.results_files, "write_results", broken)
    with pytest.raises(DeblendKitError, match=r"writing the results files of .* failed: AttributeError: "):
        rampwf_save(problem, test_set.isolated, data_path=str(kit_dir), output_path=str(tmp_path / "x"),
                    suffix="test")
    assert not (tmp_path / "x" / "y_pred_test.npz").exists()


def test_prediction_arrays_on_request(kit_dir, test_set, tmp_path, monkeypatch):
    """ramp-board reads fold_<i>/y_pred_{train,test}.npz back: DEBLEND_SAVE_Y_PRED=1 writes them."""
    from rampwf.utils.io import load_y_pred

    monkeypatch.delenv("RAMP_TEST_MODE", raising=False)
    monkeypatch.setenv(S.SAVE_ARRAYS_ENV, "1")
    train_pred = np.full_like(test_set.isolated, np.nan)
    S.save_y_pred(train_pred, str(kit_dir), str(tmp_path), "train")
    S.save_y_pred(test_set.isolated, str(kit_dir), str(tmp_path), "test")
    problem = types.SimpleNamespace()  # no load_y_pred: rampwf's own np.load
    np.testing.assert_array_equal(load_y_pred(problem, input_path=str(tmp_path), suffix="test"), test_set.isolated)
    assert np.isnan(load_y_pred(problem, input_path=str(tmp_path), suffix="train")).all()
    assert (tmp_path / R.GALAXY_TABLE_FILE).is_file()
    monkeypatch.setenv(S.SAVE_ARRAYS_ENV, "0")
    assert S.save_arrays_requested() is False
    monkeypatch.setenv(S.SAVE_ARRAYS_ENV, "maybe")
    with pytest.raises(ConfigError, match="DEBLEND_SAVE_Y_PRED must be 1 or 0 .* got 'maybe'"):
        S.save_y_pred(test_set.isolated, str(kit_dir), str(tmp_path), "test")
