"""Tests of deblendkit.storage.files: the HDF5 contract of data/README.md."""
from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from deblendkit.errors import ConfigError, DataFileError, OutputExistsError
from deblendkit.storage.files import (
    DATASETS,
    KIT_NAME,
    PER_BLEND_DATASETS,
    SCHEMA_VERSION,
    DatasetWriter,
    H5Array,
    read_batches,
    read_dataset,
    truth_dtype,
    validate_file,
)

BANDS = ("g", "r")


# --------------------------------------------------------------------------
# Helpers: random data of the right shapes, honouring the contract
# --------------------------------------------------------------------------
def fake_arrays(n=8, k=3, bands=BANDS, stamp=16, psf=9, seed=0):
    """Random per-blend arrays and truth rows (one row per filled slot, shuffled)."""
    rng = np.random.default_rng(seed)
    c = len(bands)
    n_gal = rng.integers(0, k + 1, size=n).astype(np.int32)
    n_gal[0] = k  # at least one full blend
    filled = np.arange(k)[None, :] < n_gal[:, None]
    isolated = rng.gamma(2.0, 50.0, size=(n, k, c, stamp, stamp)).astype(np.float32)
    isolated[~filled] = 0.0
    noise_sigma = rng.uniform(200, 600, size=(n, c)).astype(np.float32)
    blend = (isolated.sum(axis=1) + rng.normal(size=(n, c, stamp, stamp)) * noise_sigma[..., None, None]).astype(np.float32)
    p = rng.random((n, c, psf, psf)).astype(np.float32)
    p /= p.sum(axis=(2, 3), keepdims=True)
    centers = rng.uniform(0, stamp - 1, size=(n, k, 2)).astype(np.float32)
    centers[~filled] = np.nan
    b_idx, slot = np.nonzero(filled)
    dt = truth_dtype(bands)
    truth = np.zeros(b_idx.size, dtype=dt)
    for name in dt.names:
        if dt[name].kind == "f":
            truth[name] = rng.normal(size=b_idx.size)
        else:
            truth[name] = rng.integers(0, 5, size=b_idx.size)
    truth["blend_index"] = b_idx
    truth["slot"] = slot
    truth["labelled"] = 1
    truth["x"] = centers[b_idx, slot, 0]
    truth["y"] = centers[b_idx, slot, 1]
    truth = truth[rng.permutation(truth.size)]
    return {
        "blend": blend,
        "isolated": isolated,
        "psf": p,
        "noise_sigma": noise_sigma,
        "centers": centers,
        "n_galaxies": n_gal,
    }, truth


ATTRS = {
    "pixel_scale": 0.2,
    "gain": [1.5, 1.7],
    "zeropoint": np.array([28.1, 28.3]),
    "config": {"stamp_size": 16, "seeds": [1, 2], "name": "tiny"},
    "seed": 1234,
    "split": "train",
    "first_index": np.int64(0),
    "sed_names": ["E", "Sbc"],
}


def writer_for(path, arrays, *, overwrite=False, attrs=ATTRS):
    n, k, _, s = arrays["isolated"].shape[:4]
    return DatasetWriter(
        path,
        n_blends=n,
        bands=BANDS,
        max_galaxies=k,
        stamp_size=s,
        psf_size=arrays["psf"].shape[-1],
        attrs=attrs,
        overwrite=overwrite,
    )


def rows(arrays, truth, lo, hi):
    """The write() keyword arguments of rows [lo, hi)."""
    part = {name: arr[lo:hi] for name, arr in arrays.items()}
    sel = (truth["blend_index"] >= lo) & (truth["blend_index"] < hi)
    return dict(part, truth_rows=truth[sel])


def write_fake_file(path, *, overwrite=False, **kw):
    arrays, truth = fake_arrays(**kw)
    with writer_for(path, arrays, overwrite=overwrite) as w:
        w.write(0, **rows(arrays, truth, 0, arrays["blend"].shape[0]))
    return arrays, truth


def sorted_truth(truth):
    return truth[np.lexsort((truth["slot"], truth["blend_index"]))]


def chunk_offset(path, name, row):
    """Byte offset and size of the chunk holding ``row`` of dataset ``name``."""
    with h5py.File(path, "r") as f:
        ds = f[name]
        info = ds.id.get_chunk_info_by_coord((row,) + (0,) * (ds.ndim - 1))
        return info.byte_offset, info.size


# --------------------------------------------------------------------------
# truth_dtype
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# Writer: contract checks on the rows
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# Writer: atomicity and target checks
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# Reader: every broken file is one DataFileError
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------
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
