"""A stop request for a running :func:`~deblendkit.generation.split.generate_split`, set by a signal.

A KeyboardInterrupt raised by a signal handler itself can be lost when the
signal lands inside a destructor or a weak-reference callback (Python then only
prints "Exception ignored ..."), so the handler only sets a flag, and
``generate_split`` checks it after every chunk (a second or less) and raises
KeyboardInterrupt there.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence

__all__ = ["StopSignal"]


class StopSignal:
    """A flag that a signal handler sets and a chunk loop checks.

    Create one per command (``prepare_data.py`` does), install it with
    :meth:`installed` and pass it to ``generate_split(..., stop=...)``.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()

    @property
    def requested(self) -> bool:
        """Whether a stop was requested."""
        return self._stop.is_set()

    def request(self) -> bool:
        """Ask the running loop to stop at its next chunk; return whether a loop is running to see it."""
        self._stop.set()
        return self._running.is_set()

    def clear(self) -> None:
        """Forget an earlier :meth:`request`."""
        self._stop.clear()

    def check(self) -> None:
        """Raise KeyboardInterrupt if a stop was requested (called after every chunk)."""
        if self._stop.is_set():
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Mark a loop that calls :meth:`check` as running (a request is then seen at the next chunk)."""
        self._running.set()
        try:
            yield
        finally:
            self._running.clear()

    def handle(self, signum: int, frame: object) -> None:
        """Signal handler: stop the running loop at its next chunk, or raise KeyboardInterrupt if none runs.

        Once only: the signal is ignored afterwards, so that a second one cannot
        interrupt the clean-up.
        """
        signal.signal(signum, signal.SIG_IGN)
        if not self.request():
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self, signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopSignal]:
        """Install :meth:`handle` for ``signums`` (where this thread can), restore the old handlers on exit."""
        previous = {}
        for signum in signums:
            try:
                previous[signum] = signal.signal(signum, self.handle)
            except ValueError:  # not the main thread
                pass
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
