"""Tests of deblendkit.storage.lazy: H5Array reads rows lazily, in any order (the HDF5 contract of data/README.md)."""
from __future__ import annotations

import numpy as np
import pytest

from deblendkit.storage import (
    PER_BLEND_DATASETS,
    H5Array,
    read_dataset,
)
from tests.storage.fakes import (
    write_fake_file,
)


def test_lazy_read_matches_and_takes_any_order(tmp_path):
    path = tmp_path / "a.h5"
    arrays, _ = write_fake_file(path, n=10)
    with read_dataset(path, in_memory=False) as ds:
        assert isinstance(ds.isolated, H5Array) and len(ds) == 10
        idx = np.array([7, 2, 2, 9, 0, 1, -1])
        for name in PER_BLEND_DATASETS:
            arr = getattr(ds, name)
            np.testing.assert_array_equal(arr.take(idx), arrays[name][idx], err_msg=name)
            np.testing.assert_array_equal(arr[3:6], arrays[name][3:6])
            np.testing.assert_array_equal(np.asarray(arr), arrays[name])
        with pytest.raises(IndexError, match="out of range"):
            ds.blend.take([10])
