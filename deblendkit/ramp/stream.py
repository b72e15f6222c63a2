"""Fit a submission and score it out of core: the RAMP side of :mod:`deblendkit.scoring.out_of_core`.

:func:`score_submission` fits a submission on a training file given as a
file-backed ``X`` (:class:`~deblendkit.deblend.blendset.BlendSet`) and lazy ``y``
(:class:`~deblendkit.storage.lazy.LazyRows`), then predicts the data file batch
by batch, each batch checked by :class:`~deblendkit.ramp.workflow.DeblenderWorkflow`
(shape, dtype, finite, flux, time budget) before
:func:`~deblendkit.scoring.out_of_core.score_file` scores it. The command line
is ``python -m deblendkit.cli.score --submission NAME --data data/test.h5``.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Collection
from typing import Any

from deblendkit.ramp.problem import load_lazy
from deblendkit.ramp.workflow import DeblenderWorkflow
from deblendkit.scoring.out_of_core import DEFAULT_BATCH_SIZE, StreamResult, score_file

__all__ = ["score_submission"]


def score_submission(
    submission: str | os.PathLike,
    data_path: str | os.PathLike,
    *,
    train_path: str | os.PathLike | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    metrics: Collection[str] | None = None,
    with_truth: bool = False,
    workflow: Any = None,
    max_blends: int | None = None,
) -> StreamResult:
    """Fit a submission on a training file and score it on ``data_path``, out of core.

    Parameters
    ----------
    submission : path
        Folder of the submission (``submissions/NAME``).
    data_path : path
        The data file to score on (e.g. ``data/test.h5``).
    train_path : path, optional
        The training file (default ``train.h5`` beside ``data_path``);
        ``fit`` gets it as a file-backed BlendSet and a lazy ``y``
        (:class:`~deblendkit.storage.lazy.LazyRows`).
    batch_size, metrics, with_truth, max_blends
        As :func:`~deblendkit.scoring.out_of_core.score_file`.
    workflow : DeblenderWorkflow, optional
        The workflow that runs the submission (default one).

    Returns
    -------
    StreamResult
        With ``fit_seconds`` and ``predict_seconds`` set.

    Raises
    ------
    SubmissionError
        The submission failed in a step or broke the contract.
    DataFileError
        A data file is missing or corrupt.
    """
    wf = workflow if workflow is not None else DeblenderWorkflow()
    if train_path is None:
        train_path = os.path.join(os.path.dirname(os.path.abspath(data_path)), "train.h5")
    X_train, y_train = load_lazy(os.fspath(train_path))
    t0 = time.perf_counter()
    model = wf.train_submission(os.fspath(submission), X_train, y_train)
    fit_seconds = time.perf_counter() - t0
    X_train.close()
    predict_seconds = [0.0]

    def predict(Xb):
        t = time.perf_counter()
        out = wf.predict(model, Xb)
        predict_seconds[0] += time.perf_counter() - t
        return out

    result = score_file(data_path, predict, batch_size=batch_size, metrics=metrics, with_truth=with_truth,
                        max_blends=max_blends)
    return dataclasses.replace(result, fit_seconds=fit_seconds, predict_seconds=predict_seconds[0])
