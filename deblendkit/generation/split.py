"""Generate a data split: chunks of blends simulated in parallel, written atomically.

The unit of work is :func:`simulate_chunk` (blends ``[start, stop)`` of a split),
a pure function of ``(config, seed, split, start, stop)``: this process, a local
process pool or a Dask cluster runs the very same function, and since every
blend has its own seed-sequence child the bytes do not depend on the number of
workers, the scheduler or the chunk size.

Every chunk goes through a checksummed chunk file in a work directory beside
the output (:mod:`deblendkit.generation.executors`), checked and compressed by the
worker that made it; the assembly copies the compressed chunks, in chunk
order, into the final file with :class:`~deblendkit.storage.files.DatasetWriter`
(temporary file, then an atomic rename), each chunk as soon as it and those
before it are done, while the workers go on (the serial part overlaps them). So a run that is killed leaves no
partial output, and running the same command again resumes from the chunks
that are complete instead of starting over. With the same chunk order and
``created`` time (set ``SOURCE_DATE_EPOCH`` to fix it) two runs give the same
file, byte for byte, whatever ran the chunks.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata

import numpy as np
from tqdm.auto import tqdm

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError, DataFileError
from deblendkit.storage.files import DatasetWriter, remove_stale_temp_files, truth_dtype
from deblendkit.sim.blend_mode import simulate_blend, split_code
from deblendkit.sim.seds import SED_NAMES, colour_table

__all__ = ["Chunk", "simulate_chunk", "generate_split", "split_attrs", "package_versions", "chunk_bounds",
           "created_time", "request_stop", "clear_stop"]

log = logging.getLogger(__name__)

PER_BLEND = ("blend", "isolated", "psf", "noise_sigma", "centers", "n_galaxies")

_STOP = threading.Event()
_RUNNING = threading.Event()


def request_stop() -> bool:
    """Make a running :func:`generate_split` raise KeyboardInterrupt at its next chunk boundary.

    For signal handlers (``prepare_data.py`` on SIGINT and SIGTERM): a
    KeyboardInterrupt raised by the handler itself can be lost when the signal
    lands inside a destructor or a weak-reference callback (Python then only
    prints "Exception ignored ..."), while this flag is checked after every
    chunk (a second or less). Returns whether a run is in progress to see it
    (if not, the handler should raise KeyboardInterrupt itself).
    """
    _STOP.set()
    return _RUNNING.is_set()


def clear_stop() -> None:
    """Forget an earlier :func:`request_stop` (before a new run)."""
    _STOP.clear()


def _check_stop() -> None:
    if _STOP.is_set():
        raise KeyboardInterrupt


@dataclass(frozen=True)
class Chunk:
    """Blends ``[start, start + n)`` of a split, stacked (see :class:`~deblendkit.sim.blend_mode.BlendSample`)."""

    start: int
    arrays: dict  # name -> (n, ...) array, names in PER_BLEND
    truth: np.ndarray  # structured, truth_dtype(bands)

    def __len__(self) -> int:
        return len(self.arrays["n_galaxies"])


def simulate_chunk(config: SimConfig, seed: int, split: str, start: int, stop: int) -> Chunk:
    """Simulate blends ``start .. stop-1`` of ``split`` (a pure function of its arguments)."""
    samples = [simulate_blend(config, seed=seed, split=split, index=i) for i in range(start, stop)]
    arrays = {
        "blend": np.stack([s.blend for s in samples]),
        "isolated": np.stack([s.isolated for s in samples]),
        "psf": np.stack([s.psf for s in samples]),
        "noise_sigma": np.stack([s.noise_sigma for s in samples]),
        "centers": np.stack([s.centers for s in samples]),
        "n_galaxies": np.array([s.n_galaxies for s in samples], dtype=np.int32),
    }
    dtype = truth_dtype(config.band_names)
    # One truth row per galaxy in the scene: in field mode that includes the
    # unlabelled faint galaxies, so count rows, not n_galaxies (the labelled ones).
    n_rows = sum(len(s.truth["blend_index"]) for s in samples)
    truth = np.zeros(n_rows, dtype=dtype)
    row = 0
    for s in samples:
        for name in dtype.names:
            truth[name][row: row + len(s.truth["blend_index"])] = s.truth[name]
        row += len(s.truth["blend_index"])
    return Chunk(start=start, arrays=arrays, truth=truth)


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the data."""
    out = {}
    for name in ("deblendkit", "galsim", "numpy", "h5py", "surveycodex", "astropy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - not installed
            out[name] = "unknown"
    return out


def created_time() -> str:
    """ISO time (UTC, seconds) for the ``created`` attribute.

    ``SOURCE_DATE_EPOCH`` (seconds since 1970, the reproducible-builds
    convention), when set, replaces the current time so that two runs can give
    byte-identical files.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            when = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise ConfigError(
                f"SOURCE_DATE_EPOCH must be an integer number of seconds since 1970, got {epoch!r}"
            ) from None
    else:
        when = datetime.now(timezone.utc)
    return when.isoformat(timespec="seconds")


def split_attrs(config: SimConfig, *, seed: int, split: str) -> dict:
    """Root attributes of a data file (see data/README.md)."""
    survey = config.survey_obj
    bands = config.band_names
    return {
        "bands": list(bands),
        "pixel_scale": config.pixel_scale,
        "gain": [survey.gain] * len(bands),
        "zeropoint": [survey.band(b).zeropoint for b in bands],
        "exposure_time": [survey.band(b).exposure_time * config.exposure_fraction for b in bands],
        "config": config.to_json(),
        "seed": int(seed),
        "split": split,
        "first_index": 0,
        "versions": json.dumps(package_versions(), sort_keys=True),
        "sed_names": list(SED_NAMES),
        "survey": config.survey,
        "created": created_time(),
    }


def chunk_bounds(n_blends: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n_blends)``."""
    return [(a, min(a + chunk_size, n_blends)) for a in range(0, n_blends, chunk_size)]


def generate_split(
    config: SimConfig,
    *,
    path: str | os.PathLike,
    split: str,
    n_blends: int,
    seed: int,
    n_jobs: int = 1,
    chunk_size: int = 16,
    overwrite: bool = False,
    progress: bool = True,
    scheduler=None,
    work_dir: str | os.PathLike | None = None,
    resume: bool = True,
    keep_chunks: bool = False,
) -> dict:
    """Simulate ``n_blends`` blends of ``split`` and write them to ``path``.

    Chunks are simulated into checksummed chunk files (in this process, a
    process pool or on Dask) and assembled in order into ``path`` as they
    complete; see the
    module docstring and :mod:`deblendkit.generation.executors`.

    Parameters
    ----------
    config : SimConfig
    path : output HDF5 file (written atomically: temp file, then rename).
    split : "train", "test", "train_mini" or "test_mini" (selects the seed stream).
    n_blends : number of blends, >= 1.
    seed : master seed (int >= 0).
    n_jobs : worker processes of the local pool (1 = in this process); with a
        local Dask cluster (``scheduler="local"``), its number of workers.
    chunk_size : blends per task (and per chunk file).
    overwrite : replace an existing file.
    progress : show a tqdm progress bar.
    scheduler : None (local), ``"local"`` (a Dask LocalCluster of ``n_jobs``
        processes), a Dask scheduler address (``"tcp://host:8786"``) or a
        :class:`distributed.Client`. The chunk files must then be on a
        filesystem the workers share.
    work_dir : where the chunk directories go (default ``_chunks`` beside ``path``).
    resume : reuse the complete chunks of an interrupted run with the same
        config, seed, split and package versions (verified by SHA-256).
    keep_chunks : keep the chunk files after the final file is written.

    Returns
    -------
    dict with ``path``, ``n_blends``, ``n_galaxies``, ``blendedness`` (array),
    ``seconds``, ``bytes`` and the chunk bookkeeping ``chunks`` (total),
    ``chunks_reused`` (complete from an earlier run), ``chunks_redone``
    (corrupt, simulated again at assembly), ``chunk_bytes`` (size of the chunk
    files, the temporary disk space), ``simulate_seconds`` (until the last chunk
    is simulated) and ``assemble_seconds`` (the assembly left after that).

    Raises
    ------
    ConfigError
        A bad argument, or an unreachable Dask scheduler.
    OutputExistsError
        ``path`` exists and ``overwrite`` is false (checked before any work).
    DataFileError
        The output or chunk directory cannot be written.
    DeblendKitError
        A worker failed; the completed chunks are kept for a rerun.
    """
    from deblendkit.generation.executors import ChunkStore, dask_client, is_dask_client, run_chunks, simulate_to_store

    for name, value in (("n_blends", n_blends), ("n_jobs", n_jobs), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    if not isinstance(config, SimConfig):
        raise ConfigError(f"config must be a SimConfig, got {type(config).__name__}")
    split_code(split)  # an unknown split is refused before anything is written
    t0 = time.perf_counter()
    n_blends, seed = int(n_blends), int(seed)
    writer = DatasetWriter(
        path, n_blends=n_blends, bands=config.band_names, max_galaxies=config.max_galaxies,
        stamp_size=config.stamp_size, psf_size=config.psf_size,
        attrs=split_attrs(config, seed=seed, split=split), overwrite=overwrite,
    )
    writer.check_target()  # refuse an existing file before any work
    remove_stale_temp_files(path)
    # Build the cached colour table once, before workers fork, so they inherit it.
    colour_table(config.survey, config.band_names, config.ref_band)
    bounds = chunk_bounds(n_blends, int(chunk_size))
    store = ChunkStore.for_output(path, config=config, seed=seed, split=split, work_dir=work_dir)
    store.prepare(resume=resume)
    complete = set(store.complete_bounds(bounds))
    todo = [b for b in bounds if b not in complete]
    if complete:
        log.info("%s: resuming, %d of %d chunks already complete (verified by sha256)",
                 path, len(complete), len(bounds))
    bar = tqdm(total=n_blends, desc=f"{split}", unit="blend", disable=not progress, leave=False)
    bar.update(sum(b - a for a, b in complete))

    # Assembly streams: each chunk is copied into the output as soon as it and
    # all chunks before it are done (chunk order, so the file layout does not
    # depend on who ran what), while the workers go on with the next ones.
    ready = set(complete)
    blendedness: list[np.ndarray] = []
    state = {"next": 0, "n_gal": 0, "redone": 0}

    def assemble_ready() -> None:
        _check_stop()  # after every chunk (on_done) and before and after the run
        while state["next"] < len(bounds) and bounds[state["next"]] in ready:
            a, b = bounds[state["next"]]
            if not store.verify(a, b):  # damaged since it was written: simulate it again here
                state["redone"] += 1
                simulate_to_store(store, config, seed, split, a, b)
                if not store.verify(a, b):  # pragma: no cover - the disk loses what it was just given
                    raise DataFileError(f"chunk [{a}, {b}) of {path} cannot be read back from {store.directory}")
            # The compressed chunks are copied as they are: no second compression here.
            truth = writer.copy_rows(store.chunk_path(a, b))
            labelled = truth["labelled"] == 1
            blendedness.append(truth["blendedness"][labelled])
            state["n_gal"] += int(labelled.sum())
            state["next"] += 1

    def on_done(info) -> None:
        bar.update(info.stop - info.start)
        ready.add((info.start, info.stop))
        assemble_ready()

    _RUNNING.set()  # from here a signal handler's request_stop() is seen at the next chunk
    try:
        with writer:
            assemble_ready()  # chunks reused from an interrupted run
            if scheduler is None:
                run_chunks(store, config, seed=seed, split=split, bounds=todo, n_jobs=int(n_jobs), on_done=on_done)
                how = "this process" if n_jobs == 1 or len(todo) <= 1 else f"{n_jobs} local processes"
            else:
                with dask_client(scheduler, n_workers=int(n_jobs)) as client:
                    run_chunks(store, config, seed=seed, split=split, bounds=todo, client=client,
                               on_done=on_done)
                    how = "Dask" if is_dask_client(scheduler) else f"Dask ({scheduler})"
            bar.close()
            t_sim = time.perf_counter() - t0
            chunk_bytes = store.nbytes()
            ready.update(bounds)
            assemble_ready()
    finally:
        _RUNNING.clear()
    n_gal, redone = state["n_gal"], state["redone"]
    if not keep_chunks:
        store.remove()
    seconds = time.perf_counter() - t0
    size = os.path.getsize(path)
    log.info("%s: %d blends, %d galaxies, %.1f s (%s), %.1f MB", path, n_blends, n_gal, seconds, how, size / 1e6)
    return {
        "path": str(path),
        "n_blends": n_blends,
        "n_galaxies": int(n_gal),
        "blendedness": np.concatenate(blendedness) if blendedness else np.zeros(0),
        "seconds": seconds,
        "bytes": size,
        "chunks": len(bounds),
        "chunks_reused": len(complete),
        "chunks_redone": redone,
        "chunk_bytes": int(chunk_bytes),
        "simulate_seconds": t_sim,
        "assemble_seconds": seconds - t_sim,
    }
