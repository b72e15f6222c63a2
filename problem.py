"""RAMP problem definition of the galaxy deblending challenge.

Thin on purpose: the data loading, CV, prediction type, workflow and scores
live in the ``deblendkit`` package (see deblendkit/ramp/problem.py).
``Predictions`` and ``score_types`` depend on the data (bands, sizes): they are
built at first use, from the data directory ``ramp-test`` loaded
(``--ramp-data-dir``) or this kit's ``data/``. In a fresh clone where only
``pip install -r requirements.txt`` was run (the ramp-kits convention), the
``deblendkit`` package next to this file is put on ``sys.path``; an install
(``pip install -e .``) is not needed for ``ramp-test``. (A ``-e .`` line in
requirements.txt cannot do it: ``rampboard/requirements-rampboard.txt`` uses
that file as pip constraints, where editable lines are refused.)
"""
import os
import sys

try:
    from deblendkit import ramp as _kit
except ModuleNotFoundError:  # a fresh clone, only `pip install -r requirements.txt`: the package is beside us
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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
