"""The RAMP adapter, the only package that imports rampwf: what ``problem.py`` exposes.

Problem glue (:mod:`~deblendkit.ramp.problem`: data loading, CV, the data
directory in use), the prediction type (:mod:`~deblendkit.ramp.prediction`),
the score types (:mod:`~deblendkit.ramp.score_types`), the workflow that runs a
submission (:mod:`~deblendkit.ramp.workflow`), rampwf's ``save_y_pred`` hook
(:mod:`~deblendkit.ramp.save_output`) and out-of-core scoring of a submission
(:mod:`~deblendkit.ramp.stream`). The runner (:mod:`deblendkit.ramp.runner`,
every submission in its own process) is not imported here.
"""
from deblendkit.ramp.prediction import DeblendPredictions, check_predictions, make_predictions_type
from deblendkit.ramp.problem import (
    CV_RANDOM_STATE,
    DATA_DEPENDENT,
    PROBLEM_TITLE,
    DataMeta,
    data_dir_in_use,
    data_meta,
    get_cv,
    get_test_data,
    get_train_data,
    load_lazy,
    out_of_core,
    problem_attribute,
    quick_mode,
    split_path,
)
from deblendkit.ramp.save_output import SAVE_ARRAYS_ENV, save_arrays_requested, save_y_pred
from deblendkit.ramp.score_types import make_score_types
from deblendkit.ramp.stream import score_submission
from deblendkit.ramp.workflow import DeblenderWorkflow

__all__ = [
    "CV_RANDOM_STATE",
    "DATA_DEPENDENT",
    "PROBLEM_TITLE",
    "SAVE_ARRAYS_ENV",
    "DataMeta",
    "DeblendPredictions",
    "DeblenderWorkflow",
    "check_predictions",
    "data_dir_in_use",
    "data_meta",
    "get_cv",
    "get_test_data",
    "get_train_data",
    "load_lazy",
    "make_predictions_type",
    "make_score_types",
    "out_of_core",
    "problem_attribute",
    "quick_mode",
    "save_arrays_requested",
    "save_y_pred",
    "score_submission",
    "split_path",
]
