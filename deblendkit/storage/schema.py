"""The data-file schema: the ONE place where names, dtypes, shapes and truth columns live.

Every module that writes, reads, checks or copies a data file takes the layout
from here (``data/README.md`` documents it for users): per-blend datasets
``blend`` (N, C, H, W), ``isolated`` (N, K, C, H, W), ``psf`` (N, C, P, P),
``noise_sigma`` (N, C), ``centers`` (N, K, 2) and ``n_galaxies`` (N,), and a
compound ``truth`` table with one row per galaxy. The truth columns are listed in
:data:`deblendkit.sim.sample.TRUTH_COLUMNS` (the simulation fills them; storage
sits above sim in the layering, so the list lives there and the dtype here).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deblendkit.errors import ConfigError
from deblendkit.sim.sample import TRUTH_COLUMNS

__all__ = [
    "SCHEMA_VERSION",
    "KIT_NAME",
    "ROWS_KIT_NAME",
    "PER_BLEND_DATASETS",
    "INPUT_DATASETS",
    "DATASETS",
    "DTYPES",
    "dataset_shapes",
    "check_bands",
    "truth_columns",
    "truth_dtype",
]

SCHEMA_VERSION = 3
"""Version of the file layout this kit writes and reads (2: ``contamination`` column;
3: the source-structure columns ``kind``, ``knot_fraction``, ``n_knots``, ``knot_seed``, ``e1_bulge``,
``e2_bulge``, ``bulge_dx``, ``bulge_dy``, ``locus`` of the realistic population;
older files are refused with a DataFileError asking to regenerate them)."""

KIT_NAME = "deblendkit"
"""Value of the ``kit`` root attribute that marks a file as ours."""

ROWS_KIT_NAME = KIT_NAME + "-rows"
"""Value of the ``kit`` attribute of a *rows file* (a chunk of blends, see ``writer``)."""

PER_BLEND_DATASETS: tuple[str, ...] = (
    "blend",
    "isolated",
    "psf",
    "noise_sigma",
    "centers",
    "n_galaxies",
)
"""The datasets with one row (and one chunk) per blend, in contract order."""

INPUT_DATASETS: tuple[str, ...] = ("blend", "psf", "noise_sigma", "centers", "n_galaxies")
"""The per-blend datasets a deblender sees (``X``): all but the labels ``isolated``."""

DATASETS: tuple[str, ...] = PER_BLEND_DATASETS + ("truth",)
"""Every dataset a valid file holds."""

DTYPES: dict[str, np.dtype] = {
    "blend": np.dtype(np.float32),
    "isolated": np.dtype(np.float32),
    "psf": np.dtype(np.float32),
    "noise_sigma": np.dtype(np.float32),
    "centers": np.dtype(np.float32),
    "n_galaxies": np.dtype(np.int32),
}
"""The dtype of every per-blend dataset (the truth table's is :func:`truth_dtype`)."""


def dataset_shapes(n: int, k: int, c: int, s: int, p: int) -> dict[str, tuple[int, ...]]:
    """Shape of every per-blend dataset, in contract order.

    Parameters
    ----------
    n : int
        Blends N.
    k : int
        Slots per blend K (``max_galaxies``).
    c : int
        Bands C.
    s : int
        Stamp side H = W, pixels.
    p : int
        PSF stamp side P, pixels (odd).
    """
    return {
        "blend": (n, c, s, s),
        "isolated": (n, k, c, s, s),
        "psf": (n, c, p, p),
        "noise_sigma": (n, c),
        "centers": (n, k, 2),
        "n_galaxies": (n,),
    }


def check_bands(bands: Any) -> tuple[str, ...]:
    """``bands`` as a tuple of unique identifier strings (ConfigError otherwise)."""
    if isinstance(bands, str) or not isinstance(bands, Sequence):
        raise ConfigError(
            f"bands must be a sequence of band names such as ('g', 'r'), got {bands!r}", value=bands
        )
    bands = tuple(bands)
    if not bands:
        raise ConfigError("bands must name at least one band, got an empty sequence", value=bands)
    for band in bands:
        if not isinstance(band, str) or not band or not band.isidentifier():
            raise ConfigError(
                f"band names must be non-empty identifiers such as 'r', got {band!r} in {bands!r}",
                value=band,
            )
    if len(set(bands)) != len(bands):
        raise ConfigError(f"band names must be unique, got {bands!r}", value=bands)
    return bands


def truth_columns(bands: Sequence[str]) -> list[tuple[str, np.dtype]]:
    """``(name, dtype)`` of every truth column for these bands, in file order.

    A column of :data:`~deblendkit.sim.sample.TRUTH_COLUMNS` whose name holds
    ``{band}`` is repeated for every band (e.g. ``flux_u, flux_g, ...``).
    """
    bands = check_bands(bands)
    out: list[tuple[str, np.dtype]] = []
    for name, dtype in TRUTH_COLUMNS:
        names = [name.format(band=b) for b in bands] if "{band}" in name else [name]
        out += [(n, np.dtype(dtype)) for n in names]
    return out


def truth_dtype(bands: Sequence[str]) -> np.dtype:
    """Compound dtype of the ``truth`` table for the given bands.

    Parameters
    ----------
    bands : sequence of str
        Band names, e.g. ``("u", "g", "r", "i", "z", "y")``.

    Returns
    -------
    numpy.dtype
        Fields, in order: ``blend_index`` (int64), ``slot`` (int16), ``x``, ``y``
        (float64, pixels), ``flux_<band>`` (ADU), ``mag_<band>`` (AB mag),
        ``stamp_flux_<band>`` (ADU) for every band (float64), ``hlr_disk``,
        ``hlr_bulge`` (arcsec), ``e1``, ``e2``, ``bulge_fraction``, ``redshift``
        (float64), ``sed_bulge``, ``sed_disk`` (int16), ``blendedness``, ``snr``
        (float64), ``labelled`` (int8), ``contamination`` (float64), ``kind``
        (int8: 0 galaxy, 1 star), ``knot_fraction`` (float64), ``n_knots`` (int16), ``knot_seed`` (int64),
        ``e1_bulge``, ``e2_bulge``, ``bulge_dx``, ``bulge_dy`` (arcsec), ``locus``
        (float64). See ``data/README.md``.
    """
    return np.dtype(truth_columns(bands))
