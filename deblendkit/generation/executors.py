"""Simulate chunks anywhere, keep them as checksummed files, resume after a crash.

Generation is split into chunks of blends (``[start, stop)`` of a split), each a
pure function of ``(config, seed, split, start, stop)``
(:func:`deblendkit.generation.split.simulate_chunk`). This module runs the chunks that
are not done yet -- in this process, in a local process pool, or on a Dask
cluster (:mod:`dask.distributed`) -- and has every worker write its chunk to a
*chunk file* in a work directory beside the output::

    data/_chunks/train/manifest.json           what the chunks are of (config, seed, split, versions)
    data/_chunks/train/000000000-000000016.h5  blends [0, 16): arrays and truth rows (a rows file)
    data/_chunks/train/000000000-000000016.h5.sha256   its SHA-256, ``sha256sum -c`` format

A chunk file is a small HDF5 *rows file* (:func:`deblendkit.storage.files.write_rows_file`)
whose datasets have the final file's chunking and filters: the worker that
simulates a chunk also checks and compresses it, and the assembly copies the
compressed chunks byte for byte (:meth:`deblendkit.storage.files.DatasetWriter.copy_rows`),
so the serial part of a run is little more than file I/O.

A chunk file and then its checksum file are written atomically (temporary file,
fsync, rename), so a chunk is *complete* exactly when its checksum file exists
and matches its bytes. A rerun after a crash (a killed process, a lost worker,
a full disk) keeps the complete chunks and redoes the rest, including any chunk
whose bytes no longer match (it is logged and deleted). The manifest guards
against mixing chunks of another configuration, seed, split or package version:
when it differs the directory is emptied first. The assembly
(:func:`deblendkit.generation.split.generate_split`) copies the chunks in order, as
they complete, into the final file with :class:`~deblendkit.storage.files.DatasetWriter`; the chunk
directory is removed once the final file is in place.

On a Dask cluster the work directory must be on a filesystem that the workers
and this process share (NFS, Lustre, a local disk for a
:class:`~distributed.LocalCluster`): workers write the chunk files and only a
small :class:`ChunkInfo` travels back; a chunk a worker wrote that is not
visible here is an error that says so.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError, DataFileError, DeblendKitError
from deblendkit.generation.split import PER_BLEND, Chunk, package_versions, simulate_chunk
from deblendkit.storage.files import _fsync_directory, truth_dtype, write_rows_file

__all__ = [
    "CHUNK_FORMAT",
    "ChunkInfo",
    "ChunkStore",
    "simulate_to_store",
    "run_chunks",
    "dask_client",
    "is_dask_client",
]

log = logging.getLogger(__name__)

CHUNK_FORMAT = 1
"""Version of the chunk-file layout (part of the manifest)."""

MANIFEST = "manifest.json"
_NAME_DIGITS = 9  # 000000000-000000016.h5: sorts by start up to 10^9 blends
_DTYPES = {
    "blend": np.dtype(np.float32),
    "isolated": np.dtype(np.float32),
    "psf": np.dtype(np.float32),
    "noise_sigma": np.dtype(np.float32),
    "centers": np.dtype(np.float32),
    "n_galaxies": np.dtype(np.int32),
}


@dataclass(frozen=True)
class ChunkInfo:
    """What a worker reports after writing a chunk file.

    Attributes
    ----------
    start, stop : int
        Blend rows ``[start, stop)`` of the split.
    sha256 : str
        Hex digest of the chunk file.
    nbytes : int
        Size of the chunk file, bytes.
    seconds : float
        Wall time of simulating and writing the chunk.
    host : str
        Host name and process id of the worker.
    """

    start: int
    stop: int
    sha256: str
    nbytes: int
    seconds: float
    host: str


def _host() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename."""
    tmp = path.parent / f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DataFileError(f"cannot write {path}: {exc}") from exc
    _fsync_directory(path.parent)


class ChunkStore:
    """The chunk files of one output file (see the module docstring).

    Picklable (the state is the directory and the fingerprint), so a Dask or
    pool worker can write into it.

    Parameters
    ----------
    directory : str or path-like
        Work directory of this output, e.g. ``data/_chunks/train``.
    fingerprint : dict
        JSON-able description of what the chunks are (config, seed, split,
        package versions); see :meth:`for_output`.
    shapes : dict
        Expected per-blend row shape of every array, e.g. ``{"blend": (C, H, W)}``.
    bands : sequence of str
        Band names (for the truth dtype).
    """

    def __init__(self, directory: str | os.PathLike, *, fingerprint: dict, shapes: dict,
                 bands: Sequence[str]) -> None:
        self.directory = Path(directory)
        self.fingerprint = dict(fingerprint)
        self.shapes = {name: tuple(int(v) for v in shape) for name, shape in shapes.items()}
        self.bands = tuple(bands)

    @classmethod
    def for_output(
        cls,
        path: str | os.PathLike,
        *,
        config: SimConfig,
        seed: int,
        split: str,
        work_dir: str | os.PathLike | None = None,
    ) -> "ChunkStore":
        """The store of the output file ``path`` (``<dir>/_chunks/<stem>`` by default).

        Parameters
        ----------
        path : the final HDF5 file, e.g. ``data/train.h5``.
        config, seed, split : what is simulated (they make the fingerprint).
        work_dir : directory holding the per-output chunk directories
            (default ``_chunks`` beside ``path``).
        """
        path = Path(path)
        root = Path(work_dir) if work_dir is not None else path.parent / "_chunks"
        fingerprint = {
            "format": CHUNK_FORMAT,
            "config": json.loads(config.to_json()),
            "seed": int(seed),
            "split": split,
            "versions": package_versions(),
        }
        c, s, k, p = len(config.band_names), config.stamp_size, config.max_galaxies, config.psf_size
        shapes = {
            "blend": (c, s, s),
            "isolated": (k, c, s, s),
            "psf": (c, p, p),
            "noise_sigma": (c,),
            "centers": (k, 2),
            "n_galaxies": (),
        }
        return cls(root / path.stem, fingerprint=fingerprint, shapes=shapes, bands=config.band_names)

    # -- paths ---------------------------------------------------------------
    def chunk_path(self, start: int, stop: int) -> Path:
        """Path of the chunk file of blends ``[start, stop)``."""
        return self.directory / f"{start:0{_NAME_DIGITS}d}-{stop:0{_NAME_DIGITS}d}.h5"

    def checksum_path(self, start: int, stop: int) -> Path:
        """Path of the checksum file of that chunk."""
        p = self.chunk_path(start, stop)
        return p.with_name(p.name + ".sha256")

    # -- lifecycle -------------------------------------------------------------
    def prepare(self, *, resume: bool = True) -> None:
        """Create the directory; empty it if ``resume`` is false or the manifest differs.

        Also removes the temporary files of writers that were interrupted (no
        other process may be writing this output at the same time).

        Raises
        ------
        DataFileError
            The directory cannot be created or written.
        """
        manifest = self.directory / MANIFEST
        if self.directory.exists():
            if not resume:
                log.info("%s: --no-resume, removing the chunks of an earlier run", self.directory)
                self.remove()
            else:
                found = None
                with contextlib.suppress(OSError, ValueError):
                    found = json.loads(manifest.read_text())
                if found != self.fingerprint:
                    reason = "has no readable manifest" if found is None else (
                        "holds chunks of another " + ", ".join(
                            k for k in self.fingerprint if found.get(k) != self.fingerprint[k]
                        ) if isinstance(found, dict) else "has a malformed manifest"
                    )
                    log.warning("%s %s; starting this output afresh", self.directory, reason)
                    self.remove()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataFileError(f"cannot create the chunk directory {self.directory}: {exc}") from exc
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise DataFileError(f"the chunk directory {self.directory} is not writable")
        for tmp in self.directory.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                log.info("removed %s, left by an interrupted writer", tmp)
        if not manifest.exists():
            _atomic_write(manifest, (json.dumps(self.fingerprint, sort_keys=True, indent=1) + "\n").encode())

    def remove(self) -> None:
        """Delete the chunk directory (and ``_chunks`` above it when left empty)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        parent = self.directory.parent
        if parent.name == "_chunks":
            with contextlib.suppress(OSError):
                parent.rmdir()  # only succeeds when empty

    # -- writing ---------------------------------------------------------------
    def write(self, chunk: Chunk, stop: int) -> ChunkInfo:
        """Write ``chunk`` (blends ``[chunk.start, stop)``) and then its checksum, atomically.

        The rows are checked (:func:`deblendkit.storage.files.write_rows_file`) and compressed here.

        Raises
        ------
        ConfigError
            The rows break the data contract.
        DataFileError
            Writing failed (disk full, permissions).
        """
        t0 = time.perf_counter()
        start = int(chunk.start)
        path = self.chunk_path(start, stop)
        tmp = path.parent / f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp"
        try:
            write_rows_file(tmp, start, bands=self.bands, max_galaxies=self.shapes["isolated"][0],
                            arrays=chunk.arrays, truth_rows=chunk.truth)
            with open(tmp, "rb") as fh:
                data = fh.read()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        digest = hashlib.sha256(data).hexdigest()
        _atomic_write(self.checksum_path(start, stop), f"{digest}  {path.name}\n".encode())
        return ChunkInfo(start, int(stop), digest, len(data), time.perf_counter() - t0, _host())

    # -- reading ---------------------------------------------------------------
    def discard(self, start: int, stop: int) -> None:
        """Delete a chunk and its checksum."""
        for p in (self.checksum_path(start, stop), self.chunk_path(start, stop)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def verify(self, start: int, stop: int) -> bool:
        """Whether blends ``[start, stop)`` are on disk, match their checksum and have the expected layout.

        A chunk that fails (other than by being absent or unfinished) is
        logged and deleted, so that it is redone.
        """
        path, sums = self.chunk_path(start, stop), self.checksum_path(start, stop)
        try:
            recorded = sums.read_text().split()[0]
            data = path.read_bytes()
        except (OSError, IndexError, UnicodeDecodeError):
            self.discard(start, stop)  # not written, or interrupted before its checksum
            return False
        digest = hashlib.sha256(data).hexdigest()
        if digest != recorded:
            problem = f"is corrupt (sha256 {digest[:12]}, recorded {recorded[:12]})"
        else:
            problem = self._layout_problem(path, start, stop)
        if problem is not None:
            log.warning("%s %s; it will be redone", path, problem)
            self.discard(start, stop)
            return False
        return True

    def _layout_problem(self, path: Path, start: int, stop: int) -> str | None:
        n = stop - start
        try:
            with h5py.File(path, "r") as f:
                if int(f.attrs.get("start", -1)) != start:
                    return f"holds rows from {f.attrs.get('start')!r}, expected {start}"
                for name in PER_BLEND:
                    want = (n,) + self.shapes[name]
                    ds = f[name]
                    if ds.shape != want or ds.dtype != _DTYPES[name]:
                        return (f"has {name} of shape {ds.shape} and dtype {ds.dtype}; "
                                f"expected {want} {_DTYPES[name]}")
                if f["truth"].dtype != truth_dtype(self.bands):
                    return "has truth rows of another dtype"
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            return f"cannot be read ({type(exc).__name__}: {exc})"
        return None

    def is_complete(self, start: int, stop: int) -> bool:
        """Same as :meth:`verify`."""
        return self.verify(start, stop)

    def load(self, start: int, stop: int) -> Chunk | None:
        """The chunk of blends ``[start, stop)``, decoded and verified, or None when absent or corrupt."""
        if not self.verify(start, stop):
            return None
        with h5py.File(self.chunk_path(start, stop), "r") as f:
            arrays = {name: f[name][...] for name in PER_BLEND}
            truth = f["truth"][...]
        return Chunk(start=start, arrays=arrays, truth=truth)

    def complete_bounds(self, bounds: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """The bounds among ``bounds`` whose chunk is complete and verified."""
        return [(a, b) for a, b in bounds if self.is_complete(a, b)]

    def nbytes(self) -> int:
        """Total size of the chunk files now in the directory, bytes."""
        return sum(p.stat().st_size for p in self.directory.glob("*.h5"))

    def __repr__(self) -> str:
        return f"ChunkStore({str(self.directory)!r})"


def simulate_to_store(store: ChunkStore, config: SimConfig, seed: int, split: str,
                      start: int, stop: int) -> ChunkInfo:
    """Simulate blends ``[start, stop)`` and write them to ``store`` (the task a worker runs)."""
    t0 = time.perf_counter()
    chunk = simulate_chunk(config, seed, split, start, stop)
    for name in ("blend", "isolated", "psf", "noise_sigma"):
        arr = chunk.arrays[name]
        if not np.isfinite(arr).all():
            i = int(np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))[0])
            raise ConfigError(
                f"blend {start + i} of {split} has NaN or inf values in {name!r}: the simulation "
                "overflowed; check the config for extreme values (exposure_fraction, seeing_scatter, ...)"
            )
    info = store.write(chunk, stop)
    return ChunkInfo(info.start, info.stop, info.sha256, info.nbytes, time.perf_counter() - t0, info.host)


# ---------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------
def is_dask_client(obj: Any) -> bool:
    """Whether ``obj`` is a :class:`distributed.Client` (without importing distributed)."""
    return type(obj).__name__ == "Client" and type(obj).__module__.startswith("distributed")


def _failure(split: str, a: int, b: int, where: str, exc: BaseException, store: ChunkStore,
             n_done: int) -> DeblendKitError:
    if isinstance(exc, DeblendKitError):
        return exc
    return DeblendKitError(
        f"simulating blends [{a}, {b}) of {split} failed {where}: {type(exc).__name__}: {exc}; "
        f"the {n_done} chunk(s) completed in this run are kept in {store.directory}: "
        "run the same command again to resume"
    )


def run_chunks(
    store: ChunkStore,
    config: SimConfig,
    *,
    seed: int,
    split: str,
    bounds: Sequence[tuple[int, int]],
    n_jobs: int = 1,
    client: Any = None,
    on_done: Callable[[ChunkInfo], None] | None = None,
) -> list[ChunkInfo]:
    """Simulate the chunks ``bounds`` into ``store``: here, in a process pool, or on Dask.

    Parameters
    ----------
    store : where the chunk files go (prepared).
    config, seed, split : what to simulate.
    bounds : ``[(start, stop), ...]`` of the chunks to run.
    n_jobs : worker processes of the local pool (1 = this process); ignored with ``client``.
    client : a :class:`distributed.Client`; tasks then run on its workers, which
        write into ``store`` (a shared filesystem is required).
    on_done : called with each :class:`ChunkInfo` as chunks finish (any order).

    Returns
    -------
    list of ChunkInfo, one per chunk, in completion order.

    Raises
    ------
    DeblendKitError
        A chunk failed (the project's own error, or a worker that died, wrapped
        with a message saying the completed chunks are kept for a rerun).
    DataFileError
        A chunk a Dask worker wrote is not visible here.
    """
    done: list[ChunkInfo] = []

    def finish(info: ChunkInfo) -> None:
        done.append(info)
        if on_done is not None:
            on_done(info)

    if not bounds:
        return done
    if client is not None:
        return _run_dask(client, store, config, seed=seed, split=split, bounds=bounds, finish=finish,
                         done=done)
    if n_jobs == 1 or len(bounds) == 1:
        for a, b in bounds:
            finish(simulate_to_store(store, config, seed, split, a, b))
        return done
    with ProcessPoolExecutor(max_workers=int(n_jobs)) as pool:
        futures = {pool.submit(simulate_to_store, store, config, seed, split, a, b): (a, b)
                   for a, b in bounds}
        try:
            for fut in as_completed(futures):
                try:
                    finish(fut.result())
                except (BrokenProcessPool, OSError, MemoryError) as exc:
                    a, b = futures[fut]
                    raise _failure(split, a, b, "in a worker process", exc, store, len(done)) from exc
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return done


def _run_dask(client, store, config, *, seed, split, bounds, finish, done) -> list[ChunkInfo]:
    from distributed import as_completed as dask_completed

    starts = [a for a, _ in bounds]
    stops = [b for _, b in bounds]
    n = len(bounds)
    futures = client.map(
        simulate_to_store, [store] * n, [config] * n, [seed] * n, [split] * n, starts, stops,
        pure=False, key=[f"deblendkit-{split}-{a}-{b}-{os.urandom(4).hex()}" for a, b in bounds],
    )
    where = {f.key: (a, b) for f, (a, b) in zip(futures, bounds)}
    try:
        for fut in dask_completed(futures):
            a, b = where[fut.key]
            try:
                info = fut.result()
            except DeblendKitError:
                raise
            except Exception as exc:  # a worker died (KilledWorker), lost connection, ...
                raise _failure(split, a, b, "on a Dask worker", exc, store, len(done)) from exc
            path = store.chunk_path(info.start, info.stop)
            if not store.checksum_path(info.start, info.stop).exists():
                raise DataFileError(
                    f"worker {info.host} wrote {path}, but it is not visible here: the output "
                    "directory (or --work-dir) must be on a filesystem shared by the Dask "
                    "workers and this process"
                )
            finish(info)
    except BaseException:
        client.cancel(futures)
        raise
    return done


@contextlib.contextmanager
def dask_client(scheduler: Any, *, n_workers: int | None = None, timeout_s: float = 30.0) -> Iterator[Any]:
    """A :class:`distributed.Client` for ``scheduler``, closed on exit.

    Parameters
    ----------
    scheduler : str or Client
        ``"local"`` starts a :class:`~distributed.LocalCluster` of ``n_workers``
        worker processes with one thread each (closed on exit);
        ``"local:N"`` the same with N workers; any other string is a scheduler
        address (``tcp://host:8786``) to connect to; a Client is used as is
        (and left open).
    n_workers : int, optional
        Workers of a local cluster (default: the number of CPUs).
    timeout_s : float
        Seconds to wait for a remote scheduler.

    Raises
    ------
    ConfigError
        ``scheduler`` is not a string or Client, or the scheduler cannot be reached.
    """
    if is_dask_client(scheduler):
        yield scheduler
        return
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise ConfigError(
            f"scheduler must be 'local', 'local:N' or a Dask scheduler address such as "
            f"'tcp://host:8786', got {scheduler!r}"
        )
    scheduler = scheduler.strip()
    from distributed import Client, LocalCluster

    if scheduler == "local" or scheduler.startswith("local:"):
        if scheduler.startswith("local:"):
            text = scheduler.split(":", 1)[1]
            if not text.isdigit() or int(text) < 1:
                raise ConfigError(f"scheduler 'local:N' needs an integer N >= 1, got {scheduler!r}")
            n_workers = int(text)
        n = int(n_workers or os.cpu_count() or 1)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        try:
            client = Client(cluster)
            try:
                log.info("started a local Dask cluster of %d worker processes", n)
                yield client
            finally:
                client.close()
        finally:
            cluster.close()
        return
    try:
        client = Client(scheduler, timeout=f"{float(timeout_s)}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"cannot connect to the Dask scheduler at {scheduler!r}: {exc}") from exc
    try:
        yield client
    finally:
        client.close()
