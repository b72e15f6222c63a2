"""Tests of deblendkit.deblend.blendset.BlendSet, the X that submissions receive."""
from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
from sklearn.model_selection import KFold, ShuffleSplit

from deblendkit.deblend.blendset import BlendSet, load_split
from deblendkit.errors import ConfigError, DataFileError
from deblendkit.storage import DatasetWriter, truth_dtype

BANDS = ("g", "r")
X_FIELDS = ("blend", "psf", "noise_sigma", "centers", "n_galaxies")


def fake_arrays(n=8, k=3, c=2, stamp=16, psf=9, seed=0):
    """Random arrays of the right shapes and contract (filled slots 0..n-1)."""
    rng = np.random.default_rng(seed)
    n_gal = rng.integers(1, k + 1, size=n).astype(np.int32)
    filled = np.arange(k)[None, :] < n_gal[:, None]
    isolated = rng.gamma(2.0, 50.0, size=(n, k, c, stamp, stamp)).astype(np.float32)
    isolated[~filled] = 0
    sigma = rng.uniform(200, 600, size=(n, c)).astype(np.float32)
    blend = (isolated.sum(1) + sigma[..., None, None] * rng.normal(size=(n, c, stamp, stamp))).astype(np.float32)
    p = rng.random((n, c, psf, psf)).astype(np.float32)
    p /= p.sum(axis=(2, 3), keepdims=True)
    centers = rng.uniform(0, stamp - 1, size=(n, k, 2)).astype(np.float32)
    centers[~filled] = np.nan
    return dict(blend=blend, isolated=isolated, psf=p, noise_sigma=sigma, centers=centers, n_galaxies=n_gal)


def write_file(path, arrays):
    n, k, c, s = arrays["isolated"].shape[:4]
    b_idx, slot = np.nonzero(np.arange(k)[None, :] < arrays["n_galaxies"][:, None])
    truth = np.zeros(b_idx.size, dtype=truth_dtype(BANDS))
    truth["blend_index"], truth["slot"], truth["labelled"] = b_idx, slot, 1
    with DatasetWriter(path, n_blends=n, bands=BANDS, max_galaxies=k, stamp_size=s,
                       psf_size=arrays["psf"].shape[-1], attrs={"pixel_scale": 0.2}) as w:
        w.write(0, truth_rows=truth, **arrays)


def make_set(arrays):
    return BlendSet(**{f: arrays[f] for f in X_FIELDS}, bands=BANDS, pixel_scale=0.2)


@pytest.fixture
def arrays():
    return fake_arrays()


@pytest.fixture
def h5file(tmp_path, arrays):
    path = tmp_path / "train.h5"
    write_file(path, arrays)
    return path


def assert_same(X, arrays, idx=slice(None)):
    for f in X_FIELDS:
        np.testing.assert_array_equal(getattr(X, f), arrays[f][idx], err_msg=f)


# --------------------------------------------------------------------------
def test_attributes_and_repr(arrays):
    X = make_set(arrays)
    assert len(X) == 8 and X.bands == BANDS and X.n_bands == 2
    assert X.pixel_scale == 0.2 and X.max_galaxies == 3 and X.stamp_size == 16 and X.psf_size == 9
    assert X.blend.dtype == np.float32 and X.n_galaxies.dtype == np.int32
    assert_same(X, arrays)
    assert repr(X) == 'BlendSet(8 blends, bands gr, stamp 16x16 px, K=3, PSF 9x9 px, 0.2"/px, in memory)'


def test_no_truth_or_isolated_visible(h5file):
    X, y = load_split(h5file)
    for name in ("isolated", "truth", "y"):
        assert not hasattr(X, name)
        assert not hasattr(X[[0, 1]], name)
    assert y.shape == (8, 3, 2, 16, 16) and y.dtype == np.float32


def test_arrays_are_read_only_but_callers_stay_writable(arrays):
    X = make_set(arrays)
    for f in X_FIELDS:
        assert not getattr(X, f).flags.writeable
        assert not getattr(X[[3, 1]], f).flags.writeable
        assert not getattr(X[2:4], f).flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        X.blend[0, 0, 0, 0] = 1.0
    # The constructor freezes views, not the caller's own arrays.
    assert arrays["blend"].flags.writeable


@pytest.mark.parametrize(
    "key, expected",
    [
        (3, [3]),
        (-1, [7]),
        (slice(1, 7, 2), [1, 3, 5]),
        ([5, 0, 5], [5, 0, 5]),
        (np.array([2, -2]), [2, 6]),
        (np.arange(8) % 3 == 0, [0, 3, 6]),
        ([], []),
    ],
)
def test_index_kinds(arrays, key, expected):
    X = make_set(arrays)
    sub = X[key]
    assert len(sub) == len(expected)
    np.testing.assert_array_equal(sub.indices, expected)
    assert_same(sub, arrays, np.array(expected, dtype=int))


def test_bad_indices(arrays):
    X = make_set(arrays)
    with pytest.raises(IndexError, match="index 8 is out of range for a BlendSet of 8 blends"):
        X[8]
    with pytest.raises(IndexError, match="index -9 is out of range"):
        X[[0, -9]]
    with pytest.raises(IndexError, match=r"boolean mask must have shape \(8,\)"):
        X[np.ones(3, bool)]
    with pytest.raises(IndexError, match="1-D int array"):
        X[[0.5]]


@pytest.mark.parametrize("seed", range(5))
def test_indexing_composes(arrays, seed):
    rng = np.random.default_rng(seed)
    X = make_set(arrays)
    a = rng.permutation(8)[:6]
    b = rng.integers(0, 6, size=4)
    sub = X[a][b]
    np.testing.assert_array_equal(sub.indices, a[b])
    assert_same(sub, arrays, a[b])
    assert_same(X[a][1:4][::-1], arrays, a[1:4][::-1])
    # A subset of a subset reads from the root, not through its parent.
    assert sub._source is X._source


def test_subsets_are_lazy_and_do_not_copy_the_parent(arrays):
    X = make_set(arrays)
    fold = X[np.array([6, 1, 4])]
    assert fold._source is X._source and fold._cache == {}  # only indices so far
    blend = fold.blend  # materialised on first access, then cached
    assert fold.blend is blend and set(fold._cache) == {"blend"}
    assert blend.nbytes == 3 * arrays["blend"][0].nbytes  # its rows only
    assert not np.shares_memory(blend, X.blend)
    # A contiguous range is a view of the root arrays: no copy at all.
    window = X[2:5]
    assert np.shares_memory(window.blend, X.blend)
    assert np.shares_memory(X.blend, arrays["blend"])  # the constructor copied nothing


def test_batches_cover_all_rows_once_in_order(arrays):
    X = make_set(arrays)
    sub = X[[7, 0, 3, 3, 5]]
    batches = list(sub.batches(2))
    assert [len(b) for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([b.indices for b in batches]), [7, 0, 3, 3, 5])
    np.testing.assert_array_equal(
        np.concatenate([b.centers for b in batches]), arrays["centers"][[7, 0, 3, 3, 5]]
    )
    assert sum(len(b) for b in X.batches(100)) == 8
    with pytest.raises(ConfigError, match="batch_size must be a positive integer, got 0"):
        next(X.batches(0))


def test_pickle_round_trip(arrays):
    X = make_set(arrays)
    X2 = pickle.loads(pickle.dumps(X))
    assert_same(X2, arrays)
    assert not X2.blend.flags.writeable and X2.bands == BANDS and X2.pixel_scale == 0.2
    idx = np.array([5, 2])
    sub = pickle.loads(pickle.dumps(X[idx]))
    assert_same(sub, arrays, idx)
    np.testing.assert_array_equal(sub.indices, [0, 1])  # a standalone set of its rows
    # A subset pickles only its own rows.
    assert len(pickle.dumps(X[[0]])) < len(pickle.dumps(X)) / 4


def test_from_file_lazy_equals_in_memory(h5file, arrays):
    X_mem = BlendSet.from_file(h5file)
    X_lazy = BlendSet.from_file(h5file, in_memory=False)
    assert repr(X_lazy).endswith("from train.h5)")
    assert X_lazy._cache == {}
    assert_same(X_mem, arrays)
    assert_same(X_lazy, arrays)
    idx = np.array([6, 0, 0, 3, 7])
    assert_same(X_lazy[idx], arrays, idx)
    assert_same(X_lazy[1:4][[2, 0]], arrays, [3, 1])
    batches = list(BlendSet.from_file(h5file, in_memory=False).batches(3))
    np.testing.assert_array_equal(np.concatenate([b.blend for b in batches]), arrays["blend"])
    X_lazy.close()


def test_lazy_set_pickles_without_handle(h5file, arrays):
    X = BlendSet.from_file(h5file, in_memory=False)
    sub = X[[4, 2]]
    _ = sub.blend  # opens the file
    data = pickle.dumps(sub)
    assert b"h5py" not in data and len(data) < 4096  # path + indices, no arrays
    sub2 = pickle.loads(data)
    assert sub2._cache == {}
    assert_same(sub2, arrays, [4, 2])
    X.close()


def test_lazy_set_refuses_a_changed_file(h5file, tmp_path):
    X = BlendSet.from_file(h5file, in_memory=False)
    state = pickle.dumps(X)
    write_file(tmp_path / "other.h5", fake_arrays(n=5))
    (tmp_path / "other.h5").replace(h5file)
    with pytest.raises(DataFileError, match="changed since it was opened"):
        pickle.loads(state).blend


def test_load_split(h5file, arrays):
    X, y = load_split(h5file)
    assert_same(X, arrays)
    np.testing.assert_array_equal(y, arrays["isolated"])


def test_load_split_refuses_corrupt_file(h5file):
    with h5py.File(h5file, "r") as f:
        info = f["isolated"].id.get_chunk_info(2)
    data = bytearray(h5file.read_bytes())
    data[info.byte_offset + info.size // 2] ^= 0xFF
    h5file.write_bytes(bytes(data))
    with pytest.raises(DataFileError, match="is corrupt: reading dataset 'isolated'"):
        load_split(h5file)
    X = BlendSet.from_file(h5file)  # X holds no isolated images: still readable
    assert len(X) == 8


def test_constructor_validation(arrays):
    kw = {f: arrays[f] for f in X_FIELDS}
    with pytest.raises(ConfigError, match=r"blend has 2 bands \(axis 1\) but bands=\('g',\) names 1"):
        BlendSet(**kw, bands=("g",), pixel_scale=0.2)
    with pytest.raises(ConfigError, match="pixel_scale must be a positive number"):
        BlendSet(**kw, bands=BANDS, pixel_scale=0)
    with pytest.raises(ConfigError, match=r"psf must have shape \(8, 2, P, P\) with P odd"):
        BlendSet(**dict(kw, psf=kw["psf"][..., :8, :8]), bands=BANDS, pixel_scale=0.2)
    with pytest.raises(ConfigError, match=r"n_galaxies must lie in 0..3"):
        BlendSet(**dict(kw, n_galaxies=kw["n_galaxies"] + 3), bands=BANDS, pixel_scale=0.2)


@pytest.mark.parametrize("splitter", [KFold(n_splits=4), ShuffleSplit(n_splits=3, test_size=0.25, random_state=0)])
def test_sklearn_cv_folds_index_it(arrays, splitter):
    X = make_set(arrays)
    y = arrays["isolated"]
    for train, test in splitter.split(X):
        np.testing.assert_array_equal(X[train].blend, arrays["blend"][train])
        assert len(X[test]) == len(y[test])
