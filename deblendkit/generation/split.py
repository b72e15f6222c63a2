"""Generate a data split: chunks of blends simulated in parallel, written atomically.

Every chunk (:mod:`~deblendkit.generation.chunks`) goes through a checksummed
chunk file (:mod:`~deblendkit.generation.chunk_store`), checked and compressed by
the worker that made it (:mod:`~deblendkit.generation.executors`); the assembly
copies the compressed chunks, in chunk order, into the final file with
:class:`~deblendkit.storage.writer.DatasetWriter` (temporary file, then an atomic
rename), each chunk as soon as it and those before it are done, while the
workers go on (the serial part overlaps them). So a run that is killed leaves no
partial output, and running the same command again resumes from the chunks
that are complete instead of starting over. With the same chunk order and
``created`` time (set ``SOURCE_DATE_EPOCH`` to fix it) two runs give the same
file, byte for byte, whatever ran the chunks.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from deblendkit._checks import non_negative_int, positive_int
from deblendkit._progress import progress as progress_counter
from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError, DataFileError, DeblendKitError
from deblendkit.generation.chunk_store import ChunkInfo, ChunkStore, simulate_to_store
from deblendkit.generation.chunks import chunk_bounds
from deblendkit.generation.dask_executor import dask_client, is_dask_client
from deblendkit.generation.executors import run_chunks
from deblendkit.generation.provenance import split_attrs
from deblendkit.generation.stop import StopSignal
from deblendkit.sim.sample import split_code
from deblendkit.sim.seds import colour_table
from deblendkit.storage import DatasetWriter, remove_stale_temp_files

__all__ = ["SplitResult", "generate_split"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SplitResult:
    """What :func:`generate_split` made.

    Attributes
    ----------
    path : str
        The data file written.
    n_blends, n_galaxies : int
        Blends in it, and labelled galaxies (truth rows with ``labelled == 1``).
    blendedness : numpy.ndarray
        (n_galaxies,) float, the blendedness of every labelled galaxy, in file order.
    seconds : float
        Wall time of the whole call.
    nbytes : int
        Size of the data file, bytes.
    chunks, chunks_reused, chunks_redone : int
        Chunks in all; complete from an earlier run; found corrupt at assembly and simulated again.
    chunk_bytes : int
        Size of the chunk files, bytes (the temporary disk space).
    simulate_seconds, assemble_seconds : float
        Wall time until the last chunk was simulated, and of the assembly left after that.
    how : str
        What ran the chunks ("this process", "2 local processes", "Dask", ...).
    """

    path: str
    n_blends: int
    n_galaxies: int
    blendedness: np.ndarray
    seconds: float
    nbytes: int
    chunks: int
    chunks_reused: int
    chunks_redone: int
    chunk_bytes: int
    simulate_seconds: float
    assemble_seconds: float
    how: str


class _Assembly:
    """Copies chunk files into the output in chunk order, each as soon as it and those before it are done.

    Chunk order, so the file layout does not depend on who ran what; the
    workers go on with the next chunks meanwhile.
    """

    def __init__(self, *, writer: DatasetWriter, store: ChunkStore, bounds: list[tuple[int, int]],
                 ready: set, config: SimConfig, seed: int, split: str, stop: StopSignal, bar: Any) -> None:
        self.writer, self.store, self.bounds = writer, store, bounds
        self.ready = set(ready)
        self.config, self.seed, self.split = config, seed, split
        self.stop, self.bar = stop, bar
        self.next = 0
        self.n_galaxies = 0
        self.redone = 0
        self.blendedness: list[np.ndarray] = []

    def on_done(self, info: ChunkInfo) -> None:
        """A worker finished a chunk: count it and copy what is ready."""
        self.bar.update(info.stop - info.start)
        self.ready.add((info.start, info.stop))
        self.assemble_ready()

    def all_done(self) -> None:
        """Every chunk is simulated: copy the rest."""
        self.ready.update(self.bounds)
        self.assemble_ready()

    def assemble_ready(self) -> None:
        """Copy the ready chunks that follow the last one copied (stop check first: after every chunk)."""
        self.stop.check()
        while self.next < len(self.bounds) and self.bounds[self.next] in self.ready:
            a, b = self.bounds[self.next]
            self._verified(a, b)
            # The compressed chunks are copied as they are: no second compression here.
            truth = self.writer.copy_rows(self.store.chunk_path(a, b))
            labelled = truth["labelled"] == 1
            self.blendedness.append(truth["blendedness"][labelled])
            self.n_galaxies += int(labelled.sum())
            self.next += 1

    def result(self, path: Any, *, t0: float, simulate_seconds: float, chunk_bytes: int, reused: int,
               how: str) -> SplitResult:
        """The :class:`SplitResult` of the finished output ``path`` (``t0``: the call's start); logs it."""
        seconds = time.perf_counter() - t0
        size = os.path.getsize(path)
        n_blends = self.bounds[-1][1]
        log.info("%s: %d blends, %d galaxies, %.1f s (%s), %.1f MB", path, n_blends, self.n_galaxies, seconds,
                 how, size / 1e6)
        return SplitResult(
            path=str(path), n_blends=n_blends, n_galaxies=self.n_galaxies,
            blendedness=np.concatenate(self.blendedness) if self.blendedness else np.zeros(0),
            seconds=seconds, nbytes=size, chunks=len(self.bounds), chunks_reused=reused,
            chunks_redone=self.redone, chunk_bytes=int(chunk_bytes), simulate_seconds=simulate_seconds,
            assemble_seconds=seconds - simulate_seconds, how=how,
        )

    def _verified(self, a: int, b: int) -> None:
        """Make sure chunk ``[a, b)`` is intact; one damaged since it was written is simulated again here."""
        if self.store.verify(a, b):
            return
        self.redone += 1
        simulate_to_store(self.store, self.config, self.seed, self.split, a, b)
        if not self.store.verify(a, b):  # pragma: no cover - the disk loses what it was just given
            raise DataFileError(f"chunk [{a}, {b}) of {self.writer.path} cannot be read back from "
                                f"{self.store.directory}")


def _checked(config: Any, *, split: str, n_blends: Any, n_jobs: Any, chunk_size: Any, seed: Any) -> None:
    """Refuse bad arguments before anything is written."""
    for name, value in (("n_blends", n_blends), ("n_jobs", n_jobs), ("chunk_size", chunk_size)):
        positive_int(name, value, what="an integer >= 1")
    non_negative_int("seed", seed)
    if not isinstance(config, SimConfig):
        raise ConfigError(f"config must be a SimConfig, got {type(config).__name__}",
                          value=type(config).__name__, allowed="SimConfig")
    split_code(split)  # an unknown split is refused before anything is written


def _open(config: SimConfig, *, path: Any, split: str, n_blends: int, seed: int, overwrite: bool,
          work_dir: Any, resume: bool) -> tuple[DatasetWriter, ChunkStore]:
    """The output's writer (an existing file refused before any work) and its prepared chunk store."""
    writer = DatasetWriter(
        path, n_blends=n_blends, bands=config.simulated_bands, max_galaxies=config.max_galaxies,
        stamp_size=config.stamp_size, psf_size=config.psf_size,
        attrs=split_attrs(config, seed=seed, split=split), overwrite=overwrite,
    )
    writer.check_target()  # refuse an existing file before any work
    remove_stale_temp_files(path)
    # Build the cached colour table once, before workers fork, so they inherit it.
    colour_table(config.survey, config.simulated_bands, config.magnitude_band)
    store = ChunkStore.for_output(path, config=config, seed=seed, split=split, work_dir=work_dir)
    store.prepare(resume=resume)
    return writer, store


def _simulate(store: ChunkStore, config: SimConfig, *, seed: int, split: str, todo: list, n_jobs: int,
              scheduler: Any, on_done: Any, stop: StopSignal) -> str:
    """Run the chunks ``todo`` locally or on Dask; return what ran them (for the log).

    A worker that died of the signal that also asked this process to stop
    (Ctrl-C or a batch system's SIGTERM reach the whole process group, and
    pool workers obey them) is an interrupt, not a failure: KeyboardInterrupt.
    """
    try:
        if scheduler is None:
            run_chunks(store, config, seed=seed, split=split, bounds=todo, n_jobs=n_jobs, on_done=on_done)
            return "this process" if n_jobs == 1 or len(todo) <= 1 else f"{n_jobs} local processes"
        with dask_client(scheduler, n_workers=n_jobs) as client:
            run_chunks(store, config, seed=seed, split=split, bounds=todo, client=client, on_done=on_done)
        return "Dask" if is_dask_client(scheduler) else f"Dask ({scheduler})"
    except DeblendKitError:
        stop.check()
        raise


def generate_split(config: SimConfig, *, path: str | os.PathLike, split: str, n_blends: int, seed: int,
                   n_jobs: int = 1, chunk_size: int = 16, overwrite: bool = False, progress: bool = True,
                   scheduler: Any = None, work_dir: str | os.PathLike | None = None, resume: bool = True,
                   keep_chunks: bool = False, stop: StopSignal | None = None) -> SplitResult:
    """Simulate ``n_blends`` blends of ``split`` and write them to ``path``.

    Chunks are simulated into checksummed chunk files (here, in a process pool
    or on Dask) and assembled in order into ``path`` as they complete.

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
    progress : show progress (a bar on a terminal, else a few log lines: :mod:`deblendkit._progress`).
    scheduler : None (local), ``"local"`` (a Dask LocalCluster of ``n_jobs``
        processes), a Dask scheduler address (``"tcp://host:8786"``) or a
        :class:`distributed.Client`. The chunk files must then be on a
        filesystem the workers share.
    work_dir : where the chunk directories go (default ``_chunks`` beside ``path``).
    resume : reuse the complete chunks (verified by SHA-256) of an interrupted run of the same
        config, seed, split and package versions.
    keep_chunks : keep the chunk files after the final file is written.
    stop : a :class:`StopSignal` checked after every chunk (KeyboardInterrupt once requested).

    Returns
    -------
    SplitResult

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
    KeyboardInterrupt
        ``stop`` was requested; the completed chunks are kept for a rerun.
    """
    _checked(config, split=split, n_blends=n_blends, n_jobs=n_jobs, chunk_size=chunk_size, seed=seed)
    t0 = time.perf_counter()
    n_blends, seed, n_jobs = int(n_blends), int(seed), int(n_jobs)
    stop = stop if stop is not None else StopSignal()
    writer, store = _open(config, path=path, split=split, n_blends=n_blends, seed=seed, overwrite=overwrite,
                          work_dir=work_dir, resume=resume)
    bounds = chunk_bounds(n_blends, int(chunk_size))
    complete = set(store.complete_bounds(bounds))
    todo = [b for b in bounds if b not in complete]
    if complete:
        log.info("%s: resuming, %d of %d chunks already complete (verified by sha256)",
                 path, len(complete), len(bounds))
    bar = progress_counter(n_blends, desc=f"{split}", unit="blend", enabled=progress)
    bar.update(sum(b - a for a, b in complete))
    assembly = _Assembly(writer=writer, store=store, bounds=bounds, ready=complete, config=config, seed=seed,
                         split=split, stop=stop, bar=bar)
    with stop.running(), writer:  # from here a signal's stop request is seen at the next chunk
        assembly.assemble_ready()  # chunks reused from an interrupted run
        how = _simulate(store, config, seed=seed, split=split, todo=todo, n_jobs=n_jobs,
                        scheduler=scheduler, on_done=assembly.on_done, stop=stop)
        bar.close()
        t_sim = time.perf_counter() - t0
        chunk_bytes = store.nbytes()
        assembly.all_done()
    if not keep_chunks:
        store.remove()
    return assembly.result(path, t0=t0, simulate_seconds=t_sim, chunk_bytes=chunk_bytes,
                           reused=len(complete), how=how)
