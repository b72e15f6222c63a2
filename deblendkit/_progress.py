"""Progress that suits where it goes: a tqdm bar on a terminal, a few log lines elsewhere.

tqdm redraws its bar on every refresh; in a log that is not a terminal (CI, a
batch job, the ramp-board worker log) each redraw is kept, so a run leaves
dozens of updates per bar on one line. :func:`progress` gives a tqdm bar when
the stream is a terminal and otherwise a :class:`LogProgress`, which logs one
line per ``100 / steps`` percent (10 lines by default) through :mod:`logging`.
"""
from __future__ import annotations

import logging
import sys
from typing import IO, Any

from tqdm import tqdm
from tqdm.auto import tqdm as auto_tqdm

__all__ = ["LogProgress", "progress", "is_terminal"]

log = logging.getLogger(__name__)


def is_terminal(stream: IO | None) -> bool:
    """Whether ``stream`` is an interactive terminal (False for None, files, pipes, closed streams)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class LogProgress:
    """Progress as log lines: one each time another ``100 / steps`` percent of ``total`` is done.

    Parameters
    ----------
    total : int
        Units of work in all (>= 0).
    desc : str
        What is progressing (the start of each line).
    unit : str
        Name of a unit, e.g. ``"blend"`` (an ``s`` is added).
    steps : int
        Lines for the whole run (at most; one more when it starts part done).
    logger : logging.Logger, optional
        Where the lines go (default this module's logger), at INFO level.
    """

    def __init__(self, total: int, *, desc: str = "", unit: str = "it", steps: int = 10,
                 logger: logging.Logger | None = None) -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.unit = unit
        self.steps = max(int(steps), 1)
        self.n = 0
        self._logged_step = 0
        self._log = logger or log

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done; log a line if that crossed a step."""
        self.n += int(n)
        if self.total == 0:
            return
        step = min(self.n, self.total) * self.steps // self.total
        if step > self._logged_step:
            self._logged_step = step
            self._log.info("%s: %3d%% (%d of %d %ss)", self.desc, 100 * min(self.n, self.total) // self.total,
                           self.n, self.total, self.unit)

    def close(self) -> None:
        """Nothing to tidy (the lines are already written)."""

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int, *, desc: str = "", unit: str = "it", enabled: bool = True,
             stream: IO | None = None, steps: int = 10, logger: logging.Logger | None = None) -> Any:
    """A progress counter with ``update(n)`` and ``close()``.

    Parameters
    ----------
    total, desc, unit : as :class:`LogProgress` (and tqdm).
    enabled : False gives a counter that shows nothing.
    stream : where a bar would be drawn (default ``sys.stderr``): a terminal
        gets a tqdm bar (cleared when closed), a Jupyter kernel its widget bar
        (``tqdm.auto``), anything else :class:`LogProgress`.
    steps, logger : as :class:`LogProgress`.
    """
    if not enabled:
        return _NoProgress()
    if stream is None and "ipykernel" in sys.modules:  # a notebook: tqdm's widget
        return auto_tqdm(total=total, desc=desc, unit=unit, leave=False)
    stream = sys.stderr if stream is None else stream
    if is_terminal(stream):
        return tqdm(total=total, desc=desc, unit=unit, leave=False, file=stream)
    return LogProgress(total, desc=desc, unit=unit, steps=steps, logger=logger)
