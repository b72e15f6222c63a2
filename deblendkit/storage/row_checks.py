"""Checks of blend rows against the file contract, before they are written.

Shapes and dtypes (:func:`coerce_rows`), finite pixels and zero empty slots
(:func:`check_pixels`), the bookkeeping of ``n_galaxies``, ``centers`` and the
truth rows (:func:`check_bookkeeping`), and truth rows as a structured array of
the schema's dtype (:func:`as_truth_array`). Each problem is a
:class:`~deblendkit.errors.ConfigError` naming the blend.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from deblendkit.errors import ConfigError
from deblendkit.storage.schema import DTYPES

__all__ = ["as_truth_array", "coerce_rows", "check_pixels", "check_bookkeeping"]


def as_truth_array(rows: Any, dtype: np.dtype) -> np.ndarray:
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


def coerce_rows(shapes: Mapping[str, tuple[int, ...]], given: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The given arrays with the expected shapes, as the contract's dtypes (ConfigError otherwise)."""
    arrays: dict[str, np.ndarray] = {}
    for name, want in shapes.items():
        arr = np.asarray(given[name])
        if arr.shape != want:
            raise ConfigError(f"{name} must have shape {want}, got {arr.shape}")
        kind = "iu" if name == "n_galaxies" else "fiu"
        if arr.dtype.kind not in kind:
            raise ConfigError(f"{name} must be numeric, got dtype {arr.dtype}")
        arrays[name] = arr.astype(DTYPES[name], copy=False)
    return arrays


def check_pixels(start: int, arrays: Mapping[str, np.ndarray], k: int) -> None:
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


def check_bookkeeping(start: int, n_gal: np.ndarray, centers: np.ndarray, truth: np.ndarray, k: int,
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
        check_pixels(start, pixels, k)
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

