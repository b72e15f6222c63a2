"""Run chunks in this process or in a local process pool whose workers never outlive it.

Worker processes (see :func:`init_worker`):

- die with their parent, however it dies (SIGKILL included): on Linux the
  worker asks the kernel for ``SIGKILL`` when its parent goes
  (``prctl(PR_SET_PDEATHSIG)``); elsewhere a watchdog thread polls the
  parent's process id (:func:`deblendkit._process.die_with_parent`, which says
  why SIGKILL and why the parent check). The death signal is tied to the
  parent *thread* that started the worker: here the thread running
  :func:`run_local`, which holds the pool open until every worker has ended,
  so it fires only when the parent process dies;
- end on SIGTERM and SIGINT, idle or busy: a forked worker inherits the
  parent's Python signal handlers (the CLI's stop flag, which is for the
  parent's chunk loop), so the initialiser puts the default actions back;
- are forked, unless torch or JAX is already imported in this process: their
  thread pools may hold locks at the moment of a fork, and a forked child that
  needs such a lock waits for ever, so the pool then uses ``spawn`` (fresh
  interpreters; the chunks are the same pure function, so the same bytes).
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import InvalidStateError, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from deblendkit._process import die_with_parent
from deblendkit.config import SimConfig
from deblendkit.generation.chunk_store import ChunkInfo, ChunkStore, chunk_failure, simulate_to_store

__all__ = ["CHUNKS_PER_WORKER", "THREADED_MODULES", "start_method", "init_worker", "run_local"]

CHUNKS_PER_WORKER = 128
"""Chunks per worker before the pool is replaced by a fresh one (2,048 blends at 16 per chunk).

A worker's memory crept up over a long run (~180 -> 250 MB over 50,000 blends in
``prepare_data.py --n-train 100000``: allocator fragmentation and library caches);
fresh workers every window keep it at its level after the first chunks, at the cost
of one pool start (a fork: milliseconds) and one short wait for the window's last
chunk per window. Only the chunks of one window are queued at a time, so the parent
holds their futures, not a future per chunk of the whole run."""

THREADED_MODULES = ("torch", "jax")
"""Modules that start threads when imported: with one of them loaded the pool does not fork."""


def start_method(modules: Sequence[str] | None = None) -> str:
    """``"fork"`` where it is safe and available, else ``"spawn"``.

    Parameters
    ----------
    modules : names of the modules imported in this process (default ``sys.modules``).

    ``spawn`` rather than ``forkserver``: a spawned worker is a child of this
    process, so its parent-death signal and the parent check of
    :func:`deblendkit._process.die_with_parent` are about this process; a
    forkserver's workers are children of the server.
    """
    loaded = sys.modules if modules is None else modules
    if any(name in loaded for name in THREADED_MODULES):
        return "spawn"
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def init_worker(parent_pid: int) -> None:
    """Initialiser of a pool worker: default SIGTERM/SIGINT actions, and die with ``parent_pid``."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    die_with_parent(parent_pid)


@contextlib.contextmanager
def _ignore_cancelled_future_race() -> Iterator[None]:
    """Silence CPython's gh-107219 (fixed in 3.12) while a pool runs.

    When the pool breaks (its workers ended by the signal that also stopped
    this process) after futures were cancelled, the pool's manager thread
    tries to fail those cancelled futures too, and prints that thread's
    ``InvalidStateError`` traceback. Only that error from that thread is
    dropped; the hook is restored afterwards.
    """
    if sys.version_info >= (3, 12):
        yield
        return
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (args.exc_type is InvalidStateError and type(args.thread).__name__ == "_ExecutorManagerThread"):
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def run_local(store: ChunkStore, config: SimConfig, *, seed: int, split: str,
              bounds: Sequence[tuple[int, int]], n_jobs: int,
              finish: Callable[[ChunkInfo], None]) -> None:
    """Simulate the chunks ``bounds`` into ``store``, here (``n_jobs`` 1 or one chunk) or in a pool.

    ``finish`` is called with each chunk's :class:`ChunkInfo` as it completes (any order).

    Raises
    ------
    DeblendKitError
        A worker process died (wrapped with a message saying the completed chunks are kept).
    """
    if n_jobs == 1 or len(bounds) == 1:
        for a, b in bounds:
            finish(simulate_to_store(store, config, seed, split, a, b))
        return
    n_done = 0
    context = multiprocessing.get_context(start_method())
    window = int(n_jobs) * CHUNKS_PER_WORKER
    for first in range(0, len(bounds), window):  # a fresh pool per window: see CHUNKS_PER_WORKER
        n_done = _run_pool(store, config, seed=seed, split=split, bounds=bounds[first:first + window],
                           n_jobs=int(n_jobs), context=context, finish=finish, n_done=n_done)


def _run_pool(store: ChunkStore, config: SimConfig, *, seed: int, split: str,
              bounds: Sequence[tuple[int, int]], n_jobs: int, context, finish: Callable[[ChunkInfo], None],
              n_done: int) -> int:
    """Run ``bounds`` in one pool of ``n_jobs`` workers; return ``n_done`` plus the chunks finished."""
    with _ignore_cancelled_future_race(), ProcessPoolExecutor(
            max_workers=n_jobs, mp_context=context, initializer=init_worker, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(simulate_to_store, store, config, seed, split, a, b): (a, b)
                   for a, b in bounds}
        try:
            for fut in as_completed(futures):
                try:
                    info = fut.result()
                except (BrokenProcessPool, OSError, MemoryError) as exc:
                    raise chunk_failure(split, futures[fut], "in a worker process", exc, store, n_done) from exc
                n_done += 1
                finish(info)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return n_done
