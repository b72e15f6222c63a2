"""Tests of deblendkit.ramp.prediction: the RAMP prediction type for 5-D image arrays."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

from deblendkit.errors import ConfigError, PredictionError
from deblendkit.ramp.prediction import DeblendPredictions, check_predictions, make_predictions_type

K, C, S = 2, 3, 4  # tiny: slots, bands, stamp side
Predictions = make_predictions_type(max_galaxies=K, n_bands=C, stamp_size=S)


def arrays(n, seed=0):
    return np.random.default_rng(seed).normal(0, 100, (n, K, C, S, S)).astype(np.float32)


def test_factory_sets_shape_and_rejects_bad_values():
    assert issubclass(Predictions, DeblendPredictions)
    assert Predictions.__name__ == "Predictions"
    assert (Predictions.max_galaxies, Predictions.n_bands, Predictions.stamp_size) == (K, C, S)
    for bad in (0, -1, 2.5, True, "6"):
        with pytest.raises(ConfigError, match=r"max_galaxies must be a positive integer, got"):
            make_predictions_type(max_galaxies=bad, n_bands=C, stamp_size=S)
    with pytest.raises(ConfigError, match="make_predictions_type"):
        DeblendPredictions(y_pred=arrays(1))


def test_constructed_as_rampwf_does():
    y = arrays(5)
    p = Predictions(y_pred=y)
    assert p.y_pred is y  # float32 input is not copied
    assert p.valid_indexes.all()
    gt = Predictions(y_true=y, fold_is=[1, 3])
    np.testing.assert_array_equal(gt.y_pred, y[[1, 3]])
    assert not np.shares_memory(gt.y_pred, y)
    empty = Predictions(n_samples=4)
    assert empty.y_pred.shape == (4, K, C, S, S) and empty.y_pred.dtype == np.float32
    assert not empty.valid_indexes.any()
    with pytest.raises(PredictionError, match="Missing init argument: y_pred, y_true, or n_samples"):
        Predictions()


def test_float64_and_lists_become_float32():
    y = arrays(2).astype(np.float64)
    p = Predictions(y_pred=y)
    assert p.y_pred.dtype == np.float32
    np.testing.assert_array_equal(p.y_pred, y.astype(np.float32))
    q = Predictions(y_pred=[row for row in y])
    np.testing.assert_array_equal(q.y_pred, p.y_pred)


def test_wrong_shape_raises_with_expected_shape():
    with pytest.raises(PredictionError, match=r"predictions have shape \(3, 2, 3, 4, 5\); expected \(\*, 2, 3, 4, 4\) = \(n_blends, max_galaxies"):
        Predictions(y_pred=np.zeros((3, K, C, S, S + 1), np.float32))
    with pytest.raises(PredictionError, match=r"ground truth have shape \(3, 3, 4, 4\) \(4-D\)"):
        Predictions(y_true=np.zeros((3, C, S, S), np.float32))


def test_valid_indexes_follow_nan_samples():
    y = arrays(4)
    y[1] = np.nan  # not predicted
    y[2, 0, 0, 0, 0] = np.nan  # partly NaN: still a prediction (scoring will reject it)
    y[3, 1] = np.nan
    p = Predictions(y_pred=y)
    np.testing.assert_array_equal(p.valid_indexes, [True, False, True, True])


def test_fold_slicing_round_trip():
    n = 6
    y = arrays(n)
    comb = Predictions(n_samples=n)
    fold = np.array([4, 0, 2])
    comb.set_valid_in_train(Predictions(y_pred=y, fold_is=fold), fold)
    np.testing.assert_array_equal(comb.valid_indexes, [True, False, True, False, True, False])
    np.testing.assert_array_equal(comb.y_pred[fold], y[fold])
    comb.set_slice(comb.valid_indexes)
    np.testing.assert_array_equal(comb.y_pred, y[[0, 2, 4]])
    assert comb.valid_indexes.all() and len(comb.valid_indexes) == 3


def _nanmean(list_of_arrays):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.array(list_of_arrays), axis=0)


def test_combine_equals_nanmean_of_folds():
    n = 7
    folds = [np.array([0, 1, 2, 3]), np.array([2, 3, 4]), np.array([3, 5])]  # 6 is never predicted
    members = []
    for i, fold in enumerate(folds):
        m = Predictions(n_samples=n)
        m.set_valid_in_train(Predictions(y_pred=arrays(n, seed=i), fold_is=fold), fold)
        members.append(m)
    # what rampwf's default would hold: NaN rows where a fold did not predict
    dense = []
    for i, fold in enumerate(folds):
        d = np.full((n, K, C, S, S), np.nan, np.float32)
        d[fold] = arrays(n, seed=i)[fold]
        dense.append(d)
    combined = Predictions.combine(members)
    expected = _nanmean(dense)
    np.testing.assert_allclose(combined.y_pred, expected, rtol=1e-6, equal_nan=True)
    assert combined.y_pred.dtype == np.float32
    np.testing.assert_array_equal(combined.valid_indexes, [True] * 6 + [False])
    # index_list with repeats (greedy ensembling) weighs members accordingly
    combined = Predictions.combine(members, [0, 0, 1])
    np.testing.assert_allclose(combined.y_pred, _nanmean([dense[0], dense[0], dense[1]]), rtol=1e-6, equal_nan=True)


def test_combine_of_full_predictions_is_the_mean():
    ys = [arrays(3, seed=s) for s in range(4)]
    combined = Predictions.combine([Predictions(y_pred=y) for y in ys])
    np.testing.assert_allclose(combined.y_pred, np.mean(ys, axis=0), rtol=1e-6, atol=1e-4)
    assert combined.valid_indexes.all()
    with pytest.raises(PredictionError, match="combine needs at least one Predictions"):
        Predictions.combine([])
    with pytest.raises(PredictionError, match="cannot combine predictions of shapes"):
        Predictions.combine([Predictions(y_pred=ys[0]), Predictions(y_pred=ys[1][:2])])


def test_deepcopy_shares_memory_and_copies_on_write():
    y = arrays(3)
    gt = Predictions(y_true=y)
    clone = copy.deepcopy(gt)
    assert clone.y_pred is gt.y_pred  # no copy of the (large) array
    clone.set_slice(np.array([True, False, True]))
    np.testing.assert_array_equal(gt.y_pred, y)
    container = Predictions(n_samples=3)
    twin = copy.deepcopy(container)
    twin.set_valid_in_train(Predictions(y_pred=y[:1]), [0])
    assert not container.valid_indexes.any() and np.all(container.y_pred == 0)
    assert twin.valid_indexes[0] and np.array_equal(twin.y_pred[0], y[0])


def test_set_valid_in_train_does_not_write_into_callers_array():
    y = arrays(3)
    p = Predictions(y_pred=y)
    p.set_valid_in_train(Predictions(y_pred=np.zeros((1, K, C, S, S), np.float32)), [1])
    assert np.all(p.y_pred[1] == 0) and not np.all(y[1] == 0)


def test_repr_is_short():
    assert repr(Predictions(n_samples=2)) == "Predictions(y_pred: shape (2, 2, 3, 4, 4), float32; 0 valid)"


def test_check_predictions():
    y = arrays(3)
    assert check_predictions(y, n_blends=3, max_galaxies=K, n_bands=C, stamp_size=S) is y
    with pytest.raises(PredictionError, match=r"predictions have shape \(3, 2, 3, 4, 4\); expected \(2, 2, 3, 4, 4\) = \(n_blends"):
        check_predictions(y, n_blends=2, max_galaxies=K, n_bands=C, stamp_size=S)
    y[2, 1, 0, 0, 0] = np.inf
    with pytest.raises(PredictionError, match=r"predictions contain 0 NaN and 1 inf values in 1 blend\(s\) \(blend indexes 2\)"):
        check_predictions(y, n_blends=3, max_galaxies=K, n_bands=C, stamp_size=S)
