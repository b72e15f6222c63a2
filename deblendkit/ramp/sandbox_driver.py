"""What runs inside the sandbox (:mod:`deblendkit.ramp.sandbox`): fit, predict, send the predictions.

``python -m deblendkit.ramp.sandbox_driver SUBMISSION_DIR TRAIN_FILE INPUTS_FILE``
fits the submission's ``Deblender`` on the training file (blends and labels)
and predicts the blends of the inputs-only file (no labels in it), then writes
the predictions as one ``.npy`` stream to the original standard output, which
the caller reads. The submission's own prints go to standard error.
"""
from __future__ import annotations

import io
import os
import sys

import h5py
import numpy as np

from deblendkit.deblend import BlendSet, load_split
from deblendkit.ramp.workflow import DeblenderWorkflow
from deblendkit.storage import INPUT_DATASETS
from deblendkit.storage.attrs import decode_attr

__all__ = ["main", "read_inputs"]


def read_inputs(path: str) -> BlendSet:
    """The blends of an inputs-only file (``blend``, ``psf``, ``noise_sigma``, ``centers``, ``n_galaxies``)."""
    with h5py.File(path, "r") as f:
        arrays = {name: f[name][()] for name in INPUT_DATASETS}
        bands = [str(b) for b in decode_attr(f.attrs["bands"])]
        pixel_scale = float(decode_attr(f.attrs["pixel_scale"]))
    return BlendSet(**arrays, bands=bands, pixel_scale=pixel_scale)


def main(argv: list[str] | None = None) -> int:
    """Run the three steps; the exit status is non-zero with the error on stderr when a step fails."""
    submission, train, inputs = argv if argv is not None else sys.argv[1:]
    data_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # from here on, print() of the submission goes to stderr
    sys.stdout = sys.stderr
    X, y = load_split(train)
    workflow = DeblenderWorkflow()
    model = workflow.train_submission(submission, X, y)
    del X, y
    pred = np.ascontiguousarray(workflow.predict(model, read_inputs(inputs)), dtype=np.float32)
    buffer = io.BytesIO()  # np.save needs a seekable file; a pipe is not
    np.save(buffer, pred, allow_pickle=False)
    data_out.write(buffer.getbuffer())
    data_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
