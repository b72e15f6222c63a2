"""The kit's own per-submission results files, written during ``ramp-test --save-output``.

rampwf saves, for every CV fold, the fold's predictions through
``problem.save_y_pred(y_pred, data_path, output_path, suffix)`` (``suffix``
``"train"`` then ``"test"``; ``output_path`` is
``submissions/<name>/training_output/fold_<i>``; ``data_path`` is the kit
directory that holds ``data/``). The predictions are 5-D arrays of about
``n x 6 x 6 x 48 x 48`` floats (130 MB for 400 test blends, per fold), too big
to keep for a leaderboard. :func:`save_y_pred` keeps what the leaderboard shows
instead, for the ``"test"`` predictions only:

``galaxies_test.csv.gz`` (:data:`GALAXY_TABLE_FILE`)
    One row per test galaxy: every metric of
    :func:`deblendkit.scoring.metrics.galaxy_table` joined with the test truth table
    (blendedness, magnitudes, sizes, ...), gzip-compressed CSV.
``gallery_test.npz`` (:data:`GALLERY_FILE`)
    A few test blends (:func:`gallery_indices`, the same for every submission:
    they depend on the truth only), with the blend, true and predicted isolated
    images in the three bands of the colour composites (:func:`rgb_bands`; about
    1.5 MB for 6 blends of 48 x 48 pixels and 6 slots), centres and per-galaxy scores.
``results.json`` (:data:`RESULTS_FILE`)
    What was scored: the data file (name, split, seed, creation time), the
    number of test blends and galaxies, quick-test mode, the kit version.

Nothing is saved for ``"train"``: those predictions cover only the fold's
validation blends and a training subsample (NaN elsewhere, see
:mod:`deblendkit.ramp.workflow`), and rampwf's own ``scores.csv`` already holds
their scores. Together with rampwf's ``scores.csv``, ``state.txt``,
``train_time`` / ``valid_time`` / ``test_time`` per fold and
``bagged_scores.csv`` these files are what :mod:`deblendkit.report.leaderboard` reads.

Tools that read the prediction arrays back need them on disk: ramp-board's
``ramp-database`` (``set_predictions`` loads ``fold_<i>/y_pred_train.npz`` and
``y_pred_test.npz``) and ``ramp-blend`` (rampwf's ``load_y_pred``). Set the
environment variable ``DEBLEND_SAVE_Y_PRED=1`` (:data:`SAVE_ARRAYS_ENV`) to
also write them, exactly as rampwf would without this hook
(``y_pred_<suffix>.npz``, key ``y_pred``).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deblendkit.errors import ConfigError, DataFileError, DeblendKitError, PredictionError

__all__ = [
    "RESULTS_VERSION",
    "GALAXY_TABLE_FILE",
    "GALLERY_FILE",
    "RESULTS_FILE",
    "N_GALLERY",
    "SAVE_ARRAYS_ENV",
    "save_arrays_requested",
    "Gallery",
    "save_y_pred",
    "write_results",
    "gallery_indices",
    "rgb_bands",
    "RGB_BANDS",
    "read_galaxy_table",
    "read_gallery",
    "read_results_meta",
]

log = logging.getLogger(__name__)

RESULTS_VERSION = 1
"""Version of the layout of the files below (in ``results.json``)."""
GALAXY_TABLE_FILE = "galaxies_test.csv.gz"
GALLERY_FILE = "gallery_test.npz"
RESULTS_FILE = "results.json"
N_GALLERY = 6
"""Blends kept in a gallery."""
SAVE_ARRAYS_ENV = "DEBLEND_SAVE_Y_PRED"
"""Environment variable: ``1`` to also save the prediction arrays as rampwf does."""
_BATCH_BLENDS = 64  # blends of truth read at a time while building the table

#: Preferred (red, green, blue) bands of the colour composites.
RGB_BANDS = ("i", "r", "g")

_GALLERY_KEYS = ("blend_index", "blend", "isolated", "predicted", "centers", "n_galaxies",
                 "noise_sigma", "deblend", "blendedness", "bands")


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


def _split_of(data_path: str, suffix: str) -> str:
    from deblendkit.ramp.problem import split_path

    return split_path(data_path, "test" if suffix == "test" else "train")


def save_arrays_requested() -> bool:
    """Whether :data:`SAVE_ARRAYS_ENV` asks for the prediction arrays too.

    Raises
    ------
    ConfigError
        The variable holds something other than 1/0, true/false, yes/no (or empty).
    """
    raw = os.environ.get(SAVE_ARRAYS_ENV, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ConfigError(f"{SAVE_ARRAYS_ENV} must be 1 or 0 (true/false, yes/no), got {raw!r}")


def save_y_pred(y_pred, data_path: str, output_path: str, suffix: str) -> None:
    """rampwf's hook (``problem.save_y_pred``): write the fold's results files.

    Parameters
    ----------
    y_pred : ndarray, (n, K, C, H, W)
        Predictions of one fold, ADU.
    data_path : str
        Kit directory holding ``data/`` (rampwf's ``ramp_data_dir``).
    output_path : str
        The fold's output directory (``.../training_output/fold_<i>``).
    suffix : str
        ``"test"`` writes the files (:func:`write_results`); anything else
        (``"train"``) writes nothing. With ``DEBLEND_SAVE_Y_PRED=1`` the array
        is also saved as ``y_pred_<suffix>.npz`` whatever the suffix.

    Raises
    ------
    DeblendKitError
        Whatever went wrong, as one error of the kit's family. In particular
        an ``AttributeError`` never escapes: rampwf would take it for "no
        ``save_y_pred`` here" and silently save the whole array instead.
    """
    try:
        if save_arrays_requested():
            np.savez_compressed(os.path.join(output_path, f"y_pred_{suffix}"), y_pred=y_pred)
        if suffix != "test":
            log.debug("save_y_pred: no results files for suffix %r in %s", suffix, output_path)
            return
        write_results(y_pred, _split_of(data_path, suffix), output_path)
    except DeblendKitError:
        raise
    except Exception as exc:  # AttributeError included, see above
        raise DeblendKitError(
            f"writing the results files of {output_path} failed: {type(exc).__name__}: {exc}"
        ) from exc


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
    from deblendkit.storage.files import read_batches, read_dataset, validate_file
    from deblendkit.scoring.metrics import galaxy_table

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
        "kit_version": _kit_version(),
    }
    (out / RESULTS_FILE).write_text(json.dumps(meta, indent=1))
    log.info("results of %d galaxies in %d blends written to %s", len(table), layout.n_blends, out)
    return meta


def _kit_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deblendkit")
    except PackageNotFoundError:
        return None


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
        for name in _GALLERY_KEYS[1:-1]:
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
            missing = [k for k in _GALLERY_KEYS if k not in z.files]
            if missing:
                raise DataFileError(f"gallery file {path} lacks field(s) {missing}")
            fields = {k: z[k] for k in _GALLERY_KEYS}
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
