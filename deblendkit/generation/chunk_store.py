"""Chunk files: every chunk of a split kept as a checksummed file until assembly.

Every worker writes the chunk it simulated to a *chunk file* in a work directory
beside the output::

    data/_chunks/train/manifest.json           what the chunks are of (config, seed, split, versions)
    data/_chunks/train/000000000-000000016.h5  blends [0, 16): arrays and truth rows (a rows file)
    data/_chunks/train/000000000-000000016.h5.sha256   its SHA-256, ``sha256sum -c`` format

A chunk file is a small HDF5 *rows file* (:func:`deblendkit.storage.writer.write_rows_file`)
whose datasets have the final file's chunking and filters: the worker that
simulates a chunk also checks and compresses it, and the assembly copies the
compressed chunks byte for byte (:meth:`deblendkit.storage.writer.DatasetWriter.copy_rows`),
so the serial part of a run is little more than file I/O.

A chunk file and then its checksum file are written atomically (temporary file,
fsync, rename), so a chunk is *complete* exactly when its checksum file exists
and matches its bytes. A rerun after a crash (a killed process, a lost worker,
a full disk) keeps the complete chunks and redoes the rest, including any chunk
whose bytes no longer match (it is logged and deleted). The manifest guards
against mixing chunks of another configuration, seed, split or package version:
when it differs the directory is emptied first.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py

from deblendkit._fs import atomic_write_bytes, temp_name
from deblendkit.config import SimConfig
from deblendkit.errors import DataFileError, DeblendKitError
from deblendkit.generation.chunks import Chunk, check_finite, simulate_chunk
from deblendkit.generation.provenance import package_versions
from deblendkit.storage import DTYPES, PER_BLEND_DATASETS, dataset_shapes, truth_dtype, write_rows_file

__all__ = ["CHUNK_FORMAT", "MANIFEST", "ChunkInfo", "ChunkStore", "simulate_to_store", "chunk_failure"]

log = logging.getLogger(__name__)

CHUNK_FORMAT = 1
"""Version of the chunk-file layout (part of the manifest)."""

MANIFEST = "manifest.json"
_NAME_DIGITS = 9  # 000000000-000000016.h5: sorts by start up to 10^9 blends


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


def _row_shapes(config: SimConfig) -> dict[str, tuple[int, ...]]:
    """The shape of one blend's row of every per-blend array (the schema's shapes without N)."""
    shapes = dataset_shapes(1, config.max_galaxies, len(config.simulated_bands), config.stamp_size,
                            config.psf_size)
    return {name: shape[1:] for name, shape in shapes.items()}


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
    def for_output(cls, path: str | os.PathLike, *, config: SimConfig, seed: int, split: str,
                   work_dir: str | os.PathLike | None = None) -> ChunkStore:
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
        return cls(root / path.stem, fingerprint=fingerprint, shapes=_row_shapes(config),
                   bands=config.simulated_bands)

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
                self._drop_if_other(manifest)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataFileError(f"cannot create the chunk directory {self.directory}: {exc}",
                                value=str(self.directory)) from exc
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise DataFileError(f"the chunk directory {self.directory} is not writable", value=str(self.directory))
        for tmp in self.directory.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                log.info("removed %s, left by an interrupted writer", tmp)
        if not manifest.exists():
            atomic_write_bytes(manifest, (json.dumps(self.fingerprint, sort_keys=True, indent=1) + "\n").encode())

    def _drop_if_other(self, manifest: Path) -> None:
        """Empty the directory when its manifest is not this store's fingerprint (saying why)."""
        found = None
        with contextlib.suppress(OSError, ValueError):
            found = json.loads(manifest.read_text())
        if found == self.fingerprint:
            return
        if found is None:
            reason = "has no readable manifest"
        elif isinstance(found, dict):
            reason = "holds chunks of another " + ", ".join(
                k for k in self.fingerprint if found.get(k) != self.fingerprint[k])
        else:
            reason = "has a malformed manifest"
        log.warning("%s %s; starting this output afresh", self.directory, reason)
        self.remove()

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

        The rows are checked (:func:`deblendkit.storage.writer.write_rows_file`) and compressed here.

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
        tmp = temp_name(path)
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
        atomic_write_bytes(self.checksum_path(start, stop), f"{digest}  {path.name}\n".encode())
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
                for name in PER_BLEND_DATASETS:
                    want = (n,) + self.shapes[name]
                    ds = f[name]
                    if ds.shape != want or ds.dtype != DTYPES[name]:
                        return (f"has {name} of shape {ds.shape} and dtype {ds.dtype}; "
                                f"expected {want} {DTYPES[name]}")
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
            arrays = {name: f[name][...] for name in PER_BLEND_DATASETS}
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
    """Simulate blends ``[start, stop)`` and write them to ``store`` (the task a worker runs).

    Raises
    ------
    ConfigError
        The simulation overflowed (NaN or inf pixels), or the rows break the data contract.
    DataFileError
        The chunk file cannot be written.
    """
    t0 = time.perf_counter()
    chunk = simulate_chunk(config, seed, split, start, stop)
    check_finite(chunk, split)
    info = store.write(chunk, stop)
    return ChunkInfo(info.start, info.stop, info.sha256, info.nbytes, time.perf_counter() - t0, info.host)


def chunk_failure(split: str, bounds: tuple[int, int], where: str, exc: BaseException, store: ChunkStore,
                  n_done: int) -> DeblendKitError:
    """The error to raise when chunk ``bounds`` failed ``where`` (the kit's own errors pass as they are)."""
    if isinstance(exc, DeblendKitError):
        return exc
    a, b = bounds
    return DeblendKitError(
        f"simulating blends [{a}, {b}) of {split} failed {where}: {type(exc).__name__}: {exc}; "
        f"the {n_done} chunk(s) completed in this run are kept in {store.directory}: "
        "run the same command again to resume"
    )
