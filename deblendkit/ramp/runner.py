"""Run many submissions; one that fails does not stop (or change) the others.

Each submission runs on its own and ends with a :class:`RunResult`: ``ok``
with its scores, or ``failed`` / ``timeout`` with one message (which
submission, which step, what was expected -- the
:class:`~deblendkit.errors.SubmissionError` of the workflow when there is
one). Two modes:

``subprocess`` (default, what a leaderboard should use)
    ``ramp-test --submission NAME --save-output`` in a child process of its
    own (its own process group), with an optional wall-clock ``timeout_s``
    after which the whole group is killed. Nothing a submission does -- a
    crash of the interpreter, ``os._exit``, exhausting memory, a hang in
    compiled code -- reaches the other submissions. Scores are the mean over
    CV folds of the ``test`` row of rampwf's ``training_output/fold_*/scores.csv``.
``inprocess`` (quick, for tests and small kits)
    The problem's workflow in this process: fit on the whole training set,
    predict the test set, score. Exceptions (also ``SystemExit``) are caught
    per submission; a crash of the interpreter is not.

``time_budget_s`` sets ``DEBLEND_TIME_BUDGET_S`` (seconds per step, see
:mod:`deblendkit.ramp.workflow`) for the submissions in both modes.

Command line::

    deblend-run [--mode subprocess|inprocess] [--quick-test]        (python -m deblendkit.cli.run)
        [--timeout S] [--time-budget S] [--json status.json] [NAME ...]

exits 0 when every submission is ok, 1 when some failed (all are run). On a
hosted leaderboard, ``deblend-run --hosted LAYOUT`` runs each submission in
the sandbox instead (:mod:`deblendkit.ramp.hosted`).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from rampwf.utils.importing import import_module_from_source

from deblendkit._process import die_with_parent
from deblendkit.errors import ConfigError, DeblendKitError

__all__ = ["RunResult", "run_submissions", "run_inprocess", "run_subprocess", "list_submissions",
           "format_results", "MODES"]

log = logging.getLogger(__name__)

MODES = ("subprocess", "inprocess")
_ERROR_LINE = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*(?P<kind>[A-Z]\w*(?:Error|Exception|Exit|Interrupt))(?::\s*(?P<msg>.*))?$"
)


@dataclass(frozen=True)
class RunResult:
    """Outcome of one submission.

    Attributes
    ----------
    submission : str
        Its name (folder in ``submissions/``).
    status : str
        ``"ok"``, ``"failed"`` or ``"timeout"``.
    message : str
        Empty when ok; else the one-line error the participant sees.
    seconds : float
        Wall time of the run.
    scores : dict
        Score name -> value on the test set (empty unless ok).
    """

    submission: str
    status: str
    message: str
    seconds: float
    scores: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the submission ran and was scored."""
        return self.status == "ok"


def list_submissions(kit_dir: str | os.PathLike = ".") -> list[str]:
    """Names of the folders of ``<kit_dir>/submissions`` that hold a ``deblender.py``."""
    root = os.path.join(os.fspath(kit_dir), "submissions")
    if not os.path.isdir(root):
        return []
    return sorted(
        e.name for e in os.scandir(root)
        if e.is_dir() and os.path.isfile(os.path.join(e.path, "deblender.py"))
    )


@contextlib.contextmanager
def _env(updates: dict[str, str | None]):
    old = {k: os.environ.get(k) for k in updates}
    try:
        for k, v in updates.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _budget_env(time_budget_s: float | None) -> dict[str, str | None]:
    if time_budget_s is None:
        return {}
    if isinstance(time_budget_s, bool) or not isinstance(time_budget_s, (int, float)) or not (
        math.isfinite(time_budget_s) and time_budget_s > 0
    ):
        raise ConfigError(f"time_budget_s must be a positive number of seconds, got {time_budget_s!r}")
    return {"DEBLEND_TIME_BUDGET_S": repr(float(time_budget_s))}


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, DeblendKitError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------
# In-process
# ---------------------------------------------------------------------------
def _load_problem(kit_dir: str):
    path = os.path.join(kit_dir, "problem.py")
    if not os.path.isfile(path):
        raise ConfigError(f"no problem.py in {kit_dir!r}; expected a RAMP kit directory")
    return import_module_from_source(path, "problem")


def run_inprocess(
    names: Sequence[str],
    *,
    kit_dir: str | os.PathLike = ".",
    quick_test: bool = False,
    time_budget_s: float | None = None,
    score_names: Iterable[str] | None = None,
) -> list[RunResult]:
    """Fit each submission on the training set, predict the test set and score it, here.

    Parameters
    ----------
    names : submission names.
    kit_dir : the kit (``problem.py``, ``data/``, ``submissions/``).
    quick_test : use the ``_mini`` data files (sets ``RAMP_TEST_MODE``).
    time_budget_s : seconds per step (``DEBLEND_TIME_BUDGET_S``).
    score_names : score types to compute (default all of ``problem.score_types``).

    Returns
    -------
    list of RunResult, in the order of ``names``.

    Raises
    ------
    ConfigError, DataFileError
        The kit itself cannot be loaded (no submission is run then).
    """
    kit_dir = os.fspath(kit_dir)
    env = {"RAMP_TEST_MODE": "1" if quick_test else None, **_budget_env(time_budget_s)}
    results = []
    with _env(env):
        problem = _load_problem(kit_dir)
        X_train, y_train = problem.get_train_data(kit_dir)
        X_test, y_test = problem.get_test_data(kit_dir)
        wanted = None if score_names is None else set(score_names)
        score_types = [st for st in problem.score_types if wanted is None or st.name in wanted]
        y_true = np.asarray(y_test, dtype=np.float32)  # read once (a LazyRows out of core)
        for name in names:
            t0 = time.perf_counter()
            try:
                model = problem.workflow.train_submission(
                    os.path.join(kit_dir, "submissions", name), X_train, y_train)
                y_pred = problem.workflow.test_submission(model, X_test)
                scores = {st.name: float(st(y_true, y_pred)) for st in score_types}
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - one submission must not stop the others
                if isinstance(exc, SystemExit):
                    message = f"submission {name!r} called exit({exc.code}); expected fit and predict to return"
                else:
                    message = _one_line(exc)
                log.warning("%s failed: %s", name, message)
                results.append(RunResult(name, "failed", message, time.perf_counter() - t0))
                continue
            results.append(RunResult(name, "ok", "", time.perf_counter() - t0, scores))
    return results


# ---------------------------------------------------------------------------
# Subprocess (ramp-test)
# ---------------------------------------------------------------------------
def _ramp_test_command() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "ramp-test")
    if os.path.isfile(exe):
        return [exe]
    found = shutil.which("ramp-test")
    if found:
        return [found]
    return [sys.executable, "-c", "from rampwf.utils.cli.testing import main; main()"]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _error_message(output: str) -> str:
    """The last exception line of a traceback in ``output`` (or its last line), colours stripped."""
    lines = [ln.rstrip() for ln in _ANSI.sub("", output).splitlines() if ln.strip()]
    for ln in reversed(lines):
        m = _ERROR_LINE.match(ln.strip())
        if m:
            kind, msg = m.group("kind"), (m.group("msg") or "").strip()
            if kind in ("SubmissionError", "DataFileError", "ConfigError", "PredictionError",
                        "DeblendKitError", "OutputExistsError"):
                return msg or kind
            return f"{kind}: {msg}" if msg else kind
    return lines[-1] if lines else "no output"


def _read_scores(kit_dir: str, name: str) -> dict[str, float]:
    root = os.path.join(kit_dir, "submissions", name, "training_output")
    frames = []
    if os.path.isdir(root):
        for entry in sorted(os.listdir(root)):
            f = os.path.join(root, entry, "scores.csv")
            if entry.startswith("fold_") and os.path.isfile(f):
                frames.append(pd.read_csv(f, index_col=0))
    if not frames:
        return {}
    test = pd.concat([df.loc[["test"]] if "test" in df.index else df.loc[["valid"]] for df in frames])
    return {str(k): float(v) for k, v in test.mean(numeric_only=True).items() if k != "time"}


def run_subprocess(
    name: str,
    *,
    kit_dir: str | os.PathLike = ".",
    quick_test: bool = False,
    timeout_s: float | None = None,
    time_budget_s: float | None = None,
) -> RunResult:
    """``ramp-test --submission NAME --save-output`` in its own process group.

    Parameters
    ----------
    name : the submission.
    kit_dir : the kit.
    quick_test : pass ``--quick-test`` (the ``_mini`` files).
    timeout_s : wall-clock limit of the whole run; the process group is killed after it.
    time_budget_s : seconds per step (``DEBLEND_TIME_BUDGET_S``).
    """
    kit_dir = os.fspath(kit_dir)
    cmd = _ramp_test_command() + ["--submission", name, "--ramp-kit-dir", ".", "--ramp-data-dir", ".",
                                  "--save-output"]
    if quick_test:
        cmd.append("--quick-test")
    env = dict(os.environ)
    env.update({k: v for k, v in _budget_env(time_budget_s).items() if v is not None})
    env.setdefault("PYTHONUNBUFFERED", "1")
    t0 = time.perf_counter()
    parent = os.getpid()
    # Own session (a timeout kills the whole group); the child dies with this process, SIGKILL included (#21).
    proc = subprocess.Popen(cmd, cwd=kit_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, preexec_fn=lambda: die_with_parent(parent))
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except BaseException as exc:  # Ctrl-C, SIGTERM turned into SystemExit, or the time limit: stop the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if not isinstance(exc, subprocess.TimeoutExpired):
            proc.wait()
            raise
        proc.communicate()
        return RunResult(name, "timeout",
                         f"submission {name!r} ran past the run's time limit of {timeout_s:g} s and was "
                         "stopped; expected ramp-test to finish within it",
                         time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        if proc.returncode < 0:
            message = (f"submission {name!r}: ramp-test was killed by signal "
                       f"{signal.Signals(-proc.returncode).name} (e.g. out of memory); last output: "
                       f"{_error_message(output)}")
        else:
            message = _error_message(output)
        return RunResult(name, "failed", message, seconds)
    return RunResult(name, "ok", "", seconds, _read_scores(kit_dir, name))


def run_submissions(
    names: Sequence[str] | None = None,
    *,
    kit_dir: str | os.PathLike = ".",
    mode: str = "subprocess",
    quick_test: bool = False,
    timeout_s: float | None = None,
    time_budget_s: float | None = None,
    score_names: Iterable[str] | None = None,
) -> list[RunResult]:
    """Run several submissions; each ends ok or with its own message, none stops the others.

    Parameters
    ----------
    names : submissions to run (default every folder of ``submissions/`` with a deblender.py).
    kit_dir : the kit.
    mode : ``"subprocess"`` (ramp-test per submission, isolated) or ``"inprocess"``.
    quick_test : the ``_mini`` data files.
    timeout_s : wall-clock limit per submission (subprocess mode).
    time_budget_s : seconds per step (both modes).
    score_names : in-process mode: the score types to compute (default all).

    Returns
    -------
    list of RunResult, in the order of ``names``.
    """
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if timeout_s is not None and not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ConfigError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    names = list(names) if names is not None else list_submissions(kit_dir)
    if not names:
        raise ConfigError(f"no submissions to run in {os.path.join(os.fspath(kit_dir), 'submissions')}")
    if mode == "inprocess":
        return run_inprocess(names, kit_dir=kit_dir, quick_test=quick_test, time_budget_s=time_budget_s,
                             score_names=score_names)
    results = []
    for name in names:
        r = run_subprocess(name, kit_dir=kit_dir, quick_test=quick_test, timeout_s=timeout_s,
                           time_budget_s=time_budget_s)
        if not r.ok:
            log.warning("%s %s: %s", name, r.status, r.message)
        results.append(r)
    return results


def format_results(results: Sequence[RunResult], *, score: str = "deblend") -> str:
    """A text table: submission, status, seconds, the ``score``, message."""
    width = max([len("submission")] + [len(r.submission) for r in results])
    lines = [f"{'submission':<{width}}  {'status':<8} {'seconds':>8} {score:>8}  message"]
    for r in results:
        value = r.scores.get(score)
        shown = f"{value:8.4f}" if isinstance(value, float) and math.isfinite(value) else f"{'-':>8}"
        lines.append(f"{r.submission:<{width}}  {r.status:<8} {r.seconds:8.1f} {shown}  {r.message}")
    n_ok = sum(r.ok for r in results)
    lines.append(f"{n_ok} of {len(results)} submissions ok")
    return "\n".join(lines)
