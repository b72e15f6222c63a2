"""RAMP problem of the blind track: detect and deblend, scored by matching.

Thin on purpose: everything lives in ``deblendkit/ramp/blind_*.py`` and
``deblendkit/scoring/{matching,blind_metrics}.py``. Run from this folder:
``ramp-test --submission sep_detect --quick-test`` (the data are read from
``blind/data``, a link to the kit's ``data/``; see README.md).
"""
import os
import sys

try:
    from deblendkit.ramp import blind_problem as _blind
except ModuleNotFoundError:  # a fresh clone without `pip install -e .`: the package is one folder up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from deblendkit.ramp import blind_problem as _blind
from deblendkit.ramp.blind_prediction import make_blind_predictions_type
from deblendkit.ramp.blind_score_types import make_blind_score_types
from deblendkit.ramp.blind_workflow import BlindWorkflow

problem_title = _blind.BLIND_PROBLEM_TITLE
_bands, _k_out, _stamp = _blind.blind_meta(os.path.dirname(os.path.abspath(__file__)))

Predictions = make_blind_predictions_type(k_out=_k_out, n_bands=len(_bands), stamp_size=_stamp)
workflow = BlindWorkflow()
score_types = make_blind_score_types(_bands)

get_cv = _blind.get_cv
get_train_data = _blind.get_train_data
get_test_data = _blind.get_test_data
