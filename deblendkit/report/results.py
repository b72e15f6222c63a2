"""The kit's own per-submission results files, written during ``ramp-test --save-output``: the reading side.

The files are written by :func:`deblendkit.scoring.results_files.write_results`
(their names and layout live there), called by rampwf's hook
:func:`deblendkit.ramp.save_output.save_y_pred`; this module reads them back
(:func:`read_galaxy_table`, :func:`read_gallery`, :func:`read_results_meta`)
and re-exports the names of the writing side.

The files, one set per fold of ``ramp-test --save-output``, for the test
predictions only:

``galaxies_test.csv.gz`` (:data:`GALAXY_TABLE_FILE`)
    One row per test galaxy: every metric of
    :func:`deblendkit.scoring.table.galaxy_table` joined with the test truth table
    (blendedness, magnitudes, sizes, ...), gzip-compressed CSV.
``gallery_test.npz`` (:data:`GALLERY_FILE`)
    A few test blends (:func:`gallery_indices`, the same for every submission:
    they depend on the truth only), with the blend, true and predicted isolated
    images in the three bands of the colour composites (:func:`rgb_bands`),
    centres and per-galaxy scores (:class:`Gallery`).
``results.json`` (:data:`RESULTS_FILE`)
    What was scored: the data file (name, split, seed, creation time), the
    number of test blends and galaxies, quick-test mode, the kit version.

Together with rampwf's ``scores.csv``, ``state.txt``, ``train_time`` /
``valid_time`` / ``test_time`` per fold and ``bagged_scores.csv`` these files
are what :mod:`deblendkit.report.leaderboard` reads. Why not the prediction
arrays, and how to get them too (``DEBLEND_SAVE_Y_PRED=1``): see
:mod:`deblendkit.ramp.save_output`.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deblendkit.errors import ConfigError, DataFileError
from deblendkit.scoring.results_files import (
    GALAXY_TABLE_FILE,
    GALLERY_FILE,
    GALLERY_KEYS,
    N_GALLERY,
    RESULTS_FILE,
    RESULTS_VERSION,
    RGB_BANDS,
    gallery_indices,
    rgb_bands,
    write_results,
)

__all__ = [
    "RESULTS_VERSION",
    "GALAXY_TABLE_FILE",
    "GALLERY_FILE",
    "RESULTS_FILE",
    "N_GALLERY",
    "Gallery",
    "write_results",
    "gallery_indices",
    "rgb_bands",
    "RGB_BANDS",
    "read_galaxy_table",
    "read_gallery",
    "read_results_meta",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gallery:
    """A few blends of a test set with their true and predicted isolated images.

    Attributes
    ----------
    blend_index : ndarray (m,) int
        Rows of the blends in the test file.
    blend : ndarray (m, C, H, W) float32
        Observed scenes, ADU, in the gallery's C bands (those of the colour
        composites, :func:`rgb_bands`; at most three).
    isolated, predicted : ndarray (m, K, C, H, W) float32
        True and predicted isolated galaxies, ADU, same bands.
    centers : ndarray (m, K, 2) float32
        (x, y) pixel centres, NaN in empty slots.
    n_galaxies : ndarray (m,) int
    noise_sigma : ndarray (m, C) float32
        Background noise, ADU per pixel.
    deblend, blendedness : ndarray (m, K) float
        Per-galaxy primary score (over all bands of the data, not only the
        gallery's) and truth blendedness, NaN in empty slots.
    bands : tuple of str
        The gallery's bands.
    """

    blend_index: np.ndarray
    blend: np.ndarray
    isolated: np.ndarray
    predicted: np.ndarray
    centers: np.ndarray
    n_galaxies: np.ndarray
    noise_sigma: np.ndarray
    deblend: np.ndarray
    blendedness: np.ndarray
    bands: tuple[str, ...]

    def __post_init__(self):
        m = len(self.blend_index)
        for name in GALLERY_KEYS[1:-1]:
            if len(getattr(self, name)) != m:
                raise ConfigError(
                    f"gallery field {name!r} has {len(getattr(self, name))} rows, expected {m} "
                    f"(one per blend_index)"
                )
        if self.blend.ndim != 4 or self.blend.shape[1] != len(self.bands):
            raise ConfigError(
                f"gallery blend must have shape (m, C, H, W) with C = {len(self.bands)} bands "
                f"{list(self.bands)}, got {self.blend.shape}"
            )

    def __len__(self) -> int:
        return len(self.blend_index)


def read_gallery(path: str | os.PathLike) -> Gallery:
    """Read a :data:`GALLERY_FILE`.

    Raises
    ------
    DataFileError
        The file is missing, unreadable or lacks a field.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in GALLERY_KEYS if k not in z.files]
            if missing:
                raise DataFileError(f"gallery file {path} lacks field(s) {missing}")
            fields = {k: z[k] for k in GALLERY_KEYS}
    except DataFileError:
        raise
    except (OSError, ValueError) as exc:
        raise DataFileError(f"cannot read gallery file {path}: {exc}") from exc
    fields["bands"] = tuple(str(b) for b in fields["bands"])
    return Gallery(**fields)


def read_galaxy_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a :data:`GALAXY_TABLE_FILE` (raises DataFileError if unreadable)."""
    try:
        return pd.read_csv(path, compression="gzip")
    except (OSError, ValueError, EOFError) as exc:
        raise DataFileError(f"cannot read galaxy table {path}: {exc}") from exc


def read_results_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Read a :data:`RESULTS_FILE` (raises DataFileError if unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataFileError(f"cannot read results file {path}: {exc}") from exc
