"""Tests of deblendkit.storage.schema: the truth columns and band names (the HDF5 contract of data/README.md)."""
from __future__ import annotations

import numpy as np
import pytest

from deblendkit.errors import ConfigError
from deblendkit.storage import (
    truth_dtype,
)


def test_truth_dtype_columns_and_types():
    dt = truth_dtype(("g", "r"))
    expected = (
        ["blend_index", "slot", "x", "y", "flux_g", "flux_r", "mag_g", "mag_r"]
        + ["stamp_flux_g", "stamp_flux_r", "hlr_disk", "hlr_bulge", "e1", "e2"]
        + ["bulge_fraction", "redshift", "sed_bulge", "sed_disk", "blendedness", "snr", "labelled"]
        + ["contamination"]
    )
    assert list(dt.names) == expected
    assert dt["blend_index"] == np.int64
    assert dt["slot"] == dt["sed_bulge"] == dt["sed_disk"] == np.int16
    assert dt["labelled"] == np.int8
    assert all(dt[c] == np.float64 for c in ("x", "y", "flux_g", "mag_r", "stamp_flux_g", "snr"))


@pytest.mark.parametrize("bands", ["gr", (), ("g", "g"), ("g", "")])
def test_truth_dtype_rejects_bad_bands(bands):
    with pytest.raises(ConfigError, match="band"):
        truth_dtype(bands)
