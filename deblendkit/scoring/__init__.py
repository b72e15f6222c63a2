"""Scoring: input checks, per-galaxy metrics, tables and summaries, out-of-core scoring, references.

Modules, in the order they build on each other: :mod:`~deblendkit.scoring.checks`
(dtype, shape, NaN / inf), :mod:`~deblendkit.scoring.metrics` (the primary
score and the definitions of every metric), :mod:`~deblendkit.scoring.shapes`
(adaptive moments, SSIM), :mod:`~deblendkit.scoring.table` (per-galaxy tables,
:func:`summarize`), :mod:`~deblendkit.scoring.out_of_core` (:func:`score_file`),
:mod:`~deblendkit.scoring.references` (:func:`reference_scores`).
"""
from deblendkit.scoring.checks import AXES, METRIC_GROUPS, as_image_array, check_arrays, check_finite
from deblendkit.scoring.metrics import (
    CATASTROPHIC_COLOUR_MAG,
    CATASTROPHIC_FLUX,
    COLOUR_PAIRS,
    deblend_scores,
)
from deblendkit.scoring.out_of_core import DEFAULT_BATCH_SIZE, StreamResult, iter_batch_tables, score_file
from deblendkit.scoring.references import (
    REFERENCES,
    ReferenceResult,
    ReferenceScores,
    headline_scores,
    reference_predictions,
    reference_scores,
)
from deblendkit.scoring.shapes import MOMENT_FAILURE_DE, SSIM_FOOTPRINT, adaptive_ellipticity, fit_shear_bias, ssim
from deblendkit.scoring.table import MAD_TO_SIGMA, galaxy_table, galaxy_table_batch, robust_scatter, summarize

__all__ = [
    "AXES",
    "CATASTROPHIC_COLOUR_MAG",
    "CATASTROPHIC_FLUX",
    "COLOUR_PAIRS",
    "DEFAULT_BATCH_SIZE",
    "MAD_TO_SIGMA",
    "METRIC_GROUPS",
    "MOMENT_FAILURE_DE",
    "REFERENCES",
    "SSIM_FOOTPRINT",
    "ReferenceResult",
    "ReferenceScores",
    "StreamResult",
    "adaptive_ellipticity",
    "as_image_array",
    "check_arrays",
    "check_finite",
    "deblend_scores",
    "fit_shear_bias",
    "galaxy_table",
    "galaxy_table_batch",
    "headline_scores",
    "iter_batch_tables",
    "reference_predictions",
    "reference_scores",
    "robust_scatter",
    "score_file",
    "ssim",
    "summarize",
]
