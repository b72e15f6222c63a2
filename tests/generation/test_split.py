"""Tests of deblendkit.generation.split (and chunks): chunked, parallel, deterministic, atomic data files."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from deblendkit import storage as io
from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError, OutputExistsError
from deblendkit.generation import SplitResult, chunk_bounds, chunk_store, generate_split, simulate_chunk
from deblendkit.sim.modes import simulate_scene
from deblendkit.storage import PER_BLEND_DATASETS, read_dataset

ROOT = Path(__file__).resolve().parents[2]
CONFIG = SimConfig(stamp_size=32, psf_size=15, edge_margin=6, max_galaxies=4)
N = 10


def make(path, **kwargs):
    opts = dict(split="train", n_blends=N, seed=7, n_jobs=1, chunk_size=16, progress=False)
    opts.update(kwargs)
    return generate_split(CONFIG, path=path, **opts)


def raw_datasets(path):
    """Every dataset of a file as stored (the truth as its raw compound array)."""
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in f}


def assert_same_data(a, b):
    da, db = raw_datasets(a), raw_datasets(b)
    assert set(da) == set(db) == set(PER_BLEND_DATASETS) | {"truth"}
    for name in da:
        assert da[name].dtype == db[name].dtype, name
        assert da[name].tobytes() == db[name].tobytes(), name  # byte for byte, NaNs included


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "ref.h5"
    info = make(path)
    return path, info


@pytest.mark.parametrize("n_jobs, chunk_size", [(1, 1), (1, 5), (2, 1), (2, 5), (2, 16)])
def test_bytes_do_not_depend_on_workers_or_chunking(reference_file, tmp_path, n_jobs, chunk_size):
    ref, _ = reference_file
    path = tmp_path / "other.h5"
    make(path, n_jobs=n_jobs, chunk_size=chunk_size)
    assert_same_data(ref, path)


def test_another_seed_gives_other_data(reference_file, tmp_path):
    ref, _ = reference_file
    path = tmp_path / "seed8.h5"
    make(path, seed=8)
    a, b = raw_datasets(ref), raw_datasets(path)
    assert not np.array_equal(a["blend"], b["blend"])
    assert not np.array_equal(a["truth"]["x"][:4], b["truth"]["x"][:4])


def test_splits_are_different_streams(reference_file, tmp_path):
    ref, _ = reference_file
    path = tmp_path / "test.h5"
    make(path, split="test")
    assert not np.array_equal(raw_datasets(ref)["blend"], raw_datasets(path)["blend"])


def test_a_blend_simulated_alone_equals_its_row(reference_file):
    ref, _ = reference_file
    ds = read_dataset(ref)
    for i in (0, 3, N - 1):
        s = simulate_scene(CONFIG, seed=7, split="train", index=i)
        for name in ("blend", "isolated", "psf", "noise_sigma", "centers"):
            assert getattr(s, name).tobytes() == np.asarray(getattr(ds, name)[i]).tobytes(), (i, name)
        assert s.n_galaxies == ds.n_galaxies[i]
        rows = ds.truth[ds.truth.blend_index == i].sort_values("slot")
        for col, values in s.truth.items():
            np.testing.assert_array_equal(rows[col].to_numpy(), values, err_msg=f"{i} {col}")


def test_summary_and_attributes(reference_file):
    path, info = reference_file
    ds = read_dataset(path)
    assert info.n_blends == N == len(ds)
    assert info.n_galaxies == int(ds.n_galaxies.sum()) == len(ds.truth)
    np.testing.assert_array_equal(np.sort(info.blendedness), np.sort(ds.truth["blendedness"]))
    assert info.nbytes == path.stat().st_size and info.seconds > 0
    assert isinstance(info, SplitResult) and info.path == str(path) and info.how == "this process"
    assert info.chunks == 1 and info.chunks_reused == info.chunks_redone == 0
    assert 0 < info.simulate_seconds <= info.seconds
    assert info.assemble_seconds == pytest.approx(info.seconds - info.simulate_seconds)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.n_blends = 3  # frozen: a result, not a mutable record
    attrs = ds.attrs
    assert SimConfig.from_dict(attrs["config"]) == CONFIG
    assert attrs["seed"] == 7 and attrs["split"] == "train"
    assert tuple(attrs["bands"]) == CONFIG.simulated_bands
    assert attrs["pixel_scale"] == CONFIG.pixel_scale
    assert attrs["survey"] == "LSST"
    versions = attrs["versions"] if isinstance(attrs["versions"], dict) else json.loads(attrs["versions"])
    assert {"galsim", "numpy", "h5py", "surveycodex"} <= set(versions)
    # the compressor shapes the bytes too: its version is the one requirements.txt pins
    pins = dict(line.split("#")[0].strip().split("==") for line in
                (ROOT / "requirements.txt").read_text().splitlines() if "==" in line.split("#")[0])
    assert versions["deflate"] == pins["deflate"]


def test_chunked_per_blend_and_compressed(reference_file):
    path, _ = reference_file
    with h5py.File(path, "r") as f:
        for name in PER_BLEND_DATASETS:
            ds = f[name]
            assert ds.chunks == (1,) + ds.shape[1:], name
            assert ds.compression == "gzip", name


def test_chunk_bounds_cover_the_range_once():
    for n, size in ((10, 3), (10, 10), (10, 16), (1, 1)):
        bounds = chunk_bounds(n, size)
        covered = np.concatenate([np.arange(a, b) for a, b in bounds])
        np.testing.assert_array_equal(covered, np.arange(n))
        assert all(0 < b - a <= size for a, b in bounds)


def test_simulate_chunk_stacks_blends_and_truth():
    chunk = simulate_chunk(CONFIG, 7, "train", 2, 5)
    assert chunk.start == 2 and len(chunk) == 3
    assert chunk.arrays["blend"].shape == (3, 6, 32, 32)
    assert len(chunk.truth) == chunk.arrays["n_galaxies"].sum()
    np.testing.assert_array_equal(np.unique(chunk.truth["blend_index"]), [2, 3, 4])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_blends=0), "n_blends must be an integer >= 1, got 0"),
        (dict(n_blends=-3), "n_blends must be an integer >= 1, got -3"),
        (dict(n_jobs=0), "n_jobs must be an integer >= 1, got 0"),
        (dict(chunk_size=0), "chunk_size must be an integer >= 1, got 0"),
        (dict(n_blends=2.5), "n_blends must be an integer >= 1, got 2.5"),
        (dict(seed=-1), "seed must be an integer >= 0, got -1"),
        (dict(seed=True), "seed must be an integer >= 0, got True"),
        (dict(split="validation"), "unknown split 'validation'"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    path = tmp_path / "bad.h5"
    with pytest.raises(ConfigError, match=re.escape(message)):
        make(path, **kwargs)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_existing_file_needs_overwrite(reference_file, tmp_path):
    path = tmp_path / "exists.h5"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match=re.escape(f"{path} exists; pass overwrite=True")):
        make(path, n_blends=1)
    assert path.read_bytes() == b"precious"
    assert list(tmp_path.iterdir()) == [path]  # refused before any work
    make(path, n_blends=1, overwrite=True)
    assert len(read_dataset(path)) == 1


def test_a_failure_while_simulating_leaves_no_file_and_the_rerun_resumes(reference_file, tmp_path, monkeypatch):
    ref, _ = reference_file
    real = chunk_store.simulate_chunk

    def failing(config, seed, split, start, stop):
        if start >= 4:
            raise RuntimeError("worker died")
        return real(config, seed, split, start, stop)

    monkeypatch.setattr(chunk_store, "simulate_chunk", failing)
    path = tmp_path / "partial.h5"
    with pytest.raises(RuntimeError, match="worker died"):
        make(path, chunk_size=2)
    assert not path.exists()
    assert not list(tmp_path.glob(".partial.h5.*"))  # no temporary file either
    monkeypatch.setattr(chunk_store, "simulate_chunk", real)
    info = make(path, chunk_size=2)
    assert info.chunks_reused == 2  # blends [0, 4) were kept and reused
    assert_same_data(ref, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partial.h5"]  # work files cleaned up


def test_a_failure_while_writing_leaves_no_file(tmp_path, monkeypatch):
    real = io.DatasetWriter.copy_rows
    calls = []

    def failing(self, rows_path):
        calls.append(rows_path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, rows_path)

    monkeypatch.setattr(io.DatasetWriter, "copy_rows", failing)
    path = tmp_path / "partial.h5"
    with pytest.raises(OSError, match="disk full"):
        make(path, chunk_size=2)
    assert not path.exists()
    assert not list(tmp_path.glob(".partial.h5.*"))
