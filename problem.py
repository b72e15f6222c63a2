"""RAMP problem definition of the galaxy deblending challenge.

Thin on purpose: the data loading, CV, prediction type, workflow and scores
live in the ``deblendkit`` package (see deblendkit/ramp/problem.py).
``Predictions`` and ``score_types`` depend on the data (bands, sizes): they are
built at first use, from the data directory ``ramp-test`` loaded
(``--ramp-data-dir``) or this kit's ``data/``.
"""
import os

from deblendkit import ramp as _kit

problem_title = _kit.PROBLEM_TITLE
workflow = _kit.DeblenderWorkflow()

get_cv = _kit.get_cv
get_train_data = _kit.get_train_data
get_test_data = _kit.get_test_data
# ramp-test --save-output: per-galaxy test tables and a gallery, not the 5-D arrays.
save_y_pred = _kit.save_y_pred

_KIT_DIR = os.path.dirname(os.path.abspath(__file__))


def __getattr__(name):
    """``Predictions`` and ``score_types``, built at first use (PEP 562)."""
    return _kit.problem_attribute(name, _KIT_DIR)
