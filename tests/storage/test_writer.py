"""Tests of deblendkit.storage.writer: DatasetWriter (atomic, checked rows, attributes) (the HDF5 contract of data/README.md)."""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from deblendkit.errors import ConfigError, DataFileError, OutputExistsError
from deblendkit.storage import (
    DATASETS,
    KIT_NAME,
    PER_BLEND_DATASETS,
    SCHEMA_VERSION,
    DatasetWriter,
    read_dataset,
    truth_dtype,
)
from tests.storage.fakes import (
    ATTRS,
    BANDS,
    fake_arrays,
    rows,
    sorted_truth,
    write_fake_file,
    writer_for,
)


def test_round_trip_two_chunks_out_of_order(tmp_path):
    path = tmp_path / "train.h5"
    arrays, truth = fake_arrays(n=8)
    with writer_for(path, arrays) as w:
        w.write(5, **rows(arrays, truth, 5, 8))
        part = rows(arrays, truth, 0, 5)
        part["truth_rows"] = pd.DataFrame(part["truth_rows"])  # DataFrames are accepted too
        w.write(0, **part)
    assert sorted(os.listdir(tmp_path)) == ["train.h5"]  # no temp file left

    ds = read_dataset(path)
    for name in PER_BLEND_DATASETS:
        got = getattr(ds, name)
        assert got.dtype == arrays[name].dtype, name
        np.testing.assert_array_equal(got, arrays[name], err_msg=name)
    expected = pd.DataFrame(sorted_truth(truth))
    pd.testing.assert_frame_equal(ds.truth, expected)
    assert list(ds.truth.dtypes) == [truth_dtype(BANDS)[c] for c in truth_dtype(BANDS).names]

    attrs = ds.attrs
    assert attrs["schema_version"] == SCHEMA_VERSION and attrs["kit"] == KIT_NAME
    assert attrs["bands"] == list(BANDS) and ds.bands == BANDS
    assert attrs["gain"] == [1.5, 1.7] and attrs["zeropoint"] == [28.1, 28.3]
    assert attrs["config"] == ATTRS["config"]
    assert attrs["seed"] == 1234 and attrs["split"] == "train" and attrs["first_index"] == 0
    assert attrs["units"] == "ADU" and "created" in attrs
    assert ds.pixel_scale == 0.2 and ds.max_galaxies == 3 and ds.stamp_size == 16 and ds.psf_size == 9


def test_storage_is_chunked_per_blend_compressed_and_checksummed(tmp_path):
    path = tmp_path / "a.h5"
    arrays, _ = write_fake_file(path)
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == set(DATASETS)
        for name in PER_BLEND_DATASETS:
            ds = f[name]
            assert ds.chunks == (1,) + ds.shape[1:], name
            assert ds.compression == "gzip" and ds.compression_opts == 1, name
            assert ds.shuffle and ds.fletcher32, name
        assert f["truth"].fletcher32
        # JSON containers are stored as fixed-length UTF-8 strings readable by any HDF5 tool
        # (fixed length: no unchecksummed global heap in the file).
        config = f.attrs["config"]
        config = config.decode() if isinstance(config, bytes) else config
        assert config.startswith("{")
    # gzip pays off on smooth images: the file is smaller than the raw isolated array.
    assert path.stat().st_size < sum(a.nbytes for a in arrays.values())


def test_attrs_reserved_and_required(tmp_path):
    arrays, _ = fake_arrays()
    with pytest.raises(ConfigError, match="'kit' is set by the writer"):
        writer_for(tmp_path / "a.h5", arrays, attrs=dict(ATTRS, kit="x"))
    with pytest.raises(ConfigError, match=r"pixel_scale'\] must be a positive number"):
        writer_for(tmp_path / "a.h5", arrays, attrs={"seed": 1})
    with pytest.raises(ConfigError, match="differs from bands"):
        writer_for(tmp_path / "a.h5", arrays, attrs=dict(ATTRS, bands=["r", "g"]))
    with pytest.raises(ConfigError, match="attribute 'when' has type object"):
        writer_for(tmp_path / "a.h5", arrays, attrs=dict(ATTRS, when=object()))
    with pytest.raises(ConfigError, match="psf_size must be odd"):
        DatasetWriter(tmp_path / "a.h5", n_blends=2, bands=BANDS, max_galaxies=2,
                      stamp_size=16, psf_size=8, attrs=ATTRS)
    assert list(tmp_path.iterdir()) == []
def _write_expect(tmp_path, mutate, match):
    arrays, truth = fake_arrays(n=4)
    kw = rows(arrays, truth, 0, 4)
    mutate(kw)
    with pytest.raises(ConfigError, match=match):
        with writer_for(tmp_path / "a.h5", arrays) as w:
            w.write(0, **kw)
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_wrong_shape(tmp_path):
    def mutate(kw):
        kw["psf"] = kw["psf"][:, :, :8, :8]
    _write_expect(tmp_path, mutate, r"psf must have shape \(4, 2, 9, 9\), got \(4, 2, 8, 8\)")


def test_write_rejects_centers_nan_pattern(tmp_path):
    def mutate(kw):
        kw["centers"] = kw["centers"].copy()
        kw["centers"][0, 0] = np.nan  # blend 0 is full: slot 0 must be finite
    _write_expect(tmp_path, mutate, "centers of blend 0 slot 0")


def test_write_rejects_nonzero_empty_slot(tmp_path):
    def mutate(kw):
        kw["isolated"] = kw["isolated"].copy()
        kw["n_galaxies"] = kw["n_galaxies"].copy()
        kw["n_galaxies"][0] = 2
        kw["centers"] = kw["centers"].copy()
        kw["centers"][0, 2] = np.nan
    _write_expect(tmp_path, mutate, "isolated image of blend 0 slot 2 is not zero")


def test_write_rejects_truth_slot_mismatch(tmp_path):
    def dup(kw):
        t = kw["truth_rows"].copy()
        first = np.flatnonzero(t["blend_index"] == 0)
        t["slot"][first] = 0  # blend 0 has 3 galaxies, all claiming slot 0
        kw["truth_rows"] = t
    _write_expect(tmp_path, dup, "blend 0 has two labelled truth rows for slot 0")

    def missing(kw):
        kw["truth_rows"] = kw["truth_rows"][kw["truth_rows"]["blend_index"] != 0]
    _write_expect(tmp_path, missing, "blend 0 has 0 labelled truth rows for n_galaxies = 3")

    def wrong_columns(kw):
        kw["truth_rows"] = pd.DataFrame(kw["truth_rows"]).drop(columns=["snr"])
    _write_expect(tmp_path, wrong_columns, r"missing \['snr'\]")


def test_write_rejects_rows_out_of_range_and_twice(tmp_path):
    arrays, truth = fake_arrays(n=4)
    with pytest.raises(ConfigError, match="was already written"):
        with writer_for(tmp_path / "a.h5", arrays) as w:
            w.write(0, **rows(arrays, truth, 0, 3))
            w.write(2, **rows(arrays, truth, 2, 4))
    with pytest.raises(ConfigError, match=r"rows \[3, 3\+2\) are outside the file's 4 blends"):
        with writer_for(tmp_path / "a.h5", arrays) as w:
            w.write(3, **rows(arrays, truth, 0, 2))
    assert list(tmp_path.iterdir()) == []


def test_write_outside_context_manager(tmp_path):
    arrays, truth = fake_arrays(n=4)
    w = writer_for(tmp_path / "a.h5", arrays)
    with pytest.raises(ConfigError, match="use it as a context manager"):
        w.write(0, **rows(arrays, truth, 0, 4))


def test_exception_inside_with_leaves_nothing(tmp_path):
    arrays, truth = fake_arrays(n=4)
    path = tmp_path / "train.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with writer_for(path, arrays) as w:
            w.write(0, **rows(arrays, truth, 0, 2))
            assert w.tmp_path.exists() and w.tmp_path.parent == tmp_path
            assert w.tmp_path.name == f".train.h5.{os.getpid()}.tmp"
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_rows_leave_nothing(tmp_path):
    arrays, truth = fake_arrays(n=8)
    path = tmp_path / "train.h5"
    with pytest.raises(DataFileError, match=r"only 4 of 8 blend rows were written \(first missing row 4\)"):
        with writer_for(path, arrays) as w:
            w.write(0, **rows(arrays, truth, 0, 4))
    assert list(tmp_path.iterdir()) == []


def test_existing_file_needs_overwrite(tmp_path):
    path = tmp_path / "train.h5"
    write_fake_file(path, seed=1)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match=r"train\.h5 exists; pass overwrite=True \(--overwrite"):
        write_fake_file(path, seed=2)
    assert path.read_bytes() == before
    arrays, _ = write_fake_file(path, seed=2, overwrite=True)
    np.testing.assert_array_equal(read_dataset(path).blend, arrays["blend"])
    assert sorted(os.listdir(tmp_path)) == ["train.h5"]


def test_missing_directory(tmp_path):
    with pytest.raises(DataFileError, match="directory .*nowhere does not exist"):
        write_fake_file(tmp_path / "nowhere" / "a.h5")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_unwritable_directory_by_mode(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(DataFileError, match="is not writable"):
            write_fake_file(ro / "a.h5")
    finally:
        ro.chmod(0o700)


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs sysfs (no regular files)")
def test_unwritable_directory_file_creation_fails():
    # sysfs refuses new files, even to root: the failure to create the temp file
    # must come out as a DataFileError naming the target.
    with pytest.raises(DataFileError, match=r"/sys/kernel/a\.h5"):
        write_fake_file(Path("/sys/kernel/a.h5"))
