"""What runs inside the sandbox for one CV fold of the ramp-board worker (see ``sandboxed_ramp_test.py``).

``python fold_driver.py SUBMISSION_DIR FOLD_TRAIN_FILE INPUTS_FILE [INPUTS_FILE ...]``
fits the submission's ``Deblender`` on the fold's training file (the fold's
training blends and their isolated images, nothing else) and predicts the
blends of each inputs-only file (no labels in them), then writes the
predictions of all of them, concatenated along the first axis, as one
``.npy`` stream on the original standard output, which the caller reads. The
submission's own prints go to standard error; the last line there is
``DEBLEND_SANDBOX_TIMES {"fit": s, "predict": [s, ...]}`` (seconds, as
measured in here: shown as train/valid/test times, never used for scores).

This file is bound read-only into the sandbox by the caller; it imports only
the kit's package and the scientific stack that are bound there too.
"""
from __future__ import annotations

import io
import json
import os
import sys
import time

import h5py
import numpy as np

from deblendkit.ramp.sandbox_driver import read_inputs
from deblendkit.ramp.workflow import DeblenderWorkflow

#: Prefix of the last line on standard error: the measured times (JSON).
TIMES_MARKER = "DEBLEND_SANDBOX_TIMES "


def read_fold_train(path: str):
    """``(X, y)`` of a fold's training file: a BlendSet and its isolated images (n, K, C, H, W) float32."""
    X = read_inputs(path)
    with h5py.File(path, "r") as f:
        y = np.asarray(f["isolated"][()], dtype=np.float32)
    return X, y


def main(argv: list[str] | None = None) -> int:
    """Fit, predict each inputs file, send the predictions; non-zero exit with the error on stderr if a step fails."""
    submission, train, *inputs = argv if argv is not None else sys.argv[1:]
    data_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # from here on, print() of the submission goes to stderr
    sys.stdout = sys.stderr
    X, y = read_fold_train(train)
    workflow = DeblenderWorkflow()
    t0 = time.perf_counter()
    model = workflow.train_submission(submission, X, y)
    times = {"fit": time.perf_counter() - t0, "predict": []}
    del X, y
    parts = []
    for path in inputs:
        t0 = time.perf_counter()
        parts.append(np.ascontiguousarray(workflow.predict(model, read_inputs(path)), dtype=np.float32))
        times["predict"].append(time.perf_counter() - t0)
    buffer = io.BytesIO()  # np.save needs a seekable file; a pipe is not
    np.save(buffer, np.concatenate(parts, axis=0), allow_pickle=False)
    data_out.write(buffer.getbuffer())
    data_out.flush()
    sys.stderr.write("\n" + TIMES_MARKER + json.dumps(times) + "\n")
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
