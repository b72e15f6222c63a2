"""Writing data files: :class:`DatasetWriter` (atomic), rows files, stale temporary files.

:class:`DatasetWriter` fills a temporary file ``.<name>.<pid>.tmp`` next to the
target and moves it into place atomically on success (fsync, :func:`os.replace`,
directory fsync). :func:`write_rows_file` writes a chunk of blends with the final
file's chunking and filters, which :meth:`DatasetWriter.copy_rows` copies byte
for byte. :func:`remove_stale_temp_files` removes what killed writers left.
The layout comes from :mod:`deblendkit.storage.schema`.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from deblendkit._checks import non_negative_int, positive_int
from deblendkit._fs import fsync_directory
from deblendkit.errors import ConfigError, DataFileError, OutputExistsError
from deblendkit.storage.attrs import RESERVED_ATTRS, attrs_digest, decode_attr, encode_attr, store_attr
from deblendkit.storage.codec import write_rows
from deblendkit.storage.reader import H5_ERRORS
from deblendkit.storage.row_checks import as_truth_array, check_bookkeeping, coerce_rows
from deblendkit.storage.schema import (
    DTYPES,
    KIT_NAME,
    ROWS_KIT_NAME,
    SCHEMA_VERSION,
    check_bands,
    dataset_shapes,
    truth_dtype,
)
from deblendkit.storage.truth_spill import TruthSpill

__all__ = ["DatasetWriter", "write_rows_file", "remove_stale_temp_files", "GZIP_LEVEL", "LIBVER"]

logger = logging.getLogger(__name__)

GZIP_LEVEL = 1  # level 4 was 30% slower to write for 1.5% less disk
_TRUTH_CHUNK_ROWS = 4096
#: HDF5 file-format bounds of written files: the 1.10 format checksums its metadata.
LIBVER = ("v110", "v110")


def _psf_size(value: Any) -> int:
    value = positive_int("psf_size", value)
    if value % 2 == 0:
        raise ConfigError(f"psf_size must be odd (the PSF is centred on a pixel), got {value}",
                          value=value, allowed="an odd integer >= 1")
    return value


def _dataset_options(shape: tuple[int, ...]) -> dict[str, Any]:
    """Creation options of a per-blend dataset: one blend per chunk, gzip + shuffle, fletcher32."""
    return dict(
        chunks=(1,) + tuple(shape[1:]),
        compression="gzip",
        compression_opts=GZIP_LEVEL,
        shuffle=True,
        fletcher32=True,
    )



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
    bands = check_bands(bands)
    k = positive_int("max_galaxies", max_galaxies)
    start = non_negative_int("start", start)
    blend = np.asarray(arrays["blend"])
    psf = np.asarray(arrays["psf"])
    if blend.ndim != 4 or psf.ndim != 4:
        raise ConfigError(f"blend and psf must be 4-D, got shapes {blend.shape} and {psf.shape}")
    shapes = dataset_shapes(blend.shape[0], k, len(bands), blend.shape[-1], psf.shape[-1])
    rows = coerce_rows(shapes, arrays)
    truth = as_truth_array(truth_rows, truth_dtype(bands))
    check_bookkeeping(int(start), rows["n_galaxies"], rows["centers"], truth, k, pixels=rows)
    try:
        with h5py.File(path, "w", libver=LIBVER) as f:
            store_attr(f.attrs, "kit", ROWS_KIT_NAME)
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["start"] = int(start)
            store_attr(f.attrs, "bands", json.dumps(list(bands)))
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
        self.n_blends = positive_int("n_blends", n_blends)
        self.bands = check_bands(bands)
        self.max_galaxies = positive_int("max_galaxies", max_galaxies)
        self.stamp_size = positive_int("stamp_size", stamp_size)
        self.psf_size = _psf_size(psf_size)
        self.overwrite = bool(overwrite)
        self.attrs = self._check_attrs(attrs)
        self.truth_dtype = truth_dtype(self.bands)
        self.tmp_path = self.path.parent / f".{self.path.name}.{os.getpid()}.tmp"
        self._file: h5py.File | None = None
        self._written = np.zeros(self.n_blends, dtype=bool)
        # the truth rows wait on disk, not in memory, until the table is written at the end
        self._truth = TruthSpill(self.tmp_path.with_suffix(".truth.tmp"),
                                 dtype=self.truth_dtype, max_galaxies=self.max_galaxies)

    # -- setup ------------------------------------------------------------
    def _check_attrs(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(attrs, Mapping):
            raise ConfigError(f"attrs must be a mapping, got {type(attrs).__name__}")
        attrs = dict(attrs)
        for name in RESERVED_ATTRS:
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
            encoded[name] = encode_attr(name, value)
        encoded["attrs_sha256"] = attrs_digest(encoded)
        return encoded

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return dataset_shapes(
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
            self._file = h5py.File(self.tmp_path, "w", libver=LIBVER)
        except OSError as exc:
            raise DataFileError(
                f"cannot write {self.path}: creating {self.tmp_path} failed: {exc}"
            ) from exc
        try:
            for name, value in self.attrs.items():
                store_attr(self._file.attrs, name, value)
            for name, shape in self._shapes().items():
                self._file.create_dataset(
                    name, shape=shape, dtype=DTYPES[name], **_dataset_options(shape)
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
        self._check_unwritten(start, stop)
        given = dict(blend=blend, isolated=isolated, psf=psf, noise_sigma=noise_sigma, centers=centers,
                     n_galaxies=n_galaxies)
        shapes = {name: (n,) + shape[1:] for name, shape in self._shapes().items()}
        arrays = coerce_rows(shapes, given)
        truth = as_truth_array(truth_rows, self.truth_dtype)
        self._check_rows(start, arrays, truth)
        try:
            for name, arr in arrays.items():
                write_rows(self._file[name], start, arr)
        except OSError as exc:
            raise DataFileError(
                f"writing rows [{start}, {stop}) of {self.tmp_path} failed: {exc}"
            ) from exc
        self._truth.append(truth)
        self._written[start:stop] = True

    def _check_unwritten(self, start: int, stop: int) -> None:
        if self._written[start:stop].any():
            done = start + int(np.flatnonzero(self._written[start:stop])[0])
            raise ConfigError(f"blend row {done} of {self.path} was already written")

    def _check_rows(self, start: int, arrays: dict[str, np.ndarray], truth: np.ndarray) -> None:
        """Check one batch against the contract (ConfigError naming the blend)."""
        check_bookkeeping(start, arrays["n_galaxies"], arrays["centers"], truth, self.max_galaxies,
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
        except (*H5_ERRORS, ValueError) as exc:
            raise DataFileError(f"cannot read the rows file {path}: {exc}") from exc
        with src:
            try:
                if decode_attr(src.attrs.get("kit")) != ROWS_KIT_NAME:
                    raise ConfigError(f"{path} is not a rows file of {KIT_NAME} (write_rows_file)")
                start = int(src.attrs["start"])
                n = int(src["n_galaxies"].shape[0])
                if start < 0 or start + n > self.n_blends:
                    raise ConfigError(
                        f"rows [{start}, {start}+{n}) of {path} are outside the file's "
                        f"{self.n_blends} blends"
                    )
                self._check_unwritten(start, start + n)
                for name, shape in self._shapes().items():
                    ds = src[name]
                    want = (n,) + shape[1:]
                    opts = _dataset_options(want)
                    if (
                        ds.shape != want
                        or ds.dtype != DTYPES[name]
                        or ds.chunks != opts["chunks"]
                        or ds.compression != "gzip"
                        or ds.compression_opts != GZIP_LEVEL
                        or not ds.shuffle
                        or not ds.fletcher32
                    ):
                        raise ConfigError(
                            f"{path}: dataset {name!r} has shape {ds.shape}, dtype {ds.dtype}, "
                            f"chunks {ds.chunks}; expected {want}, {DTYPES[name]}, chunks "
                            f"{opts['chunks']} with gzip {GZIP_LEVEL}, shuffle and fletcher32"
                        )
                truth = as_truth_array(src["truth"][...], self.truth_dtype)
                n_gal = src["n_galaxies"][...]
                check_bookkeeping(start, n_gal, src["centers"][...], truth, self.max_galaxies)
                for name, shape in self._shapes().items():
                    sid, did = src[name].id, self._file[name].id
                    tail = (0,) * (len(shape) - 1)
                    for i in range(n):
                        mask, chunk = sid.read_direct_chunk((i,) + tail)
                        did.write_direct_chunk((start + i,) + tail, chunk, mask)
            except H5_ERRORS as exc:
                raise DataFileError(f"copying the rows of {path} into {self.tmp_path} failed: {exc}") from exc
        self._truth.append(truth)
        self._written[start:start + n] = True
        return truth

    # -- finishing --------------------------------------------------------
    def _abort(self) -> None:
        self._truth.close()
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
        n_truth = self._truth.n_rows
        try:
            table = self._file.create_dataset(
                "truth",
                shape=(n_truth,),
                dtype=self.truth_dtype,
                maxshape=(None,),
                chunks=(max(1, min(n_truth, _TRUTH_CHUNK_ROWS)),),
                compression="gzip",
                compression_opts=GZIP_LEVEL,
                shuffle=True,
                fletcher32=True,
            )
            # sorted by (blend_index, slot); streamed from the spill file, a block at a time
            for first, rows in self._truth.blocks():
                table[first:first + len(rows)] = rows
            self._truth.close()
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
        fsync_directory(self.path.parent)
        logger.info(
            "wrote %s: %d blends, %d truth rows, %.1f MB",
            self.path,
            self.n_blends,
            n_truth,
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
    loss) leaves ``.<name>.<pid>.tmp`` (and its truth rows, ``.<name>.<pid>.truth.tmp``)
    next to ``path`` and never a partial ``path``. This removes those whose process
    no longer runs on this machine; a temporary file of a live process is left alone.

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
        pid_text = name[len(prefix): -len(".tmp")].removesuffix(".truth")  # the data or its truth rows
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
