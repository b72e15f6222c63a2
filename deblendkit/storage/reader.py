"""Opening and validating data files: :class:`FileLayout`, :func:`validate_file`.

Every problem with a file is a single :class:`~deblendkit.errors.DataFileError`
naming the file and the problem: missing, not HDF5 or truncated, not ours,
another schema version, a missing dataset, inconsistent shapes or dtypes, a
failed checksum. Every chunk carries HDF5's fletcher32 checksum and the root
attributes a SHA-256 (``attrs_sha256``), so damage is an error on read, never
silently wrong data. The helpers here (:func:`open_data_file`,
:func:`read_layout`, :func:`read_checked`, :func:`check_content`) are what the
lazy views and the readers above build on.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from deblendkit.errors import ConfigError, DataFileError
from deblendkit.storage.attrs import attrs_digest, decode_attr
from deblendkit.storage.schema import (
    DATASETS,
    DTYPES,
    KIT_NAME,
    PER_BLEND_DATASETS,
    SCHEMA_VERSION,
    check_bands,
    dataset_shapes,
    truth_dtype,
)

__all__ = [
    "FileLayout",
    "H5_ERRORS",
    "REGENERATE_HINT",
    "open_data_file",
    "read_layout",
    "read_checked",
    "check_content",
    "validate_file",
    "block_rows",
]

# Upper bound of the temporary buffer used to read scattered rows (bytes).
READ_BLOCK_BYTES = 16 * 2**20
#: h5py errors that mean "this file is damaged" (metadata checksum failures surface
#: as KeyError / RuntimeError from h5py, data checksum failures as OSError).
H5_ERRORS = (OSError, KeyError, RuntimeError)
REGENERATE_HINT = "regenerate it with `python prepare_data.py --overwrite`"


@dataclasses.dataclass(frozen=True)
class FileLayout:
    """What :func:`validate_file` learned about a valid file.

    Attributes
    ----------
    path : str
        Absolute path of the file.
    n_blends, max_galaxies, stamp_size, psf_size, n_truth : int
        N, K, H = W (pixels), P (pixels) and the number of truth rows.
    bands : tuple of str
        Band names (C of them).
    pixel_scale : float
        Arcsec per pixel.
    attrs : dict
        Root attributes, JSON values decoded.
    """

    path: str
    n_blends: int
    bands: tuple[str, ...]
    max_galaxies: int
    stamp_size: int
    psf_size: int
    n_truth: int
    pixel_scale: float
    attrs: dict[str, Any] = dataclasses.field(repr=False, compare=False)

    @property
    def n_bands(self) -> int:
        """Number of bands C."""
        return len(self.bands)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected shape of every per-blend dataset."""
        n, k, c, s, p = (
            self.n_blends,
            self.max_galaxies,
            self.n_bands,
            self.stamp_size,
            self.psf_size,
        )
        return dataset_shapes(n, k, c, s, p)


def open_data_file(path: str | os.PathLike) -> h5py.File:
    """Open ``path`` read-only, every failure a DataFileError naming the file."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(
            f"data file {path} does not exist; make it with `python prepare_data.py`"
        )
    if not path.is_file():
        raise DataFileError(f"data file {path} is not a regular file")
    try:
        return h5py.File(path, "r")
    except (*H5_ERRORS, ValueError) as exc:
        raise DataFileError(
            f"{path} is not a readable HDF5 file (truncated or not HDF5): {exc}; "
            f"{REGENERATE_HINT}"
        ) from exc


def read_layout(f: h5py.File, path: str | os.PathLike) -> FileLayout:
    """Check the attributes and datasets of an open file against the contract.

    Damaged metadata (a checksum failure that h5py reports as OSError, KeyError or
    RuntimeError, or an undecodable value) is a DataFileError naming the file.
    """
    try:
        return _layout_unchecked(f, path)
    except DataFileError:
        raise
    except (*H5_ERRORS, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise DataFileError(
            f"{path} is corrupt: reading its structure failed ({type(exc).__name__}: {exc}); "
            f"{REGENERATE_HINT}"
        ) from exc


def _check_identity(f: h5py.File, path: Path) -> dict[str, Any]:
    """The decoded root attributes, once the file is known to be ours, of this schema, undamaged."""
    try:
        raw = dict(f.attrs.items())
    except H5_ERRORS as exc:
        raise DataFileError(f"{path} is corrupt: cannot read its attributes: {exc}") from exc
    if "kit" not in raw:
        raise DataFileError(
            f"{path} is not a {KIT_NAME} data file: it has no 'kit' attribute"
        )
    attrs = {name: decode_attr(value) for name, value in raw.items()}
    if attrs["kit"] != KIT_NAME:
        raise DataFileError(
            f"{path} is not a {KIT_NAME} data file: its 'kit' attribute is {attrs['kit']!r}"
        )
    version = attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DataFileError(
            f"{path} has schema_version {version}; this kit reads {SCHEMA_VERSION}; "
            f"{REGENERATE_HINT}"
        )
    # Files written before the digest existed have none; every file written now does.
    stored = attrs.get("attrs_sha256")
    if stored is not None and stored != attrs_digest(raw):
        raise DataFileError(
            f"{path} is corrupt: its root attributes do not match their checksum "
            f"(attrs_sha256); {REGENERATE_HINT}"
        )
    return attrs


def _layout_unchecked(f: h5py.File, path: str | os.PathLike) -> FileLayout:
    path = Path(path)
    attrs = _check_identity(f, path)
    expected = ", ".join(DATASETS)
    for name in DATASETS:
        if name not in f or not isinstance(f[name], h5py.Dataset):
            raise DataFileError(f"{path} has no dataset {name!r}; expected {expected}")
    try:
        bands = check_bands(attrs.get("bands"))
    except ConfigError as exc:
        raise DataFileError(f"{path} has an invalid 'bands' attribute: {exc}") from None
    scale = attrs.get("pixel_scale")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise DataFileError(
            f"{path} has an invalid 'pixel_scale' attribute {scale!r}; expected a "
            "positive number of arcsec/pixel"
        )
    iso = f["isolated"].shape
    psf = f["psf"].shape
    if len(iso) != 5 or len(psf) != 4:
        raise DataFileError(
            f"{path}: dataset 'isolated' must be (N, K, C, H, W) and 'psf' (N, C, P, P); "
            f"got shapes {iso} and {psf}"
        )
    layout = FileLayout(
        path=os.path.abspath(path),
        n_blends=int(iso[0]),
        bands=bands,
        max_galaxies=int(iso[1]),
        stamp_size=int(iso[3]),
        psf_size=int(psf[2]),
        n_truth=int(f["truth"].shape[0]) if f["truth"].ndim == 1 else -1,
        pixel_scale=float(scale),
        attrs=attrs,
    )
    _check_datasets(f, path, layout)
    return layout


def _check_datasets(f: h5py.File, path: Path, layout: FileLayout) -> None:
    """Shapes, dtypes, the truth columns and the checksums of every dataset against the contract."""
    bands, iso, psf = layout.bands, f["isolated"].shape, f["psf"].shape
    found = {name: f[name].shape for name in PER_BLEND_DATASETS}
    want = layout.shapes()
    if found != want:
        listing = ", ".join(f"{name} {found[name]}" for name in PER_BLEND_DATASETS)
        raise DataFileError(
            f"{path} has inconsistent dataset shapes for N={layout.n_blends}, "
            f"K={layout.max_galaxies}, C={layout.n_bands} (bands {list(bands)}), "
            f"H=W={layout.stamp_size}, P={layout.psf_size}: {listing}"
        )
    if layout.psf_size % 2 == 0 or iso[3] != iso[4]:
        raise DataFileError(
            f"{path}: stamps must be square and the PSF size odd, got stamp {iso[3]}x{iso[4]} "
            f"and PSF {psf[2]}x{psf[3]}"
        )
    for name in PER_BLEND_DATASETS:
        ds = f[name]
        if ds.dtype != DTYPES[name]:
            raise DataFileError(
                f"{path}: dataset {name!r} has dtype {ds.dtype}; expected {DTYPES[name]}"
            )
    tdt = truth_dtype(bands)
    truth = f["truth"]
    if truth.ndim != 1 or truth.dtype != tdt:
        have = list(truth.dtype.names or ())
        missing = [c for c in tdt.names if c not in have]
        extra = [c for c in have if c not in tdt.names]
        raise DataFileError(
            f"{path}: dataset 'truth' does not match the contract (shape {truth.shape}, "
            f"missing columns {missing}, unexpected columns {extra}, dtype {truth.dtype})"
        )
    for name in DATASETS:
        if not f[name].fletcher32:
            raise DataFileError(
                f"{path}: dataset {name!r} has no fletcher32 checksum, which the contract "
                "requires (corruption would go unnoticed)"
            )


def read_checked(ds: h5py.Dataset, key: Any, path: str | os.PathLike) -> np.ndarray:
    """``ds[key]`` with read failures (checksum, truncation) as DataFileError."""
    try:
        return ds[key]
    except H5_ERRORS as exc:
        raise DataFileError(
            f"{path} is corrupt: reading dataset {ds.name.lstrip('/')!r} failed ({exc}); "
            f"{REGENERATE_HINT}"
        ) from exc


def check_content(
    path: str | os.PathLike,
    n_galaxies: np.ndarray,
    centers: np.ndarray,
    k: int,
    start: int = 0,
) -> None:
    """Check the per-blend bookkeeping (n_galaxies range, NaN pattern of centers)."""
    bad = np.flatnonzero((n_galaxies < 0) | (n_galaxies > k))
    if bad.size:
        i = int(bad[0])
        raise DataFileError(
            f"{path}: n_galaxies of blend {start + i} is {int(n_galaxies[i])}; allowed 0..{k}"
        )
    filled = np.arange(k)[None, :] < n_galaxies[:, None]
    finite = np.isfinite(centers).all(axis=-1)
    bad_slots = filled != finite
    if bad_slots.any():
        i, slot = (int(v) for v in np.argwhere(bad_slots)[0])
        raise DataFileError(
            f"{path}: centers of blend {start + i} slot {slot} is {centers[i, slot]} but "
            f"n_galaxies is {int(n_galaxies[i])} (finite in filled slots, NaN in empty ones)"
        )


def validate_file(path: str | os.PathLike, *, deep: bool = False) -> FileLayout:
    """Check that ``path`` is a data file this kit can read.

    Parameters
    ----------
    path : str or path-like
        The file.
    deep : bool
        Also read every chunk (verifying every checksum) and check the per-blend
        bookkeeping (``n_galaxies`` in ``[0, K]``, ``centers`` finite exactly in the
        filled slots, truth ``blend_index`` sorted and in range). Costs a full read.

    Returns
    -------
    FileLayout
        Sizes, bands and decoded attributes.

    Raises
    ------
    DataFileError
        One error naming the file and the first problem found: missing, not HDF5
        or truncated, not ours (no ``kit`` attribute), another schema version, a
        missing dataset, inconsistent shapes or dtypes, or (deep) corrupt data.
    """
    with open_data_file(path) as f:
        layout = read_layout(f, path)
        if deep:
            n_gal = read_checked(f["n_galaxies"], slice(None), path)
            centers = read_checked(f["centers"], slice(None), path)
            check_content(path, n_gal, centers, layout.max_galaxies)
            for name in ("blend", "isolated", "psf", "noise_sigma"):
                ds = f[name]
                rows = block_rows(ds)
                for lo in range(0, layout.n_blends, rows):
                    read_checked(ds, slice(lo, lo + rows), path)
            index = read_checked(f["truth"], slice(None), path)["blend_index"]
            if index.size and (
                np.any(np.diff(index) < 0) or index[0] < 0 or index[-1] >= layout.n_blends
            ):
                raise DataFileError(
                    f"{path}: truth blend_index is not sorted within [0, {layout.n_blends})"
                )
    return layout


def block_rows(ds: Any) -> int:
    """Rows per read so that one read buffer stays under ``READ_BLOCK_BYTES``."""
    row_bytes = int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize
    return max(1, READ_BLOCK_BYTES // max(1, row_bytes))


