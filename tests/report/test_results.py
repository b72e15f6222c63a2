"""The results files (deblendkit.scoring.results_files, read by deblendkit.report.results).

The hook ``problem.save_y_pred`` that writes them: tests/ramp/test_save_output.py.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deblendkit.errors import ConfigError, DataFileError, PredictionError
from deblendkit.report import results as R
from deblendkit.storage import read_dataset


@pytest.fixture(scope="module")
def test_set(small_data_dir):
    return read_dataset(small_data_dir / "test.h5")


def test_perfect_prediction_table_and_meta(test_set, small_data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("RAMP_TEST_MODE", raising=False)
    out = tmp_path / "fold_1"
    meta = R.write_results(test_set.isolated, small_data_dir / "test.h5", out)
    table = R.read_galaxy_table(out / R.GALAXY_TABLE_FILE)
    truth = test_set.truth
    # One row per true galaxy, in (blend, slot) order, every one scored perfectly.
    assert len(table) == len(truth)
    np.testing.assert_array_equal(table["blend_index"], truth["blend_index"])
    np.testing.assert_array_equal(table["slot"], truth["slot"])
    np.testing.assert_allclose(table["deblend"], 1.0, atol=1e-6)
    # The truth columns are joined: blendedness and magnitudes are those of the file.
    np.testing.assert_allclose(table["blendedness"], truth["blendedness"])
    np.testing.assert_allclose(table["mag_r"], truth["mag_r"])
    assert meta == R.read_results_meta(out / R.RESULTS_FILE)
    assert meta["data_file"] == "test.h5"
    assert meta["n_blends"] == len(test_set)
    assert meta["n_galaxies"] == len(truth)
    assert meta["fold"] == 1
    assert meta["quick_test"] is False
    assert meta["results_version"] == R.RESULTS_VERSION
    assert meta["data_created"] == test_set.attrs["created"]


def test_scaled_prediction_scores_one_minus_scale(test_set, small_data_dir, tmp_path):
    # y_hat = a y  =>  NRE = |a - 1|, score = 1 - |a - 1| for every galaxy.
    R.write_results(0.75 * test_set.isolated, small_data_dir / "test.h5", tmp_path)
    table = R.read_galaxy_table(tmp_path / R.GALAXY_TABLE_FILE)
    np.testing.assert_allclose(table["deblend"], 0.75, atol=1e-5)
    np.testing.assert_allclose(table["flux_err_r"], -0.25, atol=1e-5)


def test_gallery_holds_the_chosen_blends(test_set, small_data_dir, tmp_path):
    rng = np.random.default_rng(3)
    y_pred = (test_set.isolated * rng.uniform(0.5, 1.5, size=test_set.isolated.shape[:2] + (1, 1, 1))).astype(
        np.float32)
    R.write_results(y_pred, small_data_dir / "test.h5", tmp_path)
    g = R.read_gallery(tmp_path / R.GALLERY_FILE)
    rows = R.gallery_indices(test_set.truth, len(test_set))
    np.testing.assert_array_equal(g.blend_index, rows)
    assert g.bands == ("i", "r", "g")
    chans = [test_set.bands.index(b) for b in g.bands]
    np.testing.assert_array_equal(g.blend, test_set.blend[rows][:, chans])
    np.testing.assert_array_equal(g.isolated, test_set.isolated[rows][:, :, chans])
    np.testing.assert_array_equal(g.predicted, y_pred[rows][:, :, chans])
    np.testing.assert_array_equal(g.n_galaxies, test_set.n_galaxies[rows])
    table = R.read_galaxy_table(tmp_path / R.GALAXY_TABLE_FILE)
    for j, r in enumerate(rows):
        sub = table[table["blend_index"] == r]
        np.testing.assert_allclose(g.deblend[j, sub["slot"]], sub["deblend"])
        empty = np.setdiff1d(np.arange(test_set.max_galaxies), sub["slot"])
        assert np.all(np.isnan(g.deblend[j, empty]))


def test_gallery_indices_span_blendedness():
    truth = pd.DataFrame({
        "blend_index": [0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9],
        "blendedness": [0.1, 0.5, 0.05, 0.9, 0.2, 0.3, 0.01, 0.7, 0.6, 0.4, 0.02, 0.8],
    })
    worst = truth.groupby("blend_index")["blendedness"].max().to_numpy()
    rows = R.gallery_indices(truth, 10, n=4)
    assert len(rows) == 4 and len(set(rows)) == 4
    # From the least to the most blended blend, increasing in between.
    assert rows[0] == np.argmin(worst) and rows[-1] == np.argmax(worst)
    assert np.all(np.diff(worst[rows]) > 0)
    # Deterministic, and capped at the number of blends.
    np.testing.assert_array_equal(rows, R.gallery_indices(truth.sample(frac=1, random_state=1), 10, n=4))
    np.testing.assert_array_equal(np.sort(R.gallery_indices(truth, 10, n=50)), np.arange(10))
    assert R.gallery_indices(truth.iloc[:0], 0).size == 0


def test_gallery_indices_rejects_bad_arguments():
    truth = pd.DataFrame({"blend_index": [0], "blendedness": [0.1]})
    with pytest.raises(ConfigError, match="n must be a positive integer number of blends, got 0"):
        R.gallery_indices(truth, 1, n=0)
    with pytest.raises(ConfigError, match=r"truth table lacks column\(s\) \['blendedness'\]"):
        R.gallery_indices(truth[["blend_index"]], 1)


def test_rgb_bands():
    assert R.rgb_bands("ugrizy") == ("i", "r", "g")
    assert R.rgb_bands(("g", "r")) == ("r", "r", "g")
    assert R.rgb_bands(("VIS",)) == ("VIS", "VIS", "VIS")
    with pytest.raises(ConfigError, match="bands must name at least one band"):
        R.rgb_bands(())


def test_wrong_shape_is_a_prediction_error(test_set, small_data_dir, tmp_path):
    bad = test_set.isolated[:, :, :3]
    with pytest.raises(PredictionError, match=r"predictions have shape .* expected .* of test\.h5"):
        R.write_results(bad, small_data_dir / "test.h5", tmp_path)


def test_missing_data_file(tmp_path):
    with pytest.raises(DataFileError, match="does not exist; cannot score the predictions"):
        R.write_results(np.zeros((1, 6, 6, 48, 48), np.float32), tmp_path / "nope.h5", tmp_path)


def test_read_errors_are_data_file_errors(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataFileError, match="cannot read gallery file"):
        R.read_gallery(tmp_path / "bad.npz")
    np.savez(tmp_path / "partial.npz", blend_index=np.arange(2))
    with pytest.raises(DataFileError, match=r"lacks field\(s\) \['blend', "):
        R.read_gallery(tmp_path / "partial.npz")
    (tmp_path / "r.json").write_text("{broken")
    with pytest.raises(DataFileError, match="cannot read results file"):
        R.read_results_meta(tmp_path / "r.json")
    (tmp_path / "t.csv.gz").write_bytes(b"\x00\x01")
    with pytest.raises(DataFileError, match="cannot read galaxy table"):
        R.read_galaxy_table(tmp_path / "t.csv.gz")
