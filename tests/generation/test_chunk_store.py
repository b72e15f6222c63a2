"""Chunk files, resume after a crash, and generation on a Dask cluster (chunk_store, executors, dask_executor)."""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from deblendkit.cli.prepare_data import main
from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError, OutputExistsError
from deblendkit.generation import (
    ChunkStore,
    chunk_bounds,
    chunk_store,
    dask_client,
    generate_split,
    local_pool,
    simulate_to_store,
)
from deblendkit.generation.chunks import simulate_chunk
from deblendkit.storage import DATASETS, DatasetWriter, write_rows_file

SMALL = dict(stamp_size=20, psf_size=9, bands=("g", "r", "i"), max_galaxies=3, edge_margin=3)
EPOCH = "1700000000"  # SOURCE_DATE_EPOCH: a fixed 'created' attribute, so whole files compare


@pytest.fixture(scope="module")
def config() -> SimConfig:
    return SimConfig(**SMALL)


@pytest.fixture(autouse=True)
def fixed_created(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_same_data(a, b) -> None:
    """Every dataset of the two files equal, byte for byte (dtype, shape, values), attrs too."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert set(fa.keys()) == set(fb.keys()) == set(DATASETS)
        for name in DATASETS:
            x, y = fa[name][...], fb[name][...]
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert x.tobytes() == y.tobytes(), name
        assert dict(fa.attrs) == dict(fb.attrs)


def make(config, path, n=10, **kw):
    kw.setdefault("chunk_size", 3)
    return generate_split(config, path=path, split="train", n_blends=n, seed=7, progress=False, **kw)


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory) -> Path:
    """10 blends made in this process, chunks of 3: the bytes every other way must give."""
    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    try:
        path = tmp_path_factory.mktemp("ref") / "train.h5"
        make(config, path)
    finally:
        del os.environ["SOURCE_DATE_EPOCH"]
    return path


# ---------------------------------------------------------------------------
# Chunk files
# ---------------------------------------------------------------------------
def test_chunks_removed_after_assembly_and_counts(config, tmp_path, reference):
    out = make(config, tmp_path / "train.h5")
    assert out.chunks == 4 and out.chunks_reused == 0 and out.chunks_redone == 0
    assert out.chunk_bytes > 0
    assert not (tmp_path / "_chunks").exists()
    assert sha256(tmp_path / "train.h5") == sha256(reference)


def test_workers_and_chunk_size_do_not_change_the_bytes(config, tmp_path, reference):
    # Different chunking changes the HDF5 write order, so compare datasets; the pool
    # with the same chunking gives the very same file.
    make(config, tmp_path / "pool.h5", n_jobs=2)
    assert sha256(tmp_path / "pool.h5") == sha256(reference)
    make(config, tmp_path / "chunk4.h5", chunk_size=4)
    assert_same_data(tmp_path / "chunk4.h5", reference)


def test_chunk_files_layout_and_checksums(config, tmp_path):
    make(config, tmp_path / "train.h5", keep_chunks=True)
    root = tmp_path / "_chunks" / "train"
    names = sorted(p.name for p in root.iterdir())
    for a, b in chunk_bounds(10, 3):
        chunk = root / f"{a:09d}-{b:09d}.h5"
        line = (root / (chunk.name + ".sha256")).read_text()
        assert line == f"{sha256(chunk)}  {chunk.name}\n"  # `sha256sum -c` format
        with h5py.File(chunk, "r") as f:
            assert f.attrs["start"] == a
            assert f["blend"].shape == (b - a, 3, 20, 20)
            # already compressed as in the final file: the assembly copies the chunks as they are
            assert f["isolated"].chunks == (1, 3, 3, 20, 20) and f["isolated"].compression == "gzip"
            assert f["isolated"].fletcher32 and f["isolated"].shuffle
            assert set(np.unique(f["truth"]["blend_index"])) <= set(range(a, b))
    assert names.count("manifest.json") == 1 and len(names) == 9


def test_rerun_resumes_from_complete_chunks(config, tmp_path, reference, monkeypatch):
    make(config, tmp_path / "train.h5", keep_chunks=True)
    (tmp_path / "train.h5").unlink()
    calls = []
    real = chunk_store.simulate_chunk
    monkeypatch.setattr(chunk_store, "simulate_chunk", lambda *a: calls.append(a[3:]) or real(*a))
    out = make(config, tmp_path / "train.h5")
    assert calls == [] and out.chunks_reused == 4
    assert sha256(tmp_path / "train.h5") == sha256(reference)


@pytest.mark.parametrize("damage", ["bit_flip", "truncate", "no_checksum", "empty_checksum"])
def test_damaged_chunk_is_redone(config, tmp_path, reference, monkeypatch, caplog, damage):
    make(config, tmp_path / "train.h5", keep_chunks=True)
    (tmp_path / "train.h5").unlink()
    root = tmp_path / "_chunks" / "train"
    chunk = root / "000000003-000000006.h5"
    sums = root / (chunk.name + ".sha256")
    data = bytearray(chunk.read_bytes())
    if damage == "bit_flip":
        data[len(data) // 2] ^= 0x04
        chunk.write_bytes(bytes(data))
    elif damage == "truncate":
        chunk.write_bytes(bytes(data[: len(data) // 3]))
    elif damage == "no_checksum":
        sums.unlink()  # killed between the chunk and its checksum
    else:
        sums.write_text("")
    calls = []
    real = chunk_store.simulate_chunk
    monkeypatch.setattr(chunk_store, "simulate_chunk", lambda *a: calls.append(a[3:]) or real(*a))
    with caplog.at_level(logging.WARNING, logger="deblendkit.generation.chunk_store"):
        out = make(config, tmp_path / "train.h5")
    assert calls == [(3, 6)]
    assert out.chunks_reused == 3
    if damage in ("bit_flip", "truncate"):
        assert "000000003-000000006.h5 is corrupt" in caplog.text
    assert sha256(tmp_path / "train.h5") == sha256(reference)


def test_chunk_damaged_after_simulation_is_redone_at_assembly(config, tmp_path, reference, monkeypatch):
    real_verify = ChunkStore.verify
    damaged = []

    def verify(self, a, b):
        p = self.chunk_path(a, b)
        if (a, b) == (6, 9) and p.exists() and not damaged:  # corrupt it between simulation and assembly
            damaged.append(True)
            p.write_bytes(p.read_bytes()[:-10])
        return real_verify(self, a, b)

    monkeypatch.setattr(ChunkStore, "verify", verify)
    out = make(config, tmp_path / "train.h5")
    assert out.chunks_redone == 1
    assert sha256(tmp_path / "train.h5") == sha256(reference)


def test_chunks_of_another_config_or_seed_are_not_reused(config, tmp_path, caplog):
    make(config, tmp_path / "train.h5", keep_chunks=True)
    (tmp_path / "train.h5").unlink()
    with caplog.at_level(logging.WARNING, logger="deblendkit.generation.chunk_store"):
        out = generate_split(config, path=tmp_path / "train.h5", split="train", n_blends=10, seed=8,
                             chunk_size=3, progress=False)
    assert out.chunks_reused == 0
    assert "holds chunks of another seed" in caplog.text
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    generate_split(config, path=fresh / "train.h5", split="train", n_blends=10, seed=8, chunk_size=3,
                   progress=False)
    assert_same_data(tmp_path / "train.h5", fresh / "train.h5")


def test_no_resume_starts_afresh(config, tmp_path, monkeypatch):
    make(config, tmp_path / "train.h5", keep_chunks=True)
    (tmp_path / "train.h5").unlink()
    calls = []
    real = chunk_store.simulate_chunk
    monkeypatch.setattr(chunk_store, "simulate_chunk", lambda *a: calls.append(a[3:]) or real(*a))
    out = make(config, tmp_path / "train.h5", resume=False)
    assert out.chunks_reused == 0 and len(calls) == 4


def test_failed_assembly_leaves_no_file_and_keeps_chunks(config, tmp_path, reference, monkeypatch):
    real_copy = DatasetWriter.copy_rows
    n = []

    def failing_copy(self, *a, **kw):
        n.append(1)
        if len(n) == 3:
            raise OSError("disk full (simulated)")
        return real_copy(self, *a, **kw)

    monkeypatch.setattr(DatasetWriter, "copy_rows", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        make(config, tmp_path / "train.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_chunks"]  # no final, no temporary file
    # The assembly streams: it failed on the third chunk, after three chunks were simulated.
    kept = list((tmp_path / "_chunks").rglob("*.h5.sha256"))
    assert len(kept) == 3
    monkeypatch.setattr(DatasetWriter, "copy_rows", real_copy)
    out = make(config, tmp_path / "train.h5")
    assert out.chunks_reused == 3
    assert sha256(tmp_path / "train.h5") == sha256(reference)


def test_existing_output_refused_before_any_work(config, tmp_path, monkeypatch):
    (tmp_path / "train.h5").write_bytes(b"x")
    monkeypatch.setattr(chunk_store, "simulate_chunk", lambda *a: pytest.fail("simulated"))
    with pytest.raises(OutputExistsError, match="train.h5 exists"):
        make(config, tmp_path / "train.h5")
    assert not (tmp_path / "_chunks").exists()


def test_overflowing_simulation_is_refused_in_the_worker(config, tmp_path, monkeypatch):
    # A simulation that overflowed (inf flux -> NaN pixels) is refused where it happened,
    # before its chunk is written, not hours later at assembly.
    real = chunk_store.simulate_chunk

    def overflowing(*args):
        chunk = real(*args)
        chunk.arrays["isolated"][1, 0, 0, 5, 5] = np.inf
        return chunk

    monkeypatch.setattr(chunk_store, "simulate_chunk", overflowing)
    store = ChunkStore.for_output(tmp_path / "train.h5", config=config, seed=0, split="train")
    store.prepare()
    with pytest.raises(ConfigError, match=r"blend 4 of train has NaN or inf values in 'isolated'"):
        simulate_to_store(store, config, 0, "train", 3, 6)
    assert not store.chunk_path(3, 6).exists()


def test_stale_writer_temp_file_is_removed(config, tmp_path):
    dead = tmp_path / ".train.h5.999999999.tmp"  # no such pid
    alive = tmp_path / f".train.h5.{os.getppid()}.tmp"  # a live process: left alone
    dead.write_bytes(b"partial")
    alive.write_bytes(b"in progress")
    make(config, tmp_path / "train.h5", n=3)
    assert not dead.exists() and alive.exists()


# ---------------------------------------------------------------------------
# Dask
# ---------------------------------------------------------------------------
def test_scheduler_argument_is_checked():
    with pytest.raises(ConfigError, match="scheduler must be 'local', 'local:N' or a Dask scheduler address"):
        with dask_client(123):
            pass
    with pytest.raises(ConfigError, match="needs an integer N >= 1, got 'local:x'"):
        with dask_client("local:x"):
            pass


@pytest.mark.slow
def test_unreachable_scheduler_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"cannot connect to the Dask scheduler at 'tcp://127.0.0.1:9'"):
        with dask_client("tcp://127.0.0.1:9", timeout_s=1.0):
            pass


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes, one thread each (closed after the module)."""
    with dask_client("local:2") as c:
        yield c


@pytest.mark.slow
def test_dask_gives_the_same_bytes_as_the_local_pool(config, tmp_path, reference, client):
    out = make(config, tmp_path / "train.h5", scheduler=client)
    assert out.chunks_reused == 0 and out.chunks == 4
    assert sha256(tmp_path / "train.h5") == sha256(reference)  # the whole file, not only the arrays
    assert not (tmp_path / "_chunks").exists()
    info = client.scheduler_info()
    assert len(info["workers"]) == 2


@pytest.mark.slow
def test_dask_resumes_from_the_chunks_of_a_crashed_run(config, tmp_path, reference, client):
    # A crashed run left chunks 0 and 2 complete (and one without its checksum).
    store = ChunkStore.for_output(tmp_path / "train.h5", config=config, seed=7, split="train")
    store.prepare()
    for a, b in [(0, 3), (6, 9), (3, 6)]:
        simulate_to_store(store, config, 7, "train", a, b)
    store.checksum_path(3, 6).unlink()
    out = make(config, tmp_path / "train.h5", scheduler=client)
    assert out.chunks_reused == 2
    assert sha256(tmp_path / "train.h5") == sha256(reference)


@pytest.mark.slow
def test_prepare_data_cli_with_a_local_dask_cluster(config, tmp_path):

    cfg = tmp_path / "small.json"
    cfg.write_text(config.to_json())
    common = ["--config", str(cfg), "--n-train", "6", "--splits", "train", "--seed", "3",
              "--chunk-size", "2", "--quiet"]
    assert main(common + ["--output-dir", str(tmp_path / "dask"), "--scheduler", "local", "--n-jobs", "2"]) == 0
    assert main(common + ["--output-dir", str(tmp_path / "pool"), "--n-jobs", "1"]) == 0
    assert sha256(tmp_path / "dask" / "train.h5") == sha256(tmp_path / "pool" / "train.h5")


def test_copy_rows_refuses_rows_that_do_not_fit(config, tmp_path):

    chunk = simulate_chunk(config, 7, "train", 0, 4)
    rows = tmp_path / "rows.h5"
    write_rows_file(rows, 0, bands=config.simulated_bands, max_galaxies=3, arrays=chunk.arrays, truth_rows=chunk.truth)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.attrs["kit"] = "something else"
    bigger = DatasetWriter(tmp_path / "other.h5", n_blends=4, bands=config.simulated_bands, max_galaxies=3,
                           stamp_size=24, psf_size=9, attrs={"pixel_scale": 0.2})
    with pytest.raises(ConfigError, match=r"rows\.h5: dataset 'blend' has shape \(4, 3, 20, 20\).*expected "
                                          r"\(4, 3, 24, 24\)"):
        with bigger:
            bigger.copy_rows(rows)
    same = DatasetWriter(tmp_path / "same.h5", n_blends=4, bands=config.simulated_bands, max_galaxies=3,
                         stamp_size=20, psf_size=9, attrs={"pixel_scale": 0.2})
    with pytest.raises(ConfigError, match="is not a rows file"):
        with same:
            same.copy_rows(plain)
    with pytest.raises(ConfigError, match=r"blend row 0 of .*same\.h5 was already written"):
        with same:
            same.copy_rows(rows)
            same.copy_rows(rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.h5", "rows.h5"]  # nothing half-written
    # The pixels are checked when the rows file is written (copy_rows does not decode them).
    i = int(np.flatnonzero(chunk.arrays["n_galaxies"] < 3)[0])
    bad = dict(chunk.arrays, isolated=chunk.arrays["isolated"].copy())
    bad["isolated"][i, 2] = 1.0
    with pytest.raises(ConfigError, match=f"isolated image of blend {i} slot 2 is not zero"):
        write_rows_file(tmp_path / "bad.h5", 0, bands=config.simulated_bands, max_galaxies=3, arrays=bad,
                        truth_rows=chunk.truth)


def test_the_pool_is_renewed_every_window_and_the_bytes_stay_the_same(config, tmp_path, reference, monkeypatch):
    """Fresh workers every ``CHUNKS_PER_WORKER`` chunks per worker (their memory stays flat in a
    long run): 4 chunks in windows of 2 take two pools, and give the reference's bytes."""
    pools = []

    class Counting(local_pool.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(kwargs["max_workers"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(local_pool, "CHUNKS_PER_WORKER", 1)
    monkeypatch.setattr(local_pool, "ProcessPoolExecutor", Counting)
    out = make(config, tmp_path / "windows.h5", n_jobs=2)
    assert out.chunks == 4 and pools == [2, 2]
    assert sha256(tmp_path / "windows.h5") == sha256(reference)
