"""Writing and reading the challenge's HDF5 data files (schema version 2).

The layout is the contract in ``data/README.md``: per-blend datasets ``blend``
(N, C, H, W), ``isolated`` (N, K, C, H, W), ``psf`` (N, C, P, P), ``noise_sigma``
(N, C), ``centers`` (N, K, 2) and ``n_galaxies`` (N,), a compound ``truth`` table
with one row per galaxy, and root attributes (``schema_version``, ``kit``,
``bands``, ``pixel_scale``, ...). Every dataset is chunked (one blend per chunk for
the per-blend ones), gzip-compressed with the shuffle filter and protected by
HDF5's fletcher32 checksum. Files are written in the HDF5 1.10 format, whose
metadata (object headers, chunk indexes) carries checksums too, the root
attributes are covered by a SHA-256 stored in the ``attrs_sha256`` attribute,
and string attributes are fixed-length UTF-8 (no variable-length data, so no
unchecksummed HDF5 global heap, whose damage can make the library hang), so a
flipped bit or a truncated file is an error on read, never silently wrong data.

Writing goes through :class:`DatasetWriter`, which fills a temporary file next to
the target and moves it into place atomically on success. Reading goes through
:func:`read_dataset` (whole file, in memory or lazily), :func:`read_batches`
(out-of-core streaming) and :func:`validate_file`. Every problem with a file is a
single :class:`~deblendkit.errors.DataFileError` that names the file and the
problem.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from deblendkit.errors import ConfigError, DataFileError, OutputExistsError
from deblendkit.storage.codec import write_rows

__all__ = [
    "SCHEMA_VERSION",
    "KIT_NAME",
    "PER_BLEND_DATASETS",
    "DATASETS",
    "truth_dtype",
    "DatasetWriter",
    "FileLayout",
    "Dataset",
    "H5Source",
    "H5Array",
    "validate_file",
    "read_dataset",
    "read_batches",
    "LazyRows",
    "write_rows_file",
    "remove_stale_temp_files",
    "attrs_digest",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
"""Version of the file layout this module writes and reads (2: ``contamination`` column;
version-1 files are refused with a DataFileError asking to regenerate them)."""

KIT_NAME = "deblendkit"
"""Value of the ``kit`` root attribute that marks a file as ours."""

PER_BLEND_DATASETS: tuple[str, ...] = (
    "blend",
    "isolated",
    "psf",
    "noise_sigma",
    "centers",
    "n_galaxies",
)
"""The datasets with one row (and one chunk) per blend, in contract order."""

DATASETS: tuple[str, ...] = PER_BLEND_DATASETS + ("truth",)
"""Every dataset a valid file holds."""

_DTYPES: dict[str, np.dtype] = {
    "blend": np.dtype(np.float32),
    "isolated": np.dtype(np.float32),
    "psf": np.dtype(np.float32),
    "noise_sigma": np.dtype(np.float32),
    "centers": np.dtype(np.float32),
    "n_galaxies": np.dtype(np.int32),
}

_GZIP_LEVEL = 1  # level 4 was 30% slower to write for 1.5% less disk
_TRUTH_CHUNK_ROWS = 4096
# Upper bound of the temporary buffer used to read scattered rows (bytes).
_READ_BLOCK_BYTES = 16 * 2**20
_RESERVED_ATTRS = ("schema_version", "kit", "attrs_sha256")
#: HDF5 file-format bounds of written files: the 1.10 format checksums its metadata.
_LIBVER = ("v110", "v110")
#: h5py errors that mean "this file is damaged" (metadata checksum failures surface
#: as KeyError / RuntimeError from h5py, data checksum failures as OSError).
_H5_ERRORS = (OSError, KeyError, RuntimeError)
_REGENERATE_HINT = "regenerate it with `python prepare_data.py --overwrite`"


# --------------------------------------------------------------------------
# Truth table
# --------------------------------------------------------------------------
def _check_bands(bands: Any) -> tuple[str, ...]:
    if isinstance(bands, str) or not isinstance(bands, Sequence):
        raise ConfigError(
            f"bands must be a sequence of band names such as ('g', 'r'), got {bands!r}"
        )
    bands = tuple(bands)
    if not bands:
        raise ConfigError("bands must name at least one band, got an empty sequence")
    for band in bands:
        if not isinstance(band, str) or not band or not band.isidentifier():
            raise ConfigError(
                f"band names must be non-empty identifiers such as 'r', got {band!r} in {bands!r}"
            )
    if len(set(bands)) != len(bands):
        raise ConfigError(f"band names must be unique, got {bands!r}")
    return bands


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
        (float64), ``labelled`` (int8) and ``contamination`` (float64). See
        ``data/README.md``.
    """
    bands = _check_bands(bands)
    f8, i2 = np.float64, np.int16
    fields: list[tuple[str, Any]] = [
        ("blend_index", np.int64),
        ("slot", i2),
        ("x", f8),
        ("y", f8),
    ]
    for prefix in ("flux", "mag", "stamp_flux"):
        fields += [(f"{prefix}_{band}", f8) for band in bands]
    fields += [
        ("hlr_disk", f8),
        ("hlr_bulge", f8),
        ("e1", f8),
        ("e2", f8),
        ("bulge_fraction", f8),
        ("redshift", f8),
        ("sed_bulge", i2),
        ("sed_disk", i2),
        ("blendedness", f8),
        ("snr", f8),
        ("labelled", np.int8),
        ("contamination", f8),
    ]
    return np.dtype(fields)


def _as_truth_array(rows: Any, dtype: np.dtype) -> np.ndarray:
    """Convert a structured array or a DataFrame to a 1-D array of ``dtype``."""
    if isinstance(rows, pd.DataFrame):
        names = list(rows.columns)
        get = lambda name: rows[name].to_numpy()  # noqa: E731
        n = len(rows)
    else:
        arr = np.asarray(rows)
        if arr.dtype.names is None or arr.ndim != 1:
            raise ConfigError(
                "truth_rows must be a pandas DataFrame or a 1-D structured array with "
                f"the fields of truth_dtype(bands), got {type(rows).__name__} "
                f"of dtype {arr.dtype} and shape {arr.shape}"
            )
        names = list(arr.dtype.names)
        get = lambda name: arr[name]  # noqa: E731
        n = arr.shape[0]
    expected = list(dtype.names)
    missing = [name for name in expected if name not in names]
    extra = [name for name in names if name not in expected]
    if missing or extra:
        raise ConfigError(
            f"truth_rows has the wrong columns: missing {missing}, unexpected {extra}; "
            f"expected {expected}"
        )
    out = np.empty(n, dtype=dtype)
    for name in expected:
        out[name] = get(name)
    return out


# --------------------------------------------------------------------------
# Attributes
# --------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encode_attr(name: str, value: Any) -> Any:
    """The value stored in HDF5 for a root attribute (containers become JSON)."""
    if isinstance(value, (Mapping, list, tuple, np.ndarray)):
        try:
            return json.dumps(value, default=_json_default, sort_keys=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"attribute {name!r} cannot be stored as JSON: {exc}"
            ) from exc
    if isinstance(value, (str, bool, np.bool_, numbers.Integral, numbers.Real)):
        return value.item() if isinstance(value, np.generic) else value
    raise ConfigError(
        f"attribute {name!r} has type {type(value).__name__}; allowed: str, int, float, "
        "bool, or a dict/list/tuple/ndarray (stored as JSON)"
    )


def _decode_attr(value: Any) -> Any:
    """A root attribute as Python: numpy scalars unwrapped, JSON containers decoded."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _store_attr(attrs: h5py.AttributeManager, name: str, value: Any) -> None:
    """Set a root attribute; strings as fixed-length UTF-8.

    Fixed-length strings live in the (checksummed) object header. Variable-length
    ones, h5py's default for ``str``, live in HDF5's global heap, which has no
    checksum: one flipped bit in an object's length there makes the HDF5 library
    loop forever when the attribute is read (found by flipping every bit of a
    small file). h5py reads these attributes back as ``numpy.bytes_``;
    :func:`_decode_attr` turns them into ``str``.
    """
    if isinstance(value, str):
        data = value.encode("utf-8")
        attrs.create(name, data=np.array(data, dtype=h5py.string_dtype("utf-8", max(1, len(data)))))
    else:
        attrs[name] = value


def _canonical_attr(value: Any) -> Any:
    """A stored attribute value as plain JSON-able Python (for the digest)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def attrs_digest(attrs: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of root attributes as stored, ``attrs_sha256`` itself left out.

    The attributes are serialised as canonical JSON (sorted names, numpy scalars
    as Python numbers, floats written exactly), so the digest of the values read
    back from a file equals the digest of the values written.
    """
    items = {
        str(name): _canonical_attr(value)
        for name, value in attrs.items()
        if name != "attrs_sha256"
    }
    text = json.dumps(items, sort_keys=True, default=_json_default, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8", errors="surrogateescape")).hexdigest()


# --------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------
def _positive_int(name: str, value: Any, *, odd: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if odd and value % 2 == 0:
        raise ConfigError(f"{name} must be odd (the PSF is centred on a pixel), got {value}")
    return int(value)


def _dataset_options(shape: tuple[int, ...]) -> dict[str, Any]:
    """Creation options of a per-blend dataset: one blend per chunk, gzip + shuffle, fletcher32."""
    return dict(
        chunks=(1,) + tuple(shape[1:]),
        compression="gzip",
        compression_opts=_GZIP_LEVEL,
        shuffle=True,
        fletcher32=True,
    )


def _row_shapes(n: int, k: int, c: int, s: int, p: int) -> dict[str, tuple[int, ...]]:
    return {
        "blend": (n, c, s, s),
        "isolated": (n, k, c, s, s),
        "psf": (n, c, p, p),
        "noise_sigma": (n, c),
        "centers": (n, k, 2),
        "n_galaxies": (n,),
    }


def _coerce_rows(shapes: Mapping[str, tuple[int, ...]], given: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The given arrays with the expected shapes, as the contract's dtypes (ConfigError otherwise)."""
    arrays: dict[str, np.ndarray] = {}
    for name, want in shapes.items():
        arr = np.asarray(given[name])
        if arr.shape != want:
            raise ConfigError(f"{name} must have shape {want}, got {arr.shape}")
        kind = "iu" if name == "n_galaxies" else "fiu"
        if arr.dtype.kind not in kind:
            raise ConfigError(f"{name} must be numeric, got dtype {arr.dtype}")
        arrays[name] = arr.astype(_DTYPES[name], copy=False)
    return arrays


def _check_pixels(start: int, arrays: Mapping[str, np.ndarray], k: int) -> None:
    """Every pixel finite; empty slots of ``isolated`` all zero (ConfigError naming the blend)."""
    n = arrays["blend"].shape[0]
    for name in ("blend", "isolated", "psf", "noise_sigma"):
        arr = arrays[name]
        if not np.isfinite(arr.sum(dtype=np.float64)) and not np.isfinite(arr).all():
            bad_rows = ~np.isfinite(arr.reshape(n, -1)).all(axis=1)
            i = int(np.flatnonzero(bad_rows)[0])
            count = int((~np.isfinite(arr[i])).sum())
            raise ConfigError(
                f"{name} of blend {start + i} has {count} NaN or inf value(s); every pixel must "
                "be finite (an overflow in the simulation? check the config's ranges)"
            )
    n_gal = arrays["n_galaxies"]
    filled = np.arange(k)[None, :] < n_gal[:, None]  # (n, K)
    empty_nonzero = (arrays["isolated"] != 0).any(axis=(2, 3, 4)) & ~filled
    if empty_nonzero.any():
        i, slot = (int(v) for v in np.argwhere(empty_nonzero)[0])
        raise ConfigError(
            f"isolated image of blend {start + i} slot {slot} is not zero, but the blend "
            f"has n_galaxies = {int(n_gal[i])} (empty slots must be all zeros)"
        )


def _check_bookkeeping(start: int, n_gal: np.ndarray, centers: np.ndarray, truth: np.ndarray, k: int,
                       *, pixels: Mapping[str, np.ndarray] | None = None) -> None:
    """n_galaxies in range, the NaN pattern of centers, (the pixels,) truth rows matching the slots."""
    n = n_gal.shape[0]
    bad = np.flatnonzero((n_gal < 0) | (n_gal > k))
    if bad.size:
        i = int(bad[0])
        raise ConfigError(
            f"n_galaxies of blend {start + i} is {int(n_gal[i])}; allowed 0..{k}"
        )
    filled = np.arange(k)[None, :] < n_gal[:, None]  # (n, K)
    finite = np.isfinite(centers).all(axis=-1)
    nan = np.isnan(centers).all(axis=-1)
    bad_blend = (filled & ~finite) | (~filled & ~nan)
    if bad_blend.any():
        i, slot = (int(v) for v in np.argwhere(bad_blend)[0])
        raise ConfigError(
            f"centers of blend {start + i} slot {slot} is {centers[i, slot]}; "
            f"expected finite (x, y) in slots < n_galaxies = {int(n_gal[i])} and NaN after"
        )
    if pixels is not None:
        _check_pixels(start, pixels, k)
    index = truth["blend_index"]
    outside = (index < start) | (index >= start + n)
    if outside.any():
        raise ConfigError(
            f"truth_rows has blend_index {int(index[outside][0])}, outside the rows "
            f"[{start}, {start + n}) written"
        )
    labelled = truth[truth["labelled"] != 0]
    local = labelled["blend_index"] - start
    slots = labelled["slot"].astype(np.int64)
    bad = np.flatnonzero((slots < 0) | (slots >= n_gal[local]))
    if bad.size:
        j = int(bad[0])
        raise ConfigError(
            f"truth row of blend {int(labelled['blend_index'][j])} has slot {int(slots[j])}; "
            f"allowed 0..{int(n_gal[local[j]]) - 1} (n_galaxies = {int(n_gal[local[j]])})"
        )
    keys = np.sort(local * k + slots)
    dup = keys[1:][np.diff(keys) == 0]
    if dup.size:
        raise ConfigError(
            f"blend {start + int(dup[0] // k)} has two labelled truth rows for slot "
            f"{int(dup[0] % k)}; each slot 0..n_galaxies-1 needs exactly one row"
        )
    counts = np.bincount(local, minlength=n)
    wrong = np.flatnonzero(counts != n_gal)
    if wrong.size:
        i = int(wrong[0])
        raise ConfigError(
            f"blend {start + i} has {int(counts[i])} labelled truth rows for "
            f"n_galaxies = {int(n_gal[i])}; each slot 0..n_galaxies-1 needs exactly one row"
        )


_ROWS_KIT = KIT_NAME + "-rows"


def write_rows_file(
    path: str | os.PathLike,
    start: int,
    *,
    bands: Sequence[str],
    max_galaxies: int,
    arrays: Mapping[str, Any],
    truth_rows: np.ndarray | pd.DataFrame,
) -> None:
    """Write blend rows to a standalone *rows file* (HDF5) for :meth:`DatasetWriter.copy_rows`.

    The rows are checked as :meth:`DatasetWriter.write` checks them (shapes,
    finite pixels, zero empty slots, centres, truth rows) and stored with the
    final file's chunking and filters (one blend per chunk, gzip + shuffle,
    fletcher32), so that assembling a data file copies the compressed chunks as
    they are instead of compressing them again: the compression happens where
    the rows are made (a worker), not in the serial assembly.

    Parameters
    ----------
    path : the rows file (written directly; make it atomic around this call).
    start : index of the first blend in the final file.
    bands : band names (C).
    max_galaxies : slots K.
    arrays : ``blend``, ``isolated``, ``psf``, ``noise_sigma``, ``centers``,
        ``n_galaxies`` of n blends (shapes as :meth:`DatasetWriter.write`).
    truth_rows : their truth rows.

    Raises
    ------
    ConfigError
        The rows break the contract.
    """
    bands = _check_bands(bands)
    k = _positive_int("max_galaxies", max_galaxies)
    if isinstance(start, bool) or not isinstance(start, numbers.Integral) or start < 0:
        raise ConfigError(f"start must be an integer >= 0, got {start!r}")
    blend = np.asarray(arrays["blend"])
    psf = np.asarray(arrays["psf"])
    if blend.ndim != 4 or psf.ndim != 4:
        raise ConfigError(f"blend and psf must be 4-D, got shapes {blend.shape} and {psf.shape}")
    shapes = _row_shapes(blend.shape[0], k, len(bands), blend.shape[-1], psf.shape[-1])
    rows = _coerce_rows(shapes, arrays)
    truth = _as_truth_array(truth_rows, truth_dtype(bands))
    _check_bookkeeping(int(start), rows["n_galaxies"], rows["centers"], truth, k, pixels=rows)
    try:
        with h5py.File(path, "w", libver=_LIBVER) as f:
            _store_attr(f.attrs, "kit", _ROWS_KIT)
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["start"] = int(start)
            _store_attr(f.attrs, "bands", json.dumps(list(bands)))
            for name, arr in rows.items():
                ds = f.create_dataset(name, shape=arr.shape, dtype=arr.dtype, **_dataset_options(arr.shape))
                write_rows(ds, 0, arr)
            f.create_dataset("truth", data=truth)
    except OSError as exc:
        raise DataFileError(f"cannot write the rows file {path}: {exc}") from exc


class DatasetWriter:
    """Write a data file atomically, blend rows in any order.

    Use as a context manager. On entry the target is checked and a temporary file
    ``.<name>.<pid>.tmp`` is created in the same directory; :meth:`write` fills
    rows; on a clean exit, once every row is written, the truth table is sorted by
    ``(blend_index, slot)`` and written, the file is flushed, fsynced and moved onto
    ``path`` with :func:`os.replace`. On an exception (or if rows are missing) the
    temporary file is removed and no file appears at ``path``.

    Parameters
    ----------
    path : str or path-like
        The final file, e.g. ``data/train.h5``.
    n_blends : int
        Number of blends N (rows of every per-blend dataset).
    bands : sequence of str
        Band names, C of them.
    max_galaxies : int
        Number of slots K per blend.
    stamp_size : int
        Stamp side H = W in pixels.
    psf_size : int
        PSF stamp side P in pixels (odd).
    attrs : mapping
        Root attributes (see ``data/README.md``): ``pixel_scale`` (arcsec/pixel) is
        required; ``schema_version`` and ``kit`` are set here and may not be given;
        ``bands``, if given, must equal ``bands``; ``created`` (ISO time, UTC) and
        ``units`` ("ADU") default when absent. Dicts, lists, tuples and arrays are
        stored as JSON strings.
    overwrite : bool
        Replace an existing file at ``path``.

    Raises
    ------
    ConfigError
        An argument (or an array given to :meth:`write`) is invalid.
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    DataFileError
        The directory is missing or not writable, or writing failed.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        n_blends: int,
        bands: Sequence[str],
        max_galaxies: int,
        stamp_size: int,
        psf_size: int,
        attrs: Mapping[str, Any],
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.n_blends = _positive_int("n_blends", n_blends)
        self.bands = _check_bands(bands)
        self.max_galaxies = _positive_int("max_galaxies", max_galaxies)
        self.stamp_size = _positive_int("stamp_size", stamp_size)
        self.psf_size = _positive_int("psf_size", psf_size, odd=True)
        self.overwrite = bool(overwrite)
        self.attrs = self._check_attrs(attrs)
        self.truth_dtype = truth_dtype(self.bands)
        self.tmp_path = self.path.parent / f".{self.path.name}.{os.getpid()}.tmp"
        self._file: h5py.File | None = None
        self._written = np.zeros(self.n_blends, dtype=bool)
        self._truth_parts: list[np.ndarray] = []

    # -- setup ------------------------------------------------------------
    def _check_attrs(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(attrs, Mapping):
            raise ConfigError(f"attrs must be a mapping, got {type(attrs).__name__}")
        attrs = dict(attrs)
        for name in _RESERVED_ATTRS:
            if name in attrs:
                raise ConfigError(
                    f"attribute {name!r} is set by the writer and may not be given in attrs"
                )
        if "bands" in attrs and tuple(attrs["bands"]) != self.bands:
            raise ConfigError(
                f"attrs['bands'] = {attrs['bands']!r} differs from bands={self.bands!r}"
            )
        scale = attrs.get("pixel_scale")
        if (
            isinstance(scale, bool)
            or not isinstance(scale, numbers.Real)
            or not np.isfinite(scale)
            or scale <= 0
        ):
            raise ConfigError(
                f"attrs['pixel_scale'] must be a positive number of arcsec/pixel, got {scale!r}"
            )
        attrs["bands"] = list(self.bands)
        attrs.setdefault("units", "ADU")
        attrs.setdefault(
            "created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        )
        encoded = {"schema_version": SCHEMA_VERSION, "kit": KIT_NAME}
        for name, value in attrs.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"attribute names must be non-empty strings, got {name!r}")
            encoded[name] = _encode_attr(name, value)
        encoded["attrs_sha256"] = attrs_digest(encoded)
        return encoded

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return _row_shapes(
            self.n_blends, self.max_galaxies, len(self.bands), self.stamp_size, self.psf_size
        )

    def check_target(self) -> None:
        """Check now that ``path`` can be written (as entering the context does).

        Lets a caller refuse an existing file or a missing directory before any
        expensive work; entering the context checks again.

        Raises
        ------
        OutputExistsError, DataFileError
            As for the context manager.
        """
        directory = self.path.parent
        if self.path.is_dir():
            raise DataFileError(f"cannot write {self.path}: it is a directory")
        if self.path.exists() and not self.overwrite:
            raise OutputExistsError(
                f"{self.path} exists; pass overwrite=True (--overwrite on the command line) "
                "to replace it"
            )
        if not directory.is_dir():
            raise DataFileError(
                f"cannot write {self.path}: directory {directory} does not exist"
            )
        if not os.access(directory, os.W_OK | os.X_OK):
            raise DataFileError(
                f"cannot write {self.path}: directory {directory} is not writable"
            )

    def __enter__(self) -> "DatasetWriter":
        if self._file is not None:
            raise ConfigError(f"DatasetWriter for {self.path} is already open")
        self.check_target()
        try:
            self._file = h5py.File(self.tmp_path, "w", libver=_LIBVER)
        except OSError as exc:
            raise DataFileError(
                f"cannot write {self.path}: creating {self.tmp_path} failed: {exc}"
            ) from exc
        try:
            for name, value in self.attrs.items():
                _store_attr(self._file.attrs, name, value)
            for name, shape in self._shapes().items():
                self._file.create_dataset(
                    name, shape=shape, dtype=_DTYPES[name], **_dataset_options(shape)
                )
        except BaseException:
            self._abort()
            raise
        logger.debug("writing %s via %s", self.path, self.tmp_path)
        return self

    # -- writing ----------------------------------------------------------
    def write(
        self,
        start: int,
        *,
        blend: np.ndarray,
        isolated: np.ndarray,
        psf: np.ndarray,
        noise_sigma: np.ndarray,
        centers: np.ndarray,
        n_galaxies: np.ndarray,
        truth_rows: np.ndarray | pd.DataFrame,
    ) -> None:
        """Write the rows ``[start, start + n)`` of every per-blend dataset.

        Parameters
        ----------
        start : int
            Index of the first blend (row) written.
        blend : ndarray, shape (n, C, H, W)
            Observed scenes, ADU.
        isolated : ndarray, shape (n, K, C, H, W)
            Noiseless isolated galaxies, ADU; slots ``>= n_galaxies`` all zeros.
        psf : ndarray, shape (n, C, P, P)
            Effective PSF per band, unit sum.
        noise_sigma : ndarray, shape (n, C)
            Background noise standard deviation, ADU per pixel.
        centers : ndarray, shape (n, K, 2)
            (x, y) in pixels, 0-based; NaN in empty slots.
        n_galaxies : ndarray, shape (n,)
            Number of galaxies per blend, in ``[0, K]``.
        truth_rows : structured ndarray or DataFrame
            The truth rows of these blends, fields of :func:`truth_dtype`;
            ``blend_index`` in ``[start, start + n)``. The labelled rows of blend
            ``b`` must occupy slots ``0 .. n_galaxies[b] - 1`` exactly once.

        Raises
        ------
        ConfigError
            Wrong shapes, out-of-range rows, rows already written, or arrays that
            break the contract (see above).
        DataFileError
            Writing to the file failed.
        """
        if self._file is None:
            raise ConfigError(
                f"DatasetWriter for {self.path} is not open; use it as a context manager"
            )
        blend = np.asarray(blend)
        if blend.ndim == 0:
            raise ConfigError("blend must have shape (n, C, H, W), got a scalar")
        n = blend.shape[0]
        if (
            isinstance(start, bool)
            or not isinstance(start, numbers.Integral)
            or start < 0
            or start + n > self.n_blends
        ):
            raise ConfigError(
                f"rows [{start}, {start}+{n}) are outside the file's {self.n_blends} blends"
            )
        start = int(start)
        stop = start + n
        if self._written[start:stop].any():
            done = start + int(np.flatnonzero(self._written[start:stop])[0])
            raise ConfigError(f"blend row {done} of {self.path} was already written")
        given = {
            "blend": blend,
            "isolated": isolated,
            "psf": psf,
            "noise_sigma": noise_sigma,
            "centers": centers,
            "n_galaxies": n_galaxies,
        }
        shapes = {name: (n,) + shape[1:] for name, shape in self._shapes().items()}
        arrays = _coerce_rows(shapes, given)
        truth = _as_truth_array(truth_rows, self.truth_dtype)
        self._check_rows(start, arrays, truth)
        try:
            for name, arr in arrays.items():
                write_rows(self._file[name], start, arr)
        except OSError as exc:
            raise DataFileError(
                f"writing rows [{start}, {stop}) of {self.tmp_path} failed: {exc}"
            ) from exc
        self._truth_parts.append(truth)
        self._written[start:stop] = True

    def _check_rows(self, start: int, arrays: dict[str, np.ndarray], truth: np.ndarray) -> None:
        """Check one batch against the contract (ConfigError naming the blend)."""
        _check_bookkeeping(start, arrays["n_galaxies"], arrays["centers"], truth, self.max_galaxies,
                           pixels=arrays)

    def copy_rows(self, path: str | os.PathLike) -> np.ndarray:
        """Copy the rows of a rows file (:func:`write_rows_file`) without re-encoding them.

        The compressed, checksummed chunks are copied byte for byte
        (``read_direct_chunk`` / ``write_direct_chunk``); their pixels were checked
        when the rows file was written. The bookkeeping (``n_galaxies``,
        ``centers``, truth rows) is checked again here.

        Returns
        -------
        ndarray
            The truth rows copied (fields of :func:`truth_dtype`).

        Raises
        ------
        ConfigError
            The rows do not fit this file (layout, range, rows already written).
        DataFileError
            The rows file cannot be read, or writing failed.
        """
        if self._file is None:
            raise ConfigError(
                f"DatasetWriter for {self.path} is not open; use it as a context manager"
            )
        try:
            src = h5py.File(path, "r")
        except (*_H5_ERRORS, ValueError) as exc:
            raise DataFileError(f"cannot read the rows file {path}: {exc}") from exc
        with src:
            try:
                if _decode_attr(src.attrs.get("kit")) != _ROWS_KIT:
                    raise ConfigError(f"{path} is not a rows file of {KIT_NAME} (write_rows_file)")
                start = int(src.attrs["start"])
                n = int(src["n_galaxies"].shape[0])
                if start < 0 or start + n > self.n_blends:
                    raise ConfigError(
                        f"rows [{start}, {start}+{n}) of {path} are outside the file's "
                        f"{self.n_blends} blends"
                    )
                if self._written[start:start + n].any():
                    done = start + int(np.flatnonzero(self._written[start:start + n])[0])
                    raise ConfigError(f"blend row {done} of {self.path} was already written")
                for name, shape in self._shapes().items():
                    ds = src[name]
                    want = (n,) + shape[1:]
                    opts = _dataset_options(want)
                    if (
                        ds.shape != want
                        or ds.dtype != _DTYPES[name]
                        or ds.chunks != opts["chunks"]
                        or ds.compression != "gzip"
                        or ds.compression_opts != _GZIP_LEVEL
                        or not ds.shuffle
                        or not ds.fletcher32
                    ):
                        raise ConfigError(
                            f"{path}: dataset {name!r} has shape {ds.shape}, dtype {ds.dtype}, "
                            f"chunks {ds.chunks}; expected {want}, {_DTYPES[name]}, chunks "
                            f"{opts['chunks']} with gzip {_GZIP_LEVEL}, shuffle and fletcher32"
                        )
                truth = _as_truth_array(src["truth"][...], self.truth_dtype)
                n_gal = src["n_galaxies"][...]
                _check_bookkeeping(start, n_gal, src["centers"][...], truth, self.max_galaxies)
                for name, shape in self._shapes().items():
                    sid, did = src[name].id, self._file[name].id
                    tail = (0,) * (len(shape) - 1)
                    for i in range(n):
                        mask, chunk = sid.read_direct_chunk((i,) + tail)
                        did.write_direct_chunk((start + i,) + tail, chunk, mask)
            except _H5_ERRORS as exc:
                raise DataFileError(f"copying the rows of {path} into {self.tmp_path} failed: {exc}") from exc
        self._truth_parts.append(truth)
        self._written[start:start + n] = True
        return truth

    # -- finishing --------------------------------------------------------
    def _abort(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # pragma: no cover - closing a broken file
                logger.debug("closing %s failed", self.tmp_path, exc_info=True)
            self._file = None
        try:
            self.tmp_path.unlink()
        except FileNotFoundError:
            pass

    def _finish(self) -> None:
        assert self._file is not None
        missing = np.flatnonzero(~self._written)
        if missing.size:
            raise DataFileError(
                f"{self.path} was not written: only {self.n_blends - missing.size} of "
                f"{self.n_blends} blend rows were written (first missing row {int(missing[0])})"
            )
        if self._truth_parts:
            truth = np.concatenate(self._truth_parts)
        else:  # pragma: no cover - n_blends >= 1 always gives a part
            truth = np.empty(0, dtype=self.truth_dtype)
        truth = truth[np.lexsort((truth["slot"], truth["blend_index"]))]
        try:
            self._file.create_dataset(
                "truth",
                data=truth,
                maxshape=(None,),
                chunks=(max(1, min(len(truth), _TRUTH_CHUNK_ROWS)),),
                compression="gzip",
                compression_opts=_GZIP_LEVEL,
                shuffle=True,
                fletcher32=True,
            )
            self._file.flush()
            self._file.close()
            self._file = None
            fd = os.open(self.tmp_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if self.path.exists() and not self.overwrite:
                raise OutputExistsError(
                    f"{self.path} appeared while it was being written; pass overwrite=True "
                    "(--overwrite on the command line) to replace it"
                )
            os.replace(self.tmp_path, self.path)
        except OutputExistsError:
            raise
        except OSError as exc:
            raise DataFileError(f"finishing {self.path} failed: {exc}") from exc
        _fsync_directory(self.path.parent)
        logger.info(
            "wrote %s: %d blends, %d truth rows, %.1f MB",
            self.path,
            self.n_blends,
            len(truth),
            self.path.stat().st_size / 1e6,
        )

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort()
            return None
        try:
            self._finish()
        except BaseException:
            self._abort()
            raise
        return None


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers of ``path`` left behind.

    A :class:`DatasetWriter` killed by a signal it cannot handle (SIGKILL, power
    loss) leaves ``.<name>.<pid>.tmp`` next to ``path`` and never a partial
    ``path``. This removes those whose process no longer runs on this machine;
    a temporary file of a live process is left alone.

    Parameters
    ----------
    path : str or path-like
        The final file, e.g. ``data/train.h5``.

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(path)
    removed = []
    prefix = f".{path.name}."
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid_text = name[len(prefix): -len(".tmp")]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        try:
            entry.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:  # pragma: no cover - permissions
            logger.warning("cannot remove stale temporary file %s: %s", entry, exc)
            continue
        logger.info("removed %s, left by an interrupted writer (pid %s)", entry, pid_text)
        removed.append(entry)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable (best effort: not every platform can fsync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platform dependent
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - platform dependent
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------
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
        return {
            "blend": (n, c, s, s),
            "isolated": (n, k, c, s, s),
            "psf": (n, c, p, p),
            "noise_sigma": (n, c),
            "centers": (n, k, 2),
            "n_galaxies": (n,),
        }


def _open(path: str | os.PathLike) -> h5py.File:
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
    except (*_H5_ERRORS, ValueError) as exc:
        raise DataFileError(
            f"{path} is not a readable HDF5 file (truncated or not HDF5): {exc}; "
            f"{_REGENERATE_HINT}"
        ) from exc


def _layout(f: h5py.File, path: str | os.PathLike) -> FileLayout:
    """Check the attributes and datasets of an open file against the contract.

    Damaged metadata (a checksum failure that h5py reports as OSError, KeyError or
    RuntimeError, or an undecodable value) is a DataFileError naming the file.
    """
    try:
        return _layout_unchecked(f, path)
    except DataFileError:
        raise
    except (*_H5_ERRORS, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise DataFileError(
            f"{path} is corrupt: reading its structure failed ({type(exc).__name__}: {exc}); "
            f"{_REGENERATE_HINT}"
        ) from exc


def _layout_unchecked(f: h5py.File, path: str | os.PathLike) -> FileLayout:
    path = Path(path)
    try:
        raw = dict(f.attrs.items())
    except _H5_ERRORS as exc:
        raise DataFileError(f"{path} is corrupt: cannot read its attributes: {exc}") from exc
    if "kit" not in raw:
        raise DataFileError(
            f"{path} is not a {KIT_NAME} data file: it has no 'kit' attribute"
        )
    attrs = {name: _decode_attr(value) for name, value in raw.items()}
    if attrs["kit"] != KIT_NAME:
        raise DataFileError(
            f"{path} is not a {KIT_NAME} data file: its 'kit' attribute is {attrs['kit']!r}"
        )
    version = attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DataFileError(
            f"{path} has schema_version {version}; this kit reads {SCHEMA_VERSION}; "
            f"{_REGENERATE_HINT}"
        )
    # Files written before the digest existed have none; every file written now does.
    stored = attrs.get("attrs_sha256")
    if stored is not None and stored != attrs_digest(raw):
        raise DataFileError(
            f"{path} is corrupt: its root attributes do not match their checksum "
            f"(attrs_sha256); {_REGENERATE_HINT}"
        )
    expected = ", ".join(DATASETS)
    for name in DATASETS:
        if name not in f or not isinstance(f[name], h5py.Dataset):
            raise DataFileError(f"{path} has no dataset {name!r}; expected {expected}")
    try:
        bands = _check_bands(attrs.get("bands"))
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
        if ds.dtype != _DTYPES[name]:
            raise DataFileError(
                f"{path}: dataset {name!r} has dtype {ds.dtype}; expected {_DTYPES[name]}"
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
    return layout


def _read(ds: h5py.Dataset, key: Any, path: str | os.PathLike) -> np.ndarray:
    """``ds[key]`` with read failures (checksum, truncation) as DataFileError."""
    try:
        return ds[key]
    except _H5_ERRORS as exc:
        raise DataFileError(
            f"{path} is corrupt: reading dataset {ds.name.lstrip('/')!r} failed ({exc}); "
            f"{_REGENERATE_HINT}"
        ) from exc


def _check_content(
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
    with _open(path) as f:
        layout = _layout(f, path)
        if deep:
            n_gal = _read(f["n_galaxies"], slice(None), path)
            centers = _read(f["centers"], slice(None), path)
            _check_content(path, n_gal, centers, layout.max_galaxies)
            for name in ("blend", "isolated", "psf", "noise_sigma"):
                ds = f[name]
                rows = _block_rows(ds)
                for lo in range(0, layout.n_blends, rows):
                    _read(ds, slice(lo, lo + rows), path)
            index = _read(f["truth"], slice(None), path)["blend_index"]
            if index.size and (
                np.any(np.diff(index) < 0) or index[0] < 0 or index[-1] >= layout.n_blends
            ):
                raise DataFileError(
                    f"{path}: truth blend_index is not sorted within [0, {layout.n_blends})"
                )
    return layout


def _block_rows(ds: h5py.Dataset | "H5Array") -> int:
    """Rows per read so that one read buffer stays under ``_READ_BLOCK_BYTES``."""
    row_bytes = int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize
    return max(1, _READ_BLOCK_BYTES // max(1, row_bytes))


# --------------------------------------------------------------------------
# Lazy, picklable access
# --------------------------------------------------------------------------
class H5Source:
    """A data file opened lazily, read-only; picklable (the state is the path).

    The handle is opened on first use and re-opened after unpickling or in a forked
    process; on (re-)opening the file is validated again and must still have the
    layout it had when this object was made.

    Parameters
    ----------
    path : str or path-like
        The file.
    layout : FileLayout, optional
        Its layout, if already validated.
    """

    def __init__(self, path: str | os.PathLike, layout: FileLayout | None = None) -> None:
        self.path = os.path.abspath(path)
        self.layout = layout if layout is not None else validate_file(self.path)
        self._file: h5py.File | None = None
        self._pid: int | None = None

    @property
    def file(self) -> h5py.File:
        """The open h5py file (opened on demand)."""
        if self._file is None or self._pid != os.getpid() or not self._file.id.valid:
            f = _open(self.path)
            try:
                layout = _layout(f, self.path)
            except BaseException:
                f.close()
                raise
            if layout != self.layout:
                f.close()
                raise DataFileError(
                    f"{self.path} changed since it was opened: now {layout}, was {self.layout}"
                )
            self._file, self._pid = f, os.getpid()
        return self._file

    def array(self, name: str) -> "H5Array":
        """Lazy view of the dataset ``name``."""
        if name not in DATASETS:
            raise KeyError(f"{name!r}; the datasets are {', '.join(DATASETS)}")
        return H5Array(self, name)

    def close(self) -> None:
        """Close the handle (it reopens on the next read)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "layout": self.layout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.layout = state["layout"]
        self._file = None
        self._pid = None

    def __repr__(self) -> str:
        return f"H5Source({self.path!r})"


class H5Array:
    """Read-only, lazy view of one dataset of a :class:`H5Source`.

    Indexing reads from the file: ``a[i]``, ``a[lo:hi]`` and ``a[index_array]`` (any
    order, repeats allowed; read as contiguous runs). ``np.asarray(a)`` reads all.
    Checksum and read failures raise :class:`DataFileError`.
    """

    def __init__(self, source: H5Source, name: str) -> None:
        self.source = source
        self.name = name
        if name == "truth":
            self.shape: tuple[int, ...] = (source.layout.n_truth,)
            self.dtype = truth_dtype(source.layout.bands)
        else:
            self.shape = source.layout.shapes()[name]
            self.dtype = _DTYPES[name]

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def _ds(self) -> h5py.Dataset:
        try:
            return self.source.file[self.name]
        except _H5_ERRORS as exc:
            raise DataFileError(
                f"{self.source.path} is corrupt: opening dataset {self.name!r} failed ({exc}); "
                f"{_REGENERATE_HINT}"
            ) from exc

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (slice, numbers.Integral)) or key is Ellipsis or isinstance(key, tuple):
            return _read(self._ds, key, self.source.path)
        return self.take(key)

    def take(self, indices: Any) -> np.ndarray:
        """Rows ``indices`` (1-D ints, any order) as an array of shape (len, ...)."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        if idx.ndim != 1:
            raise IndexError(f"row indices must be 1-D, got shape {idx.shape}")
        n = self.shape[0]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {self.name!r} with {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        uniq, inverse = np.unique(idx, return_inverse=True)
        out = np.empty((uniq.size,) + tuple(self.shape[1:]), dtype=self.dtype)
        ds = self._ds
        max_rows = _block_rows(self)
        # Split the sorted unique rows into contiguous runs of at most max_rows.
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        bounds = np.concatenate(([0], breaks, [uniq.size]))
        for a, b in zip(bounds[:-1], bounds[1:]):
            for lo in range(int(a), int(b), max_rows):
                hi = min(int(b), lo + max_rows)
                out[lo:hi] = _read(ds, slice(int(uniq[lo]), int(uniq[hi - 1]) + 1), self.source.path)
        if uniq.size == idx.size and np.array_equal(uniq, idx):
            return out
        return out[inverse.reshape(-1)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[...]
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"H5Array({self.source.path!r}, {self.name!r}, shape={self.shape}, dtype={self.dtype})"


class LazyRows:
    """Rows of one per-blend dataset of a data file, read only when indexed.

    The out-of-core stand-in for an ndarray such as the labels ``y``
    (``isolated``, shape (n, K, C, H, W), float32, ADU): it has ``shape``,
    ``dtype``, ``ndim`` and ``len``; ``rows[i]``, ``rows[lo:hi]``, ``rows[idx]``
    (int array or boolean mask) and ``np.asarray(rows)`` read from the file and
    return ndarrays (numpy semantics); :meth:`subset` returns another lazy
    view without reading; :meth:`batches` streams consecutive rows. Pickles as
    the file path and the row indices.

    Parameters
    ----------
    array : H5Array
        The dataset, e.g. ``H5Source(path).array("isolated")``.
    index : array of int, optional
        Rows of the dataset held here (default all).
    """

    def __init__(self, array: H5Array, index: Any = None) -> None:
        self.array = array
        if index is not None:
            index = np.asarray(index, dtype=np.int64)
            if index.ndim != 1:
                raise IndexError(f"row indices must be 1-D, got shape {index.shape}")
            index.flags.writeable = False
        self._index = index

    @classmethod
    def from_file(cls, path: str | os.PathLike, name: str = "isolated") -> "LazyRows":
        """All rows of dataset ``name`` of the data file ``path`` (validated now)."""
        if name not in PER_BLEND_DATASETS:
            raise ConfigError(f"{name!r} is not a per-blend dataset; allowed: {list(PER_BLEND_DATASETS)}")
        return cls(H5Source(path).array(name))

    @property
    def shape(self) -> tuple[int, ...]:
        """(rows held here, ...row shape)."""
        return (len(self),) + tuple(self.array.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        """The dataset's dtype."""
        return self.array.dtype

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.array.ndim

    @property
    def nbytes(self) -> int:
        """Bytes the rows would take in memory."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.array.shape[0] if self._index is None else int(self._index.size)

    def _rows(self, key: Any) -> np.ndarray | slice:
        """Dataset rows of ``key`` (a slice of the dataset when possible)."""
        n = len(self)
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            k = int(key)
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of range for {n} rows")
            local = np.array([k % n], dtype=np.int64)
        elif isinstance(key, slice):
            local = np.arange(n, dtype=np.int64)[key]
        else:
            idx = np.asarray(key)
            if idx.dtype == bool:
                if idx.shape != (n,):
                    raise IndexError(f"a boolean mask must have shape ({n},), got {idx.shape}")
                local = np.flatnonzero(idx)
            elif idx.size == 0:
                local = np.empty(0, dtype=np.int64)
            elif idx.ndim == 1 and idx.dtype.kind in "iu":
                local = idx.astype(np.int64)
                if local.size and (local.min() < -n or local.max() >= n):
                    raise IndexError(f"row index out of range for {n} rows")
                local = np.where(local < 0, local + n, local)
            else:
                raise IndexError(
                    "rows are indexed by an int, a slice, a 1-D int array or a boolean mask, "
                    f"got {type(key).__name__}"
                )
        return local if self._index is None else self._index[local]

    def subset(self, key: Any) -> "LazyRows":
        """Lazy view of the rows ``key`` (nothing is read)."""
        return LazyRows(self.array, self._rows(key))

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        if key is Ellipsis:
            key = slice(None)
        rows = self._rows(key)
        if rows.size and np.all(np.diff(rows) == 1):
            out = self.array[int(rows[0]): int(rows[-1]) + 1]
        else:
            out = self.array.take(rows)
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            return out[(0,) + rest]
        return out[(slice(None),) + rest] if rest else out

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Consecutive blocks of at most ``batch_size`` rows, as ndarrays."""
        batch_size = _positive_int("batch_size", batch_size)
        for start in range(0, len(self), batch_size):
            yield self[start: start + batch_size]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return (
            f"LazyRows({self.array.source.path!r}, {self.array.name!r}, shape={self.shape}, "
            f"dtype={self.dtype})"
        )


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Dataset:
    """The contents of a data file (or of a batch of it).

    Attributes
    ----------
    path : str
        Absolute path of the file.
    blend, isolated, psf, noise_sigma, centers, n_galaxies : ndarray or H5Array
        The per-blend datasets (shapes in ``data/README.md``); :class:`H5Array`
        (read on indexing) when read with ``in_memory=False``.
    truth : pandas.DataFrame
        The truth rows (of this batch), sorted by ``(blend_index, slot)``;
        ``blend_index`` counts rows of the whole file.
    attrs : dict
        Root attributes, JSON values decoded.
    start : int
        Row of the file that is row 0 here (non-zero for batches).
    source : H5Source or None
        The open file when read lazily; :meth:`close` closes it.
    """

    path: str
    blend: Any
    isolated: Any
    psf: Any
    noise_sigma: Any
    centers: Any
    n_galaxies: Any
    truth: pd.DataFrame
    attrs: dict[str, Any]
    start: int = 0
    source: H5Source | None = dataclasses.field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.n_galaxies)

    @property
    def n_blends(self) -> int:
        """Number of blends in this dataset (or batch)."""
        return len(self)

    @property
    def bands(self) -> tuple[str, ...]:
        """Band names."""
        return tuple(self.attrs["bands"])

    @property
    def pixel_scale(self) -> float:
        """Pixel scale, arcsec/pixel."""
        return float(self.attrs["pixel_scale"])

    @property
    def max_galaxies(self) -> int:
        """Number of slots K."""
        return int(self.isolated.shape[1])

    @property
    def stamp_size(self) -> int:
        """Stamp side H = W, pixels."""
        return int(self.blend.shape[-1])

    @property
    def psf_size(self) -> int:
        """PSF stamp side P, pixels."""
        return int(self.psf.shape[-1])

    def close(self) -> None:
        """Close the file of a lazily read dataset (no-op in memory)."""
        if self.source is not None:
            self.source.close()

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _truth_frame(rows: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows) if rows.size else pd.DataFrame(
        {name: pd.Series(dtype=rows.dtype[name]) for name in rows.dtype.names}
    )


def read_dataset(path: str | os.PathLike, *, in_memory: bool = True) -> Dataset:
    """Read a data file.

    Parameters
    ----------
    path : str or path-like
        The file.
    in_memory : bool
        Read every dataset into memory (verifying every checksum and the per-blend
        bookkeeping). With False, the per-blend datasets are :class:`H5Array` views
        read on indexing (call :meth:`Dataset.close` when done); the truth table is
        always read.

    Returns
    -------
    Dataset

    Raises
    ------
    DataFileError
        See :func:`validate_file`; also a checksum failure while reading.
    """
    with _open(path) as f:
        layout = _layout(f, path)
        truth = _truth_frame(_read(f["truth"], slice(None), path))
        if in_memory:
            arrays = {name: _read(f[name], slice(None), path) for name in PER_BLEND_DATASETS}
            _check_content(path, arrays["n_galaxies"], arrays["centers"], layout.max_galaxies)
            return Dataset(path=layout.path, truth=truth, attrs=layout.attrs, **arrays)
    source = H5Source(layout.path, layout)
    arrays = {name: source.array(name) for name in PER_BLEND_DATASETS}
    return Dataset(path=layout.path, truth=truth, attrs=layout.attrs, source=source, **arrays)


def read_batches(path: str | os.PathLike, batch_size: int) -> Iterator[Dataset]:
    """Stream a data file in batches of consecutive blends.

    Memory grows with ``batch_size``, not with the file: each batch reads its rows
    of every per-blend dataset and its truth rows (located through the sorted
    ``blend_index`` column), then is released by the caller.

    Parameters
    ----------
    path : str or path-like
        The file.
    batch_size : int
        Blends per batch (the last one may be shorter).

    Yields
    ------
    Dataset
        In-memory arrays of rows ``[start, start + n)``; ``start`` gives the first
        row; the truth rows keep the file's ``blend_index``.

    Raises
    ------
    ConfigError
        ``batch_size`` is not a positive integer.
    DataFileError
        See :func:`validate_file`; also a checksum failure while reading.
    """
    batch_size = _positive_int("batch_size", batch_size)
    with _open(path) as f:
        layout = _layout(f, path)
        truth_ds = f["truth"]
        try:
            index = truth_ds.fields("blend_index")[:]
        except _H5_ERRORS as exc:
            raise DataFileError(
                f"{path} is corrupt: reading dataset 'truth' failed ({exc}); {_REGENERATE_HINT}"
            ) from exc
        if index.size and np.any(np.diff(index) < 0):
            raise DataFileError(f"{path}: truth blend_index is not sorted")
        for start in range(0, layout.n_blends, batch_size):
            stop = min(start + batch_size, layout.n_blends)
            rows = slice(start, stop)
            arrays = {name: _read(f[name], rows, path) for name in PER_BLEND_DATASETS}
            _check_content(
                path, arrays["n_galaxies"], arrays["centers"], layout.max_galaxies, start
            )
            lo, hi = np.searchsorted(index, [start, stop])
            truth = _truth_frame(_read(truth_ds, slice(int(lo), int(hi)), path))
            batch = Dataset(
                path=layout.path, truth=truth, attrs=layout.attrs, start=start, **arrays
            )
            # Hold no reference while the next batch is read: memory stays one batch.
            del arrays, truth
            yield batch
            del batch
