"""What the results look like: the static leaderboard, the figures, the realism checks.

``collect`` (the results ``ramp-test --save-output`` left) -> ``table`` (ranked
rows, reference rows) -> ``page`` (the HTML page); ``leaderboard.build`` writes
the three files; ``references`` are the reference rows, ``plots`` the figures,
``results`` reads the kit's per-fold results files, ``realism`` compares a
simulation with published survey statistics. This package reads files and
never imports the RAMP adapter (:mod:`deblendkit.ramp`).
"""
from deblendkit.report.collect import (
    STATUS_FAILED,
    STATUS_INCOMPLETE,
    STATUS_NOT_RUN,
    STATUS_SCORED,
    FoldResult,
    SubmissionResults,
    collect,
    data_provenance,
    load_submission,
)
from deblendkit.report.leaderboard import build, reference_data_file
from deblendkit.report.page import render_html
from deblendkit.report.references import REFERENCE_DESCRIPTIONS, ReferenceRow, as_reference_rows, reference_rows
from deblendkit.report.results import Gallery, read_galaxy_table, read_gallery, read_results_meta, rgb_bands
from deblendkit.report.table import (
    RANK_STEPS,
    STATUS_REFERENCE,
    leaderboard_table,
    lower_is_better,
    render_markdown,
    score_directions,
)

__all__ = [
    "STATUS_SCORED",
    "STATUS_NOT_RUN",
    "STATUS_FAILED",
    "STATUS_INCOMPLETE",
    "STATUS_REFERENCE",
    "RANK_STEPS",
    "FoldResult",
    "SubmissionResults",
    "load_submission",
    "collect",
    "data_provenance",
    "ReferenceRow",
    "REFERENCE_DESCRIPTIONS",
    "as_reference_rows",
    "reference_rows",
    "lower_is_better",
    "score_directions",
    "leaderboard_table",
    "render_markdown",
    "render_html",
    "reference_data_file",
    "build",
    "Gallery",
    "read_galaxy_table",
    "read_gallery",
    "read_results_meta",
    "rgb_bands",
]
