"""Tests of deblendkit.deblend.protocol: the Deblender protocol and predict_in_batches."""
from __future__ import annotations

import numpy as np
import pytest

from deblendkit.deblend import BlendSet, Deblender, predict_in_batches
from deblendkit.errors import ConfigError
from tests.deblend.test_blendset import fake_arrays, make_set, write_file


class PlainDeblender:
    """A submission that knows nothing of the helper: fit/predict only."""

    def fit(self, X, y):
        self.scale_ = float(np.mean(y)) / max(float(np.mean(X.blend)), 1e-12)
        return self

    def predict(self, X):
        pred = np.zeros((len(X), X.max_galaxies) + X.blend.shape[1:], dtype=np.float32)
        for i, k in enumerate(X.n_galaxies):
            pred[i, :k] = X.blend[i] / k  # an equal share of the blend to every galaxy
        return pred


def _equal_share(batch, i):
    k = int(batch.n_galaxies[i])
    return np.repeat(batch.blend[i][None] / k, k, axis=0)


def test_a_plain_fit_predict_class_is_a_deblender_and_matches_the_helper():
    arrays = fake_arrays(n=7)
    X, y = make_set(arrays), arrays["isolated"]
    model = PlainDeblender()
    assert isinstance(model, Deblender)
    assert model.fit(X, y) is model
    pred = model.predict(X)
    assert pred.shape == y.shape and pred.dtype == np.float32
    np.testing.assert_array_equal(pred, predict_in_batches(X, _equal_share, batch_size=3))


def test_an_object_without_predict_is_not_a_deblender():
    class FitOnly:
        def fit(self, X, y):
            return self

    assert not isinstance(FitOnly(), Deblender)


@pytest.mark.parametrize("batch_size", [1, 2, 5, 100])
def test_batches_do_not_change_the_result_and_empty_slots_stay_zero(batch_size):
    arrays = fake_arrays(n=9, k=4)
    X = make_set(arrays)
    pred = predict_in_batches(X, _equal_share, batch_size=batch_size)
    assert pred.shape == (9, 4, 2, 16, 16) and pred.dtype == np.float32
    filled = np.arange(4)[None, :] < arrays["n_galaxies"][:, None]
    assert not pred[~filled].any()
    # the shares of each blend sum to the blend (flux conserved), whatever the batch size
    np.testing.assert_allclose(pred.sum(axis=1), arrays["blend"], rtol=1e-5, atol=1e-3)


def test_blends_without_galaxies_are_not_passed_to_the_function():
    arrays = fake_arrays(n=4, k=2)
    arrays["n_galaxies"][1] = 0
    arrays["centers"][1] = np.nan
    calls = []

    def fn(batch, i):
        calls.append(int(batch.indices[i]))
        return _equal_share(batch, i)

    pred = predict_in_batches(make_set(arrays), fn, batch_size=3)
    assert calls == [0, 2, 3]
    assert not pred[1].any()


def test_a_file_backed_set_is_read_batch_by_batch(tmp_path):
    arrays = fake_arrays(n=6)
    write_file(tmp_path / "x.h5", arrays)
    X = BlendSet.from_file(tmp_path / "x.h5", in_memory=False)
    try:
        got = predict_in_batches(X, _equal_share, batch_size=4)
    finally:
        X.close()
    np.testing.assert_array_equal(got, predict_in_batches(make_set(arrays), _equal_share))


def test_an_empty_set_gives_an_empty_prediction():
    X = make_set(fake_arrays(n=3))[:0]
    pred = predict_in_batches(X, _equal_share)
    assert pred.shape == (0, 3, 2, 16, 16) and pred.dtype == np.float32


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_batch_size_is_checked(bad):
    with pytest.raises(ConfigError, match=r"batch_size must be a positive integer, got"):
        predict_in_batches(make_set(fake_arrays(n=2)), _equal_share, batch_size=bad)
