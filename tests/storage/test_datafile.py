"""Tests of deblendkit.storage.datafile: read_dataset and read_batches (the HDF5 contract of data/README.md)."""
from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from deblendkit.errors import ConfigError
from deblendkit.storage import (
    PER_BLEND_DATASETS,
    read_batches,
)
from tests.storage.fakes import (
    sorted_truth,
    write_fake_file,
)


def test_read_batches_cover_file(tmp_path):
    path = tmp_path / "a.h5"
    arrays, truth = write_fake_file(path, n=11)
    batches = list(read_batches(path, 4))
    assert [b.start for b in batches] == [0, 4, 8] and [len(b) for b in batches] == [4, 4, 3]
    for name in PER_BLEND_DATASETS:
        got = np.concatenate([getattr(b, name) for b in batches])
        np.testing.assert_array_equal(got, arrays[name], err_msg=name)
    for b in batches:
        idx = b.truth["blend_index"].to_numpy()
        assert np.all((idx >= b.start) & (idx < b.start + len(b)))
        # every labelled slot of the batch is there
        assert len(b.truth) == int(b.n_galaxies.sum())
    got = pd.concat([b.truth for b in batches], ignore_index=True)
    pd.testing.assert_frame_equal(got, pd.DataFrame(sorted_truth(truth)))
    with pytest.raises(ConfigError, match="batch_size must be a positive integer, got 0"):
        next(read_batches(path, 0))


def test_read_batches_memory_is_bounded(tmp_path):
    path = tmp_path / "big.h5"
    arrays, _ = write_fake_file(path, n=40, k=6, stamp=32)
    full = arrays["isolated"].nbytes
    del arrays
    gc.collect()
    for _ in read_batches(path, 2):  # warm up imports and caches
        pass
    tracemalloc.start()
    try:
        total = 0
        for batch in read_batches(path, 2):
            total += len(batch)
            del batch
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 40
    assert peak < full / 5, (peak, full)
