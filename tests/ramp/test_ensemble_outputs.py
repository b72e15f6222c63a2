"""The ensemble rebuilt from saved ramp-test outputs (fabricated fold files on the small data set)."""
from __future__ import annotations

import numpy as np
import pytest

from deblendkit.errors import ConfigError, DataFileError
from deblendkit.ramp.ensemble_outputs import TEST_ARRAY, TRAIN_ARRAY, ensemble_from_outputs
from deblendkit.ramp.problem import get_cv
from deblendkit.scoring.metrics import deblend_scores
from deblendkit.storage import LazyRows


def _save_member(subs, name, train, test, factor, n_folds=None):
    y_train = np.asarray(LazyRows.from_file(train))
    y_test = np.asarray(LazyRows.from_file(test))
    for i, (_, valid_is) in enumerate(get_cv(np.zeros(len(y_train)), None)):
        if n_folds is not None and i >= n_folds:
            break
        fold = subs / name / "training_output" / f"fold_{i}"
        fold.mkdir(parents=True)
        pred = np.full_like(y_train, np.nan)
        pred[valid_is] = y_train[valid_is] * factor
        np.savez_compressed(fold / TRAIN_ARRAY, y_pred=pred)
        np.savez_compressed(fold / TEST_ARRAY, y_pred=y_test * factor)
    return y_test


def _primary(y, p):
    return float(deblend_scores(y, p)[1].mean())


def test_complementary_members_combine_better_than_either(small_data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("RAMP_TEST_MODE", raising=False)
    train, test = small_data_dir / "train.h5", small_data_dir / "test.h5"
    subs = tmp_path / "submissions"
    y_test = _save_member(subs, "bright", train, test, 1.35)
    _save_member(subs, "faint", train, test, 0.6)
    _save_member(subs, "zero", train, test, 0.0)
    out = ensemble_from_outputs(subs, ["zero", "faint", "bright"], train_file=train, test_file=test)
    assert out.members == ("bright", "faint", "zero") and len(out.folds) == 3
    for sel in out.folds:
        assert sorted(sel.picks) == ["bright", "faint"] and sel.score == pytest.approx(0.975, abs=1e-5)
    assert out.contributivity == {"bright": 0.5, "faint": 0.5, "zero": 0.0}
    assert sum(out.contributivity.values()) == pytest.approx(1.0)
    np.testing.assert_allclose(out.test_predictions, y_test * 0.975, rtol=1e-5, atol=1e-6)
    # alone: bright (x1.35) scores 0.65, faint (x0.6) 0.6; together (x0.975) 0.975.
    assert out.best_single == "bright" and out.best_single_valid_score == pytest.approx(0.65, abs=1e-5)
    np.testing.assert_allclose(out.best_single_test_predictions, y_test * 1.35, rtol=1e-6)
    assert out.valid_score > out.best_single_valid_score
    assert _primary(y_test, out.test_predictions) > _primary(y_test, out.best_single_test_predictions)


def test_missing_or_mismatched_outputs_are_refused(small_data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("RAMP_TEST_MODE", raising=False)
    train, test = small_data_dir / "train.h5", small_data_dir / "test.h5"
    subs = tmp_path / "submissions"
    _save_member(subs, "a", train, test, 1.0)
    _save_member(subs, "b", train, test, 1.0, n_folds=2)
    with pytest.raises(ConfigError, match=r"^an ensemble needs at least one submission, got none$"):
        ensemble_from_outputs(subs, [], train_file=train, test_file=test)
    with pytest.raises(DataFileError, match=r"different numbers of folds: \{'a': 3, 'b': 2\}"):
        ensemble_from_outputs(subs, ["a", "b"], train_file=train, test_file=test)
    (subs / "a" / "training_output" / "fold_1" / TRAIN_ARRAY).write_bytes(b"not an npz")
    with pytest.raises(DataFileError, match=r"cannot read the saved predictions .*fold_1/y_pred_train.npz"):
        ensemble_from_outputs(subs, ["a"], train_file=train, test_file=test)
