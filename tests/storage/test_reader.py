"""Tests of deblendkit.storage.reader: validation of damaged, foreign and inconsistent files (the HDF5 contract of data/README.md)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from deblendkit.errors import DataFileError
from deblendkit.storage import (
    SCHEMA_VERSION,
    read_batches,
    read_dataset,
    validate_file,
)
from tests.storage.fakes import (
    chunk_offset,
    write_fake_file,
)


def test_missing_file(tmp_path):
    with pytest.raises(DataFileError, match=r"nope\.h5 does not exist"):
        read_dataset(tmp_path / "nope.h5")


def test_plain_file_is_not_hdf5(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("this is not HDF5\n" * 100)
    with pytest.raises(DataFileError, match=r"notes\.h5 is not a readable HDF5 file"):
        read_dataset(path)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_file(tmp_path, fraction):
    path = tmp_path / "a.h5"
    write_fake_file(path)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(int(size * fraction))
    with pytest.raises(DataFileError, match=r"a\.h5"):
        read_dataset(path)
    with pytest.raises(DataFileError, match=r"a\.h5"):
        list(read_batches(path, 3))


def test_bit_flip_in_isolated_is_caught(tmp_path):
    path = tmp_path / "a.h5"
    arrays, _ = write_fake_file(path)
    offset, size = chunk_offset(path, "isolated", 3)
    data = bytearray(path.read_bytes())
    data[offset + size // 2] ^= 0x10
    path.write_bytes(bytes(data))

    validate_file(path)  # structure intact: the shallow check reads no data chunk
    with pytest.raises(DataFileError, match=r"a\.h5 is corrupt: reading dataset 'isolated' failed"):
        validate_file(path, deep=True)
    with pytest.raises(DataFileError, match="is corrupt"):
        read_dataset(path)
    with pytest.raises(DataFileError, match="is corrupt"):
        list(read_batches(path, 2))
    with read_dataset(path, in_memory=False) as ds:
        # Other rows are still readable; the damaged one never comes back as data.
        np.testing.assert_array_equal(ds.isolated[0:3], arrays["isolated"][0:3])
        with pytest.raises(DataFileError, match="is corrupt"):
            ds.isolated.take([5, 3])


def test_other_schema_version(tmp_path):
    path = tmp_path / "a.h5"
    write_fake_file(path)
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(
        DataFileError,
        match=rf"a\.h5 has schema_version {SCHEMA_VERSION + 1}; this kit reads {SCHEMA_VERSION}",
    ):
        read_dataset(path)


def test_not_our_file(tmp_path):
    path = tmp_path / "a.h5"
    write_fake_file(path)
    with h5py.File(path, "a") as f:
        del f.attrs["kit"]
    with pytest.raises(DataFileError, match="is not a deblendkit data file: it has no 'kit' attribute"):
        validate_file(path)


def test_missing_dataset(tmp_path):
    path = tmp_path / "a.h5"
    write_fake_file(path)
    with h5py.File(path, "a") as f:
        del f["isolated"]
    with pytest.raises(
        DataFileError,
        match=r"has no dataset 'isolated'; expected blend, isolated, psf, noise_sigma, centers, n_galaxies, truth",
    ):
        read_dataset(path)


def test_inconsistent_shapes(tmp_path):
    path = tmp_path / "a.h5"
    write_fake_file(path, n=8)
    with h5py.File(path, "a") as f:
        del f["noise_sigma"]
        f.create_dataset("noise_sigma", data=np.ones((7, 2), np.float32), chunks=(1, 2), fletcher32=True)
    with pytest.raises(DataFileError, match=r"inconsistent dataset shapes .* noise_sigma \(7, 2\)"):
        read_dataset(path)


def test_dataset_without_checksum_is_refused(tmp_path):
    path = tmp_path / "a.h5"
    arrays, _ = write_fake_file(path, n=8)
    with h5py.File(path, "a") as f:
        del f["psf"]
        f.create_dataset("psf", data=arrays["psf"])
    with pytest.raises(DataFileError, match="'psf' has no fletcher32 checksum"):
        read_dataset(path)


def test_bad_bookkeeping_is_refused(tmp_path):
    path = tmp_path / "a.h5"
    write_fake_file(path, n=8)
    with h5py.File(path, "a") as f:
        f["n_galaxies"][1] = 9
    with pytest.raises(DataFileError, match="n_galaxies of blend 1 is 9; allowed 0..3"):
        read_dataset(path)
