"""Child processes that do not outlive their parent: the parent-death signal, or a watchdog.

For every process tree the kit starts (the generation pool's workers, and for
any other user: a subprocess's ``preexec_fn``): when the parent dies, by any
signal, SIGKILL included, its children must not be left running, re-parented
to PID 1.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_WATCHDOG_PERIOD_S = 1.0


def die_with_parent(parent_pid: int) -> str:
    """Make this process end when ``parent_pid``, its parent, ends; return how (``"prctl"`` or ``"watchdog"``).

    Parameters
    ----------
    parent_pid : int
        The process id of the parent that started this process (passed by it).

    On Linux the kernel sends SIGKILL to this process when its parent dies
    (``prctl(PR_SET_PDEATHSIG, SIGKILL)``). SIGKILL rather than SIGTERM: it
    cannot be caught or ignored by any library the child runs, and the kit's
    writers lose nothing by it (a file appears whole, by a rename, or not at
    all; the next run removes the temporary file).

    The death signal is tied to the parent *thread* that started this
    process, not to the whole parent process: start the child from a thread
    that lives as long as the child should (the generation pool's workers are
    started by the thread that holds the pool open). It is kept across
    ``execve``, so it also works for a subprocess:
    ``pid = os.getpid(); Popen(cmd, preexec_fn=lambda: die_with_parent(pid))``.

    The parent may have died before the request was made (then the signal is
    never sent), so this checks afterwards that the parent is still
    ``parent_pid`` and exits at once (status 1) if not. Elsewhere than Linux a
    daemon thread polls the parent's process id every second.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = sys.platform.startswith("linux") and libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc or no prctl
        ok = False
    if os.getppid() != parent_pid:  # the parent is already gone: we were re-parented
        os._exit(1)
    if ok:
        return "prctl"
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="deblendkit-parent-watchdog",
                     daemon=True).start()  # pragma: no cover - not Linux
    return "watchdog"  # pragma: no cover - not Linux


def _watch_parent(parent_pid: int) -> None:  # pragma: no cover - not Linux
    while os.getppid() == parent_pid:
        time.sleep(_WATCHDOG_PERIOD_S)
    os._exit(1)
