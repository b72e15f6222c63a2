#!/usr/bin/env python
"""``ramp-test --save-output`` for the ramp-board worker, with every ``fit`` and ``predict`` in the sandbox.

The ``venv`` worker of ``ramp_compat.py`` runs this script with the kit's
Python instead of ``ramp-test``::

    .venv/bin/python rampboard/sandboxed_ramp_test.py --submission NAME --ramp-kit-dir KIT \\
        --ramp-data-dir DATA --ramp-submission-dir SUBMISSIONS [--limits JSON] [--pass-env NAME ...]

It is rampwf's own ``ramp-test`` (``rampwf.utils.testing.assert_submission``:
same folds, score types, bagging and ``training_output`` files, which
ramp-board reads), run here, outside the sandbox, where the labels are, with
the problem's workflow replaced by :class:`SandboxedWorkflow`. For each CV
fold that workflow writes, in a private scratch folder,

* ``fold_train.h5``: the fold's *training* blends with their isolated images
  (the validation blends' labels are not in it: ramp-board's public board is
  the CV validation score);
* ``predict_inputs.h5``: the blends of the fold to predict (validation blends
  and the training subsample of the "train" score), without labels;
* ``test_inputs.h5`` (once): the test blends without labels;

and runs ``fold_driver.py`` in the kit's sandbox
(:func:`deblendkit.ramp.sandbox.run_command_in_sandbox`: bubblewrap, its own
PID/network/IPC namespaces, read-only binds of the system, the kit's venv and
package, a clean copy of the submission's own folder and these three files,
nothing else of the deployment: not the labels, the other submissions, the
database or its config; ``nobody``, rlimits, a wall-clock kill). The
predictions come back on a pipe, are checked against the workflow's contract
*here*, and rampwf scores them here against labels the sandbox never saw. A
submission cannot write its scores (its folder is read-only inside; the
``training_output`` written here is not in the copy it sees).

When the sandbox cannot start, the script stops with the ``SandboxError``
("the hosted sandbox needs `bwrap` ...") and exit status 1 before running
anything: the submission ends in ``training_error``, never unsandboxed.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from rampwf.utils import testing

from deblendkit.errors import DeblendKitError, SubmissionError
from deblendkit.ramp.sandbox import (
    INSIDE_DATA,
    INSIDE_SUBMISSION,
    SandboxLimits,
    check_sandbox,
    run_command_in_sandbox,
)
from deblendkit.ramp.workflow import n_train_score, train_score_rows
from deblendkit.storage import INPUT_DATASETS
from deblendkit.storage.attrs import store_attr

log = logging.getLogger("rampboard.sandboxed_ramp_test")

HERE = Path(__file__).resolve().parent
FOLD_DRIVER = HERE / "fold_driver.py"
TIMES_MARKER = "DEBLEND_SANDBOX_TIMES "
#: Environment variables always passed into the sandbox when set (the workflow's time budget).
ALWAYS_PASSED = ("DEBLEND_TIME_BUDGET_S",)


def write_blends(path: Path, X, y=None) -> Path:
    """Write the blends of BlendSet ``X`` (and isolated images ``y`` if given) as an HDF5 file readable by nobody.

    Datasets :data:`~deblendkit.storage.INPUT_DATASETS` (+ ``isolated``), attributes ``bands`` and
    ``pixel_scale``: what ``fold_driver.py`` reads; mode 0644.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with h5py.File(tmp, "w") as f:
        for name in INPUT_DATASETS:
            f.create_dataset(name, data=np.asarray(getattr(X, name)))
        if y is not None:
            f.create_dataset("isolated", data=np.asarray(y, dtype=np.float32))
        store_attr(f.attrs, "bands", json.dumps(list(X.bands)))
        f.attrs["pixel_scale"] = float(X.pixel_scale)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


@dataclass
class _Trained:
    """What the sandbox returned for one fold: predictions of ``rows`` of the training set and of the test set."""

    name: str
    rows: np.ndarray
    rows_pred: np.ndarray
    test_pred: np.ndarray
    times: dict


class _Given:
    """A 'model' whose predict returns the sandbox's predictions, so the workflow checks them here."""

    def __init__(self, name: str, pred: np.ndarray):
        self._deblendkit_name = name
        self._pred = pred

    def predict(self, X):
        return self._pred


class SandboxedWorkflow:
    """rampwf workflow: the problem's workflow with ``fit`` and ``predict`` run in the sandbox (module doc).

    Parameters
    ----------
    inner : DeblenderWorkflow
        The problem's workflow (its contract checks run here, on what the sandbox returns).
    X_test : BlendSet
        The test blends (written once without labels).
    scratch : Path
        Private folder for the per-fold files (removed by the caller).
    limits : SandboxLimits
    env : dict
        Environment variables of the submission inside the sandbox.
    """

    def __init__(self, inner, *, X_test, scratch: Path, limits: SandboxLimits, env: dict[str, str]):
        self.inner = inner
        self.element_names = inner.element_names
        self.scratch = Path(scratch)
        self.limits = limits
        self.env = dict(env)
        self.n_test = len(X_test)
        self.test_inputs = write_blends(self.scratch / "test_inputs.h5", X_test)
        self.times: list[dict] = []
        self._copies: dict[str, Path] = {}

    def _clean_copy(self, module_path: str) -> Path:
        """The submission's folder without ``training_output`` (written here during the run, with test truth)."""
        if module_path not in self._copies:
            dst = self.scratch / "submission"
            shutil.copytree(module_path, dst, ignore=shutil.ignore_patterns("training_output", "__pycache__"))
            for p in [dst, *dst.rglob("*")]:
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
            self._copies[module_path] = dst
        return self._copies[module_path]

    def train_submission(self, module_path, X, y, train_is=None):
        """Fit in the sandbox on ``X[train_is]``, predict the fold's rows and the test set there; keep them."""
        name = os.path.basename(os.path.normpath(module_path))
        n = len(X)
        train_is = np.arange(n) if train_is is None else np.asarray(train_is)
        valid_is = np.setdiff1d(np.arange(n), train_is)  # the kit's CV is a K-fold: validation = the rest
        rows = train_score_rows(train_is, valid_is, n_train_score())
        fold_train = write_blends(self.scratch / "fold_train.h5", X[train_is],
                                  y.subset(train_is) if hasattr(y, "subset") else np.asarray(y)[train_is])
        predict_inputs = write_blends(self.scratch / "predict_inputs.h5", X[rows])
        shape = (len(rows) + self.n_test, X.max_galaxies, X.n_bands, X.stamp_size, X.stamp_size)
        argv = [sys.executable, f"{INSIDE_DATA}/fold_driver.py", INSIDE_SUBMISSION, f"{INSIDE_DATA}/fold_train.h5",
                f"{INSIDE_DATA}/predict_inputs.h5", f"{INSIDE_DATA}/test_inputs.h5"]
        data = {"fold_driver.py": str(FOLD_DRIVER), "fold_train.h5": str(fold_train),
                "predict_inputs.h5": str(predict_inputs), "test_inputs.h5": str(self.test_inputs)}
        try:
            pred, tail = run_command_in_sandbox(name, argv, submission_dir=self._clean_copy(module_path),
                                                data_files=data, expected_shape=shape, limits=self.limits,
                                                env=self.env)
        except SubmissionError as exc:
            log.error("%s", exc)
            raise
        finally:
            fold_train.unlink(missing_ok=True)
            predict_inputs.unlink(missing_ok=True)
        times = _times_from(tail)
        self.times.append(times)
        return _Trained(name=name, rows=rows, rows_pred=pred[:len(rows)], test_pred=pred[len(rows):], times=times)

    def test_submission(self, trained_model, X, fold=None):
        """The sandbox's predictions of ``X`` (training set of a fold: NaN rows where not predicted), checked here."""
        if fold is None:
            if len(X) != self.n_test:
                raise SubmissionError(f"the sandboxed workflow predicts the test set ({self.n_test} blends) or a "
                                      f"CV fold; got {len(X)} blends without a fold")
            return self.inner.predict(_Given(trained_model.name, trained_model.test_pred), X)
        rows = trained_model.rows
        part = self.inner.predict(_Given(trained_model.name, trained_model.rows_pred), X[rows])
        if len(rows) == len(X):
            return part
        out = np.full((len(X),) + part.shape[1:], np.nan, dtype=np.float32)
        out[rows] = part
        return out


def _times_from(tail: str) -> dict:
    for line in reversed(tail.strip().splitlines()):
        if line.startswith(TIMES_MARKER):
            try:
                times = json.loads(line[len(TIMES_MARKER):])
                return {"fit": float(times["fit"]), "predict": [float(t) for t in times["predict"]]}
            except (ValueError, KeyError, TypeError):
                break
    return {}


def _patch_problem(workflow_factory):
    """Make rampwf's ``assert_read_problem`` return the problem with the sandboxed workflow."""
    original = testing.assert_read_problem

    def read_problem(ramp_kit_dir="."):
        problem = original(ramp_kit_dir)
        problem.workflow = workflow_factory(problem)
        return problem

    testing.assert_read_problem = read_problem
    return original


def write_times(training_output: Path, times: list[dict]) -> None:
    """Per fold, ``train_time`` = fit and ``valid_time`` / ``test_time`` = the two predicts as measured in the sandbox.

    rampwf measured the whole sandbox run as training time; ramp-board reads these files
    (``set_time``) and shows them. (A submission could lie about them: they are times, not scores.)
    """
    for i, t in enumerate(times):
        if not t:
            continue
        fold = training_output / f"fold_{i}"
        values = {"train": t["fit"], "valid": t["predict"][0], "test": t["predict"][1]}
        for step, value in values.items():
            (fold / f"{step}_time").write_text(str(value))
        scores = fold / "scores.csv"
        if scores.is_file():
            df = pd.read_csv(scores, index_col=0)
            if "time" in df.columns:
                df["time"] = [values.get(step, np.nan) for step in df.index]
                df.to_csv(scores)


def limits_from(text: str | None, timeout: int | None) -> SandboxLimits:
    """SandboxLimits from a JSON object of its fields (``wall_seconds`` defaults to ``timeout``)."""
    given = json.loads(text) if text else {}
    known = {f.name for f in fields(SandboxLimits)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise SubmissionError(f"unknown sandbox limits {unknown}; expected some of {sorted(known)}")
    if timeout is not None:
        given.setdefault("wall_seconds", int(timeout))
    return SandboxLimits(**given)


def run(args) -> int:
    """Check the sandbox, then rampwf's ramp-test with the sandboxed workflow; returns the exit status."""
    check_sandbox()
    limits = limits_from(args.limits, args.timeout)
    env = {k: os.environ[k] for k in (*args.pass_env, *ALWAYS_PASSED) if k in os.environ}
    scratch = Path(tempfile.mkdtemp(prefix="rampboard-sandbox-"))
    os.chmod(scratch, 0o700)
    made: list[SandboxedWorkflow] = []

    def factory(problem):
        if not made:
            X_test, _ = problem.get_test_data(path=args.ramp_data_dir)
            made.append(SandboxedWorkflow(problem.workflow, X_test=X_test, scratch=scratch, limits=limits, env=env))
        return made[0]

    original = _patch_problem(factory)
    try:
        testing.assert_submission(ramp_kit_dir=args.ramp_kit_dir, ramp_data_dir=args.ramp_data_dir,
                                  ramp_submission_dir=args.ramp_submission_dir, submission=args.submission,
                                  save_output=True)
    finally:
        testing.assert_read_problem = original
        shutil.rmtree(scratch, ignore_errors=True)
    write_times(Path(args.ramp_submission_dir) / args.submission / "training_output", made[0].times)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sandboxed_ramp_test.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--submission", required=True)
    p.add_argument("--ramp-kit-dir", default=".")
    p.add_argument("--ramp-data-dir", default=".")
    p.add_argument("--ramp-submission-dir", default="submissions")
    p.add_argument("--save-output", action="store_true", help="accepted for ramp-test's command line (always on)")
    p.add_argument("--ignore-warning", action="store_true", help="silence warnings, as ramp-test's option")
    p.add_argument("--limits", help="JSON object of SandboxLimits fields (memory_bytes, cpu_seconds, ...)")
    p.add_argument("--timeout", type=int, help="wall-clock seconds per fold in the sandbox (default: limits')")
    p.add_argument("--pass-env", action="append", default=[], metavar="NAME",
                   help="environment variable passed into the sandbox (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if args.ignore_warning:
        warnings.simplefilter("ignore")
    try:
        return run(args)
    except DeblendKitError as exc:  # SandboxError: nothing was run
        print(f"Traceback (sandboxed ramp-test)\n{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
