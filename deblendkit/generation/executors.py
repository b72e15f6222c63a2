"""Run the chunks that are not done yet: in this process, a local process pool, or on Dask.

One entry point, :func:`run_chunks`, over :mod:`~deblendkit.generation.local_pool`
and :mod:`~deblendkit.generation.dask_executor`. Every chunk goes to a checksummed
chunk file (:mod:`~deblendkit.generation.chunk_store`), written by the worker that
simulated it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from deblendkit.config import SimConfig
from deblendkit.generation.chunk_store import ChunkInfo, ChunkStore
from deblendkit.generation.dask_executor import run_dask
from deblendkit.generation.local_pool import run_local

__all__ = ["run_chunks"]


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
        run_dask(client, store, config, seed=seed, split=split, bounds=bounds, finish=finish)
    else:
        run_local(store, config, seed=seed, split=split, bounds=bounds, n_jobs=int(n_jobs), finish=finish)
    return done
