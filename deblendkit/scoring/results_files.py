"""The kit's per-submission results files: their names and layout, and the writer.

:func:`write_results` scores a submission's predictions of a data file and
writes, into one directory (a ``ramp-test`` fold's output):

``galaxies_test.csv.gz`` (:data:`GALAXY_TABLE_FILE`)
    One row per test galaxy: every metric of
    :func:`deblendkit.scoring.table.galaxy_table` joined with the test truth table
    (blendedness, magnitudes, sizes, ...), gzip-compressed CSV.
``gallery_test.npz`` (:data:`GALLERY_FILE`)
    A few test blends (:func:`gallery_indices`, the same for every submission:
    they depend on the truth only), with the blend, true and predicted isolated
    images in the three bands of the colour composites (:func:`rgb_bands`; about
    1.5 MB for 6 blends of 48 x 48 pixels and 6 slots), centres and per-galaxy
    scores (fields :data:`GALLERY_KEYS`).
``results.json`` (:data:`RESULTS_FILE`)
    What was scored: the data file (name, split, seed, creation time), the
    number of test blends and galaxies, quick-test mode, the kit version.

The RAMP hook that calls it during ``ramp-test --save-output`` is
:func:`deblendkit.ramp.save_output.save_y_pred`; the reading side (what the
leaderboard reads back) is :mod:`deblendkit.report.results`. Both sides take
the file names from here.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deblendkit._fs import package_version
from deblendkit.errors import ConfigError, DataFileError, PredictionError
from deblendkit.scoring.table import galaxy_table
from deblendkit.storage import read_batches, read_dataset, validate_file

__all__ = [
    "RESULTS_VERSION",
    "GALAXY_TABLE_FILE",
    "GALLERY_FILE",
    "GALLERY_KEYS",
    "RESULTS_FILE",
    "N_GALLERY",
    "RGB_BANDS",
    "gallery_indices",
    "rgb_bands",
    "write_results",
]

log = logging.getLogger(__name__)

RESULTS_VERSION = 1
"""Version of the layout of the files below (in ``results.json``)."""
GALAXY_TABLE_FILE = "galaxies_test.csv.gz"
GALLERY_FILE = "gallery_test.npz"
RESULTS_FILE = "results.json"
N_GALLERY = 6
"""Blends kept in a gallery."""
_BATCH_BLENDS = 64  # blends of truth read at a time while building the table

#: Preferred (red, green, blue) bands of the colour composites.
RGB_BANDS = ("i", "r", "g")

GALLERY_KEYS = ("blend_index", "blend", "isolated", "predicted", "centers", "n_galaxies",
                 "noise_sigma", "deblend", "blendedness", "bands")
"""Fields of a :data:`GALLERY_FILE`, in order."""


def rgb_bands(bands) -> tuple[str, str, str]:
    """The (red, green, blue) bands of a colour composite of ``bands``.

    ``("i", "r", "g")`` when all three exist (the usual choice for optical
    surveys); otherwise the reddest, middle and bluest of ``bands`` (taken in
    array order, which runs blue to red), repeating bands when fewer than three.
    """
    bands = tuple(bands)
    if not bands:
        raise ConfigError("bands must name at least one band, got none")
    if all(b in bands for b in RGB_BANDS):
        return RGB_BANDS
    return bands[-1], bands[len(bands) // 2], bands[0]


def gallery_indices(truth: pd.DataFrame, n_blends: int, *, n: int = N_GALLERY) -> np.ndarray:
    """Blends that span blendedness: the same ones for every submission.

    Each blend is ranked by the largest blendedness of its (labelled)
    galaxies, i.e. how badly its worst-blended galaxy overlaps its
    neighbours; the blends at ``n``
    evenly spaced ranks, from the least to the most blended, are chosen.

    Parameters
    ----------
    truth : pandas.DataFrame
        Truth table with ``blend_index`` and ``blendedness`` columns.
    n_blends : int
        Number of blends of the data set (blends without a truth row rank first).
    n : int
        Blends wanted (fewer if the set has fewer).

    Returns
    -------
    ndarray of int64, sorted by increasing blendedness, no repeats.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer number of blends, got {n!r}")
    n_blends = int(n_blends)
    if n_blends < 0:
        raise ConfigError(f"n_blends must be >= 0, got {n_blends}")
    missing = [c for c in ("blend_index", "blendedness") if c not in truth.columns]
    if missing:
        raise ConfigError(f"truth table lacks column(s) {missing}; found {list(truth.columns)}")
    if "labelled" in truth.columns:  # field mode: unlabelled light has no slot to show
        truth = truth[truth["labelled"] == 1]
    worst = np.full(n_blends, -1.0)
    if len(truth):
        per_blend = truth.groupby("blend_index")["blendedness"].max()
        idx = per_blend.index.to_numpy(dtype=np.int64)
        keep = (idx >= 0) & (idx < n_blends)
        worst[idx[keep]] = per_blend.to_numpy(dtype=np.float64)[keep]
    order = np.argsort(worst, kind="stable")
    if n_blends == 0:
        return np.empty(0, dtype=np.int64)
    ranks = np.unique(np.linspace(0, n_blends - 1, min(n, n_blends)).round().astype(np.int64))
    return order[ranks].astype(np.int64)


def write_results(y_pred, data_file: str | os.PathLike, output_path: str | os.PathLike, *,
                  n_gallery: int = N_GALLERY) -> dict[str, Any]:
    """Score ``y_pred`` against ``data_file`` and write the three results files.

    Parameters
    ----------
    y_pred : array_like, (n, K, C, H, W)
        Predictions for every blend of ``data_file``, ADU.
    data_file : path
        The data file predicted (its ``isolated`` images and truth table are read).
    output_path : path
        Directory to write into (created if needed).
    n_gallery : int
        Blends kept in the gallery.

    Returns
    -------
    dict
        The contents written to ``results.json``.

    Raises
    ------
    PredictionError
        ``y_pred`` does not have the shape of the file's ``isolated`` images, or
        holds NaN / inf.
    DataFileError
        The data file is missing or unreadable.
    """
    data_file = os.fspath(data_file)
    if not os.path.exists(data_file):
        raise DataFileError(f"data file {data_file} does not exist; cannot score the predictions")
    layout = validate_file(data_file)
    y_pred = np.asarray(y_pred)
    expected = (layout.n_blends, layout.max_galaxies, len(layout.bands), layout.stamp_size,
                layout.stamp_size)
    if y_pred.shape != expected:
        raise PredictionError(
            f"predictions have shape {y_pred.shape}, expected {expected} "
            f"(n_blends, max_galaxies, n_bands, height, width) of {os.path.basename(data_file)}"
        )
    bands = tuple(layout.bands)
    out = Path(output_path)
    out.mkdir(parents=True, exist_ok=True)

    # Per-galaxy table, one batch of truth in memory at a time.
    parts = []
    for batch in read_batches(data_file, _BATCH_BLENDS):
        s, e = batch.start, batch.start + len(batch)
        truth = batch.truth.copy()
        truth["blend_index"] = truth["blend_index"] - s  # galaxy_table counts from the batch
        part = galaxy_table(batch.isolated, y_pred[s:e], bands=bands, truth=truth)
        part["blend_index"] = part["blend_index"] + s
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    table.to_csv(out / GALAXY_TABLE_FILE, index=False, compression="gzip")

    # Gallery: a few blends chosen from the truth alone, read lazily.
    with read_dataset(data_file, in_memory=False) as ds:
        rows = gallery_indices(ds.truth, layout.n_blends, n=n_gallery)
        gallery = _gallery_arrays(ds, rows, y_pred, table, bands)
    np.savez_compressed(out / GALLERY_FILE, **gallery)

    attrs = layout.attrs
    meta = {
        "results_version": RESULTS_VERSION,
        "data_file": os.path.basename(data_file),
        "split": attrs.get("split"),
        "seed": attrs.get("seed"),
        "data_created": attrs.get("created"),
        "bands": list(bands),
        "n_blends": int(layout.n_blends),
        "n_galaxies": int(len(table)),
        "quick_test": bool(os.environ.get("RAMP_TEST_MODE")),
        "fold": _fold_of(out),
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "kit_version": package_version("deblendkit"),
    }
    (out / RESULTS_FILE).write_text(json.dumps(meta, indent=1))
    log.info("results of %d galaxies in %d blends written to %s", len(table), layout.n_blends, out)
    return meta


def _fold_of(path: Path) -> int | None:
    name = path.name
    if name.startswith("fold_") and name[5:].isdigit():
        return int(name[5:])
    return None


def _gallery_arrays(ds, rows: np.ndarray, y_pred: np.ndarray, table: pd.DataFrame,
                    bands: tuple[str, ...]) -> dict[str, np.ndarray]:
    k_max = y_pred.shape[1]
    deblend = np.full((len(rows), k_max), np.nan)
    blendedness = np.full((len(rows), k_max), np.nan)
    for j, r in enumerate(rows):
        sub = table[table["blend_index"] == r]
        slots = sub["slot"].to_numpy(dtype=np.int64)
        deblend[j, slots] = sub["deblend"].to_numpy(dtype=np.float64)
        if "blendedness" in sub.columns:
            blendedness[j, slots] = sub["blendedness"].to_numpy(dtype=np.float64)
    chans = np.array([bands.index(b) for b in dict.fromkeys(rgb_bands(bands))], dtype=np.int64)
    return {
        "blend_index": rows.astype(np.int64),
        "blend": ds.blend.take(rows)[:, chans],
        "isolated": ds.isolated.take(rows)[:, :, chans],
        "predicted": np.asarray(y_pred[rows][:, :, chans], dtype=np.float32),
        "centers": ds.centers.take(rows),
        "n_galaxies": ds.n_galaxies.take(rows).astype(np.int64),
        "noise_sigma": ds.noise_sigma.take(rows)[:, chans],
        "deblend": deblend,
        "blendedness": blendedness,
        "bands": np.asarray([bands[c] for c in chans], dtype=str),
    }
