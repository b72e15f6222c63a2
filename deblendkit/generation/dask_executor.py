"""Run chunks on a Dask cluster (:mod:`dask.distributed`): a remote one, or a local one we start.

Workers write the chunk files and only a small
:class:`~deblendkit.generation.chunk_store.ChunkInfo` travels back, so the work
directory must be on a filesystem that the workers and this process share (NFS,
Lustre, a local disk for a :class:`~distributed.LocalCluster`); a chunk a worker
wrote that is not visible here is an error that says so.

``distributed`` is imported inside the functions that need it: it is an
optional, heavy dependency (about a second to import), needed only with
``--scheduler``.

A local cluster's worker processes do not outlive this process, however it
dies (SIGKILL included): in a :class:`~distributed.LocalCluster` the nannies
run in this process, each worker process is *spawned* (so it inherits none of
our signal handlers) and holds the read end of a pipe whose write end only this
process has; a thread in the worker calls ``os._exit`` as soon as that pipe
closes (``distributed.process.AsyncProcess._immediate_exit_when_closed``), which
the kernel does when this process dies. Measured and tested in
``tests/generation/test_no_orphans.py``.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError, DataFileError, DeblendKitError
from deblendkit.generation.chunk_store import ChunkInfo, ChunkStore, chunk_failure, simulate_to_store

__all__ = ["is_dask_client", "dask_client", "run_dask"]

log = logging.getLogger(__name__)


def is_dask_client(obj: Any) -> bool:
    """Whether ``obj`` is a :class:`distributed.Client` (without importing distributed)."""
    return type(obj).__name__ == "Client" and type(obj).__module__.startswith("distributed")


def run_dask(client: Any, store: ChunkStore, config: SimConfig, *, seed: int, split: str,
             bounds: Sequence[tuple[int, int]], finish: Callable[[ChunkInfo], None]) -> None:
    """Simulate the chunks ``bounds`` on the workers of ``client``, which write into ``store``.

    ``finish`` is called with each chunk's :class:`ChunkInfo` as it completes (any order).

    Raises
    ------
    DeblendKitError
        A chunk failed (a worker died, a lost connection, ...): the completed chunks are kept.
    DataFileError
        A chunk a worker wrote is not visible here.
    """
    from distributed import as_completed  # optional heavy dependency (see the module docstring)

    n = len(bounds)
    futures = client.map(
        simulate_to_store, [store] * n, [config] * n, [seed] * n, [split] * n,
        [a for a, _ in bounds], [b for _, b in bounds],
        pure=False, key=[f"deblendkit-{split}-{a}-{b}-{os.urandom(4).hex()}" for a, b in bounds],
    )
    where = {f.key: (a, b) for f, (a, b) in zip(futures, bounds)}
    n_done = 0
    try:
        for fut in as_completed(futures):
            try:
                info = fut.result()
            except DeblendKitError:
                raise
            except Exception as exc:  # a worker died (KilledWorker), lost connection, ...
                raise chunk_failure(split, where[fut.key], "on a Dask worker", exc, store, n_done) from exc
            _check_visible(store, info)
            n_done += 1
            finish(info)
    except BaseException:
        client.cancel(futures)
        raise


def _check_visible(store: ChunkStore, info: ChunkInfo) -> None:
    if not store.checksum_path(info.start, info.stop).exists():
        path = store.chunk_path(info.start, info.stop)
        raise DataFileError(
            f"worker {info.host} wrote {path}, but it is not visible here: the output "
            "directory (or --work-dir) must be on a filesystem shared by the Dask "
            "workers and this process", value=str(path),
        )


def _local_workers(scheduler: str, n_workers: int | None) -> int:
    """The worker count of ``"local"`` (``n_workers``, default the CPU count) or ``"local:N"``."""
    if scheduler.startswith("local:"):
        text = scheduler.split(":", 1)[1]
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"scheduler 'local:N' needs an integer N >= 1, got {scheduler!r}",
                              value=scheduler, allowed="local:N with N >= 1")
        return int(text)
    return int(n_workers or os.cpu_count() or 1)


@contextlib.contextmanager
def _local_client(n: int) -> Iterator[Any]:
    from distributed import Client, LocalCluster  # optional heavy dependency (see the module docstring)

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
            f"'tcp://host:8786', got {scheduler!r}", value=scheduler,
            allowed=("local", "local:N", "tcp://host:port"),
        )
    scheduler = scheduler.strip()
    if scheduler == "local" or scheduler.startswith("local:"):
        with _local_client(_local_workers(scheduler, n_workers)) as client:
            yield client
        return
    from distributed import Client  # optional heavy dependency (see the module docstring)

    try:
        client = Client(scheduler, timeout=f"{float(timeout_s)}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"cannot connect to the Dask scheduler at {scheduler!r}: {exc}",
                          value=scheduler) from exc
    try:
        yield client
    finally:
        client.close()
