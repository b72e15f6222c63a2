"""RAMP problem definition of the galaxy deblending challenge.

Thin on purpose: the data loading, CV, prediction type, workflow and scores
live in the ``deblendkit`` package (see deblendkit/ramp_problem.py).
"""
import os

from deblendkit.ramp import problem as _kit
from deblendkit.report import results as _kit_results
from deblendkit.ramp.prediction import make_predictions_type
from deblendkit.ramp.score_types import make_score_types
from deblendkit.ramp.workflow import DeblenderWorkflow

problem_title = _kit.PROBLEM_TITLE
_meta = _kit.data_meta(os.path.dirname(os.path.abspath(__file__)))

Predictions = make_predictions_type(
    max_galaxies=_meta.max_galaxies, n_bands=len(_meta.bands), stamp_size=_meta.stamp_size
)
workflow = DeblenderWorkflow()
score_types = make_score_types(_meta.bands)

get_cv = _kit.get_cv
get_train_data = _kit.get_train_data
get_test_data = _kit.get_test_data
# ramp-test --save-output: per-galaxy test tables and a gallery, not the 5-D arrays.
save_y_pred = _kit_results.save_y_pred
