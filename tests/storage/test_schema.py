"""Tests of deblendkit.storage.schema: the truth columns and band names (the HDF5 contract of data/README.md)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.sim.modes import simulate_scene
from deblendkit.storage import (
    DATASETS,
    DTYPES,
    PER_BLEND_DATASETS,
    H5Source,
    dataset_shapes,
    read_dataset,
    truth_dtype,
    validate_file,
)
from tests.storage.fakes import BANDS, write_fake_file


def test_truth_dtype_columns_and_types():
    dt = truth_dtype(("g", "r"))
    expected = (
        ["blend_index", "slot", "x", "y", "flux_g", "flux_r", "mag_g", "mag_r"]
        + ["stamp_flux_g", "stamp_flux_r", "hlr_disk", "hlr_bulge", "e1", "e2"]
        + ["bulge_fraction", "redshift", "sed_bulge", "sed_disk", "blendedness", "snr", "labelled"]
        + ["contamination", "kind", "knot_fraction", "n_knots", "knot_seed", "e1_bulge", "e2_bulge"]
        + ["bulge_dx", "bulge_dy", "locus"]
    )
    assert list(dt.names) == expected
    assert dt["blend_index"] == np.int64
    assert dt["slot"] == dt["sed_bulge"] == dt["sed_disk"] == np.int16
    assert dt["labelled"] == dt["kind"] == np.int8 and dt["n_knots"] == np.int16 and dt["knot_seed"] == np.int64
    assert all(dt[c] == np.float64 for c in ("x", "y", "flux_g", "mag_r", "stamp_flux_g", "snr"))


@pytest.mark.parametrize("bands", ["gr", (), ("g", "g"), ("g", "")])
def test_truth_dtype_rejects_bad_bands(bands):
    with pytest.raises(ConfigError, match="band"):
        truth_dtype(bands)


def test_a_written_file_has_exactly_the_schema_and_the_readers_use_it(tmp_path):
    path = tmp_path / "f.h5"
    arrays, _ = write_fake_file(path, n=5, k=3, stamp=16, psf=9)
    want = dataset_shapes(5, 3, len(BANDS), 16, 9)
    assert tuple(want) == PER_BLEND_DATASETS
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == sorted(DATASETS)
        for name in PER_BLEND_DATASETS:
            assert (f[name].shape, f[name].dtype) == (want[name], DTYPES[name]), name
        assert f["truth"].dtype == truth_dtype(BANDS)
    layout = validate_file(path)
    assert layout.shapes() == want
    source = H5Source(path, layout)
    try:
        for name in PER_BLEND_DATASETS:
            view = source.array(name)
            assert (view.shape, view.dtype) == (want[name], DTYPES[name])
    finally:
        source.close()
    data = read_dataset(path)
    for name in PER_BLEND_DATASETS:
        assert (getattr(data, name).shape, getattr(data, name).dtype) == (want[name], DTYPES[name])
    assert list(data.truth.columns) == list(truth_dtype(BANDS).names)


def test_the_simulation_fills_the_truth_columns_in_schema_order():
    config = SimConfig()
    sample = simulate_scene(config, seed=3, split="train", index=0)
    assert list(sample.truth) == list(truth_dtype(config.simulated_bands).names)
    for name, column in sample.truth.items():
        assert len(column) == len(sample.truth["blend_index"]), name


def test_dataset_shapes_follow_the_sizes():
    shapes = dataset_shapes(4, 6, 3, 48, 25)
    assert shapes == {
        "blend": (4, 3, 48, 48), "isolated": (4, 6, 3, 48, 48), "psf": (4, 3, 25, 25),
        "noise_sigma": (4, 3), "centers": (4, 6, 2), "n_galaxies": (4,),
    }
