"""The input object ``X`` that submissions receive: :class:`BlendSet`.

A :class:`BlendSet` holds what a deblender may see of N blends (never the
isolated images or the truth table): the observed scenes, PSFs, background noise
levels, galaxy centres and counts. ``X[idx]`` is a lightweight subset: it keeps a
reference to the root arrays (or to the file) and an index array, and only reads
its rows when an attribute is first accessed (then caches them), so indexing by
cross-validation folds copies nothing up front. ``X.batches(n)`` streams subsets.

All arrays handed out are read-only, so that a submission cannot alter the data
shared between folds; copy them (``np.array(X.blend)``) to modify.
"""
from __future__ import annotations

import dataclasses
import logging
import numbers
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from deblendkit._checks import positive_int
from deblendkit.errors import ConfigError
from deblendkit.storage import (
    DTYPES,
    INPUT_DATASETS,
    FileLayout,
    H5Source,
    check_bands,
    check_content,
    open_data_file,
    read_checked,
    read_layout,
)

__all__ = ["BlendSet", "load_split"]

logger = logging.getLogger(__name__)

_FIELDS: tuple[str, ...] = INPUT_DATASETS


@dataclasses.dataclass(frozen=True)
class _Meta:
    """What every subset shares: names and sizes (pixels), pixel scale (arcsec/pixel)."""

    bands: tuple[str, ...]
    pixel_scale: float
    max_galaxies: int
    stamp_size: int
    psf_size: int
    n_total: int


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def _as_range(index: np.ndarray) -> slice | None:
    """``slice(lo, hi)`` if ``index`` is ``lo, lo+1, ..., hi-1``, else None."""
    if index.size == 0:
        return slice(0, 0)
    lo = int(index[0])
    if int(index[-1]) - lo + 1 == index.size and np.all(np.diff(index) == 1):
        return slice(lo, lo + index.size)
    return None


class _MemorySource:
    """Root arrays held in memory (read-only)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = {name: _readonly(arrays[name]) for name in _FIELDS}

    def read(self, name: str, index: np.ndarray | None) -> np.ndarray:
        arr = self.arrays[name]
        if index is None:
            return arr
        rows = _as_range(index)
        if rows is not None:
            return arr[rows]  # a view of the root array, read-only like it
        return _readonly(arr[index])

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "in memory"

    def __getstate__(self) -> dict[str, Any]:
        return {"arrays": self.arrays}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled arrays are writable: make them read-only again.
        self.arrays = {name: _readonly(arr) for name, arr in state["arrays"].items()}


class _FileSource:
    """Root arrays read from a data file on demand (picklable: path and layout)."""

    def __init__(self, source: H5Source) -> None:
        self.h5 = source

    def read(self, name: str, index: np.ndarray | None) -> np.ndarray:
        arr = self.h5.array(name)
        if index is None:
            return _readonly(arr[...])
        rows = _as_range(index)
        if rows is not None:
            return _readonly(arr[rows])
        return _readonly(arr.take(index))

    def close(self) -> None:
        self.h5.close()

    def describe(self) -> str:
        return f"from {os.path.basename(self.h5.path)}"


def _check_arrays(
    arrays: dict[str, Any], bands: Any, pixel_scale: Any
) -> tuple[dict[str, np.ndarray], _Meta]:
    """Validate user-given arrays (ConfigError naming the problem)."""
    bands = check_bands(bands)
    if (
        isinstance(pixel_scale, bool)
        or not isinstance(pixel_scale, numbers.Real)
        or not np.isfinite(pixel_scale)
        or pixel_scale <= 0
    ):
        raise ConfigError(f"pixel_scale must be a positive number of arcsec/pixel, got {pixel_scale!r}")
    out: dict[str, np.ndarray] = {}
    for name in _FIELDS:
        arr = np.asarray(arrays[name])
        kinds = "iu" if name == "n_galaxies" else "fiu"
        if arr.dtype.kind not in kinds:
            raise ConfigError(f"{name} must be numeric, got dtype {arr.dtype}")
        out[name] = arr.astype(DTYPES[name], copy=False)
    blend = out["blend"]
    if blend.ndim != 4 or blend.shape[2] != blend.shape[3]:
        raise ConfigError(f"blend must have shape (n, C, H, W) with H == W, got {blend.shape}")
    n, c, s = blend.shape[0], blend.shape[1], blend.shape[2]
    if c != len(bands):
        raise ConfigError(f"blend has {c} bands (axis 1) but bands={bands!r} names {len(bands)}")
    centers = out["centers"]
    if centers.ndim != 3 or centers.shape[0] != n or centers.shape[2] != 2:
        raise ConfigError(f"centers must have shape ({n}, K, 2), got {centers.shape}")
    k = centers.shape[1]
    psf = out["psf"]
    if psf.ndim != 4 or psf.shape[:2] != (n, c) or psf.shape[2] != psf.shape[3] or psf.shape[2] % 2 == 0:
        raise ConfigError(f"psf must have shape ({n}, {c}, P, P) with P odd, got {psf.shape}")
    if out["noise_sigma"].shape != (n, c):
        raise ConfigError(f"noise_sigma must have shape ({n}, {c}), got {out['noise_sigma'].shape}")
    n_gal = out["n_galaxies"]
    if n_gal.shape != (n,):
        raise ConfigError(f"n_galaxies must have shape ({n},), got {n_gal.shape}")
    if n_gal.size and (n_gal.min() < 0 or n_gal.max() > k):
        raise ConfigError(
            f"n_galaxies must lie in 0..{k} (max_galaxies), got values "
            f"{int(n_gal.min())}..{int(n_gal.max())}"
        )
    meta = _Meta(
        bands=bands,
        pixel_scale=float(pixel_scale),
        max_galaxies=int(k),
        stamp_size=int(s),
        psf_size=int(psf.shape[2]),
        n_total=int(n),
    )
    return out, meta


class BlendSet:
    """The blends a deblender sees (``X``), possibly a lazy subset of a larger set.

    Parameters
    ----------
    blend : array_like, shape (n, C, H, W)
        Observed scenes, ADU (sky-subtracted, with noise); stored as float32.
    psf : array_like, shape (n, C, P, P)
        Effective PSF per blend and band, unit sum, P odd; float32.
    noise_sigma : array_like, shape (n, C)
        Background noise standard deviation, ADU per pixel; float32.
    centers : array_like, shape (n, K, 2)
        (x, y) galaxy centres in pixels, 0-based, NaN in empty slots; float32.
    n_galaxies : array_like, shape (n,)
        Galaxies per blend (slots ``0..n-1`` are filled); int32.
    bands : sequence of str
        Band names, C of them.
    pixel_scale : float
        Arcsec per pixel.

    Attributes
    ----------
    blend, psf, noise_sigma, centers, n_galaxies : ndarray
        As above, for the rows of this set; read-only; read (and cached) on first
        access for a subset.
    bands : tuple of str
    pixel_scale : float
    max_galaxies : int
        Slots per blend K.
    n_bands, stamp_size, psf_size : int
        C, H = W (pixels), P (pixels).

    Notes
    -----
    ``X[idx]`` (int, slice, int array or list, boolean mask) returns a subset
    BlendSet; an int gives a subset of length 1 (not a scalar record). Subsets
    compose: ``X[a][b]`` equals ``X[np.arange(len(X))[a][b]]`` and reads from the
    root arrays directly. A BlendSet pickles as arrays (a subset of an in-memory
    set pickles only its rows) or, when read lazily from a file, as the file path
    and indices. It never holds isolated images or the truth table.
    """

    __slots__ = ("_source", "_index", "_meta", "_cache", "__weakref__")

    def __init__(
        self,
        *,
        blend: Any,
        psf: Any,
        noise_sigma: Any,
        centers: Any,
        n_galaxies: Any,
        bands: Sequence[str],
        pixel_scale: float,
    ) -> None:
        arrays, meta = _check_arrays(
            {
                "blend": blend,
                "psf": psf,
                "noise_sigma": noise_sigma,
                "centers": centers,
                "n_galaxies": n_galaxies,
            },
            bands,
            pixel_scale,
        )
        # Views (no copy), so that freezing them leaves the caller's arrays writable.
        arrays = {name: arr.view() for name, arr in arrays.items()}
        self._init(_MemorySource(arrays), None, meta)

    def _init(self, source: Any, index: np.ndarray | None, meta: _Meta) -> None:
        self._source = source
        self._index = index
        self._meta = meta
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def _subset(cls, source: Any, index: np.ndarray | None, meta: _Meta) -> "BlendSet":
        obj = cls.__new__(cls)
        obj._init(source, index, meta)
        return obj

    # -- construction from files -----------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike, *, in_memory: bool = True) -> "BlendSet":
        """The blends of a data file.

        Parameters
        ----------
        path : str or path-like
            A data file (``data/README.md``).
        in_memory : bool
            Read the arrays now (every checksum verified). With False, nothing is
            read until an attribute or a batch is accessed; rows are then read from
            the file (``close()`` releases the handle).

        Raises
        ------
        DataFileError
            The file is missing, corrupt, foreign or of another schema version.
        """
        if in_memory:
            X, _ = _load(path, with_labels=False)
            return X
        h5 = H5Source(path)
        return cls._subset(_FileSource(h5), None, _meta_of(h5.layout))

    # -- attributes ---------------------------------------------------------
    def _get(self, name: str) -> np.ndarray:
        arr = self._cache.get(name)
        if arr is None:
            arr = self._source.read(name, self._index)
            self._cache[name] = arr
        return arr

    @property
    def blend(self) -> np.ndarray:
        """Observed scenes, (n, C, H, W) float32, ADU."""
        return self._get("blend")

    @property
    def psf(self) -> np.ndarray:
        """Effective PSFs, (n, C, P, P) float32, unit sum."""
        return self._get("psf")

    @property
    def noise_sigma(self) -> np.ndarray:
        """Background noise standard deviation, (n, C) float32, ADU per pixel."""
        return self._get("noise_sigma")

    @property
    def centers(self) -> np.ndarray:
        """Galaxy centres (x, y), (n, K, 2) float32, pixels, NaN in empty slots."""
        return self._get("centers")

    @property
    def n_galaxies(self) -> np.ndarray:
        """Galaxies per blend, (n,) int32."""
        return self._get("n_galaxies")

    @property
    def bands(self) -> tuple[str, ...]:
        """Band names."""
        return self._meta.bands

    @property
    def n_bands(self) -> int:
        """Number of bands C."""
        return len(self._meta.bands)

    @property
    def pixel_scale(self) -> float:
        """Arcsec per pixel."""
        return self._meta.pixel_scale

    @property
    def max_galaxies(self) -> int:
        """Slots per blend K."""
        return self._meta.max_galaxies

    @property
    def stamp_size(self) -> int:
        """Stamp side H = W, pixels."""
        return self._meta.stamp_size

    @property
    def psf_size(self) -> int:
        """PSF stamp side P, pixels."""
        return self._meta.psf_size

    @property
    def indices(self) -> np.ndarray:
        """Rows of the root set (the whole file or array) held here, (n,) int64."""
        if self._index is None:
            return np.arange(self._meta.n_total, dtype=np.int64)
        return self._index.copy()

    def __len__(self) -> int:
        return self._meta.n_total if self._index is None else int(self._index.size)

    # -- subsets --------------------------------------------------------------
    def _normalise(self, key: Any) -> np.ndarray:
        n = len(self)
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            k = int(key)
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of range for a BlendSet of {n} blends")
            return np.array([k % n], dtype=np.int64)
        if isinstance(key, slice):
            return np.arange(n, dtype=np.int64)[key]
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(
                    f"a boolean mask must have shape ({n},) for a BlendSet of {n} blends, "
                    f"got {idx.shape}"
                )
            return np.flatnonzero(idx).astype(np.int64)
        if idx.size == 0:
            return np.empty(0, dtype=np.int64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise IndexError(
                "BlendSet indices must be an int, a slice, a 1-D int array/list or a "
                f"boolean mask, got {type(key).__name__} of dtype {idx.dtype} and shape {idx.shape}"
            )
        idx = idx.astype(np.int64)
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(
                f"index {int(idx[bad][0])} is out of range for a BlendSet of {n} blends"
            )
        return np.where(idx < 0, idx + n, idx)

    def __getitem__(self, key: Any) -> "BlendSet":
        local = self._normalise(key)
        index = local if self._index is None else self._index[local]
        index.flags.writeable = False
        return self._subset(self._source, index, self._meta)

    def batches(self, batch_size: int) -> Iterator["BlendSet"]:
        """Consecutive subsets of at most ``batch_size`` blends, covering each once.

        Each batch reads its own rows on access, so memory grows with
        ``batch_size``, not with the set.

        Raises
        ------
        ConfigError
            ``batch_size`` is not a positive integer.
        """
        batch_size = positive_int("batch_size", batch_size)
        for start in range(0, len(self), batch_size):
            yield self[start : start + batch_size]

    def close(self) -> None:
        """Release the file handle of a set read lazily from a file (reopens on use)."""
        self._source.close()

    # -- pickling -----------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        if isinstance(self._source, _MemorySource) and self._index is not None:
            # Pickle only this subset's rows, not the whole root arrays.
            arrays = {name: self._get(name) for name in _FIELDS}
            meta = dataclasses.replace(self._meta, n_total=len(self))
            return {"source": _MemorySource(arrays), "index": None, "meta": meta}
        return {"source": self._source, "index": self._index, "meta": self._meta}

    def __setstate__(self, state: dict[str, Any]) -> None:
        index = state["index"]
        if index is not None:
            index = np.array(index, dtype=np.int64)
            index.flags.writeable = False
        self._init(state["source"], index, state["meta"])

    def __repr__(self) -> str:
        bands = self.bands
        names = "".join(bands) if all(len(b) == 1 for b in bands) else ",".join(bands)
        s, p = self.stamp_size, self.psf_size
        return (
            f"BlendSet({len(self)} blends, bands {names}, stamp {s}x{s} px, "
            f"K={self.max_galaxies}, PSF {p}x{p} px, {self.pixel_scale:g}\"/px, "
            f"{self._source.describe()})"
        )


def _meta_of(layout: FileLayout) -> _Meta:
    return _Meta(
        bands=layout.bands,
        pixel_scale=layout.pixel_scale,
        max_galaxies=layout.max_galaxies,
        stamp_size=layout.stamp_size,
        psf_size=layout.psf_size,
        n_total=layout.n_blends,
    )


def _load(path: str | os.PathLike, *, with_labels: bool) -> tuple[BlendSet, np.ndarray | None]:
    """Read the X datasets (and ``isolated`` if asked) of a file into memory."""
    with open_data_file(path) as f:
        layout = read_layout(f, path)
        arrays = {name: read_checked(f[name], slice(None), path) for name in _FIELDS}
        check_content(path, arrays["n_galaxies"], arrays["centers"], layout.max_galaxies)
        y = read_checked(f["isolated"], slice(None), path) if with_labels else None
    X = BlendSet._subset(_MemorySource(arrays), None, _meta_of(layout))
    logger.debug("loaded %r from %s", X, path)
    return X, y


def load_split(path: str | os.PathLike) -> tuple[BlendSet, np.ndarray]:
    """Read one split (e.g. ``data/train.h5``) as ``(X, y)`` in memory.

    Parameters
    ----------
    path : str or path-like
        A data file.

    Returns
    -------
    X : BlendSet
        The blends, PSFs, noise levels, centres and counts.
    y : ndarray, shape (n, K, C, H, W), float32
        The isolated images (ADU; empty slots all zeros).

    Raises
    ------
    DataFileError
        The file is missing, corrupt, foreign or of another schema version.
    """
    X, y = _load(path, with_labels=True)
    assert y is not None
    return X, y
