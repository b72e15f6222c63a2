"""Reading data files whole or in batches: :class:`DataFile`, :func:`read_dataset`, :func:`read_batches`.

:func:`read_dataset` reads a whole file (in memory, every checksum verified, or
lazily through :class:`~deblendkit.storage.lazy.H5Source`); :func:`read_batches`
streams it in batches of consecutive blends (out of core). Both hand out
:class:`DataFile` objects: the datasets of a file (or of a batch of it) and its
truth table. Kept apart from :mod:`~deblendkit.storage.reader` because the lazy
views build on the reader and these functions build on the lazy views.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from deblendkit._checks import positive_int
from deblendkit.errors import DataFileError
from deblendkit.storage.lazy import H5Source
from deblendkit.storage.reader import (
    H5_ERRORS,
    REGENERATE_HINT,
    check_content,
    open_data_file,
    read_checked,
    read_layout,
)
from deblendkit.storage.schema import PER_BLEND_DATASETS

__all__ = ["DataFile", "truth_frame", "read_dataset", "read_batches"]


@dataclasses.dataclass(frozen=True)
class DataFile:
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

    def __enter__(self) -> "DataFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def truth_frame(rows: np.ndarray) -> pd.DataFrame:
    """Truth rows (structured array, :func:`~deblendkit.storage.schema.truth_dtype`) as a DataFrame.

    An empty table keeps its columns and their dtypes.
    """
    return pd.DataFrame.from_records(rows) if rows.size else pd.DataFrame(
        {name: pd.Series(dtype=rows.dtype[name]) for name in rows.dtype.names}
    )


def read_dataset(path: str | os.PathLike, *, in_memory: bool = True) -> DataFile:
    """Read a data file.

    Parameters
    ----------
    path : str or path-like
        The file.
    in_memory : bool
        Read every dataset into memory (verifying every checksum and the per-blend
        bookkeeping). With False, the per-blend datasets are :class:`H5Array` views
        read on indexing (call :meth:`DataFile.close` when done); the truth table is
        always read.

    Returns
    -------
    DataFile

    Raises
    ------
    DataFileError
        See :func:`validate_file`; also a checksum failure while reading.
    """
    with open_data_file(path) as f:
        layout = read_layout(f, path)
        truth = truth_frame(read_checked(f["truth"], slice(None), path))
        if in_memory:
            arrays = {name: read_checked(f[name], slice(None), path) for name in PER_BLEND_DATASETS}
            check_content(path, arrays["n_galaxies"], arrays["centers"], layout.max_galaxies)
            return DataFile(path=layout.path, truth=truth, attrs=layout.attrs, **arrays)
    source = H5Source(layout.path, layout)
    arrays = {name: source.array(name) for name in PER_BLEND_DATASETS}
    return DataFile(path=layout.path, truth=truth, attrs=layout.attrs, source=source, **arrays)


def read_batches(path: str | os.PathLike, batch_size: int) -> Iterator[DataFile]:
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
    DataFile
        In-memory arrays of rows ``[start, start + n)``; ``start`` gives the first
        row; the truth rows keep the file's ``blend_index``.

    Raises
    ------
    ConfigError
        ``batch_size`` is not a positive integer.
    DataFileError
        See :func:`validate_file`; also a checksum failure while reading.
    """
    batch_size = positive_int("batch_size", batch_size)
    with open_data_file(path) as f:
        layout = read_layout(f, path)
        truth_ds = f["truth"]
        try:
            index = truth_ds.fields("blend_index")[:]
        except H5_ERRORS as exc:
            raise DataFileError(
                f"{path} is corrupt: reading dataset 'truth' failed ({exc}); {REGENERATE_HINT}"
            ) from exc
        if index.size and np.any(np.diff(index) < 0):
            raise DataFileError(f"{path}: truth blend_index is not sorted")
        for start in range(0, layout.n_blends, batch_size):
            stop = min(start + batch_size, layout.n_blends)
            rows = slice(start, stop)
            arrays = {name: read_checked(f[name], rows, path) for name in PER_BLEND_DATASETS}
            check_content(
                path, arrays["n_galaxies"], arrays["centers"], layout.max_galaxies, start
            )
            lo, hi = np.searchsorted(index, [start, stop])
            truth = truth_frame(read_checked(truth_ds, slice(int(lo), int(hi)), path))
            batch = DataFile(
                path=layout.path, truth=truth, attrs=layout.attrs, start=start, **arrays
            )
            # Hold no reference while the next batch is read: memory stays one batch.
            del arrays, truth
            yield batch
            del batch
