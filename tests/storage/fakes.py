"""Shared helpers of the storage tests: random blend rows that honour the contract, written files."""
from __future__ import annotations

import h5py
import numpy as np

from deblendkit.storage import DatasetWriter, truth_dtype

BANDS = ("g", "r")


def fake_arrays(n=8, k=3, bands=BANDS, stamp=16, psf=9, seed=0):
    """Random per-blend arrays and truth rows (one row per filled slot, shuffled)."""
    rng = np.random.default_rng(seed)
    c = len(bands)
    n_gal = rng.integers(0, k + 1, size=n).astype(np.int32)
    n_gal[0] = k  # at least one full blend
    filled = np.arange(k)[None, :] < n_gal[:, None]
    isolated = rng.gamma(2.0, 50.0, size=(n, k, c, stamp, stamp)).astype(np.float32)
    isolated[~filled] = 0.0
    noise_sigma = rng.uniform(200, 600, size=(n, c)).astype(np.float32)
    blend = (isolated.sum(axis=1) + rng.normal(size=(n, c, stamp, stamp)) * noise_sigma[..., None, None]).astype(np.float32)
    p = rng.random((n, c, psf, psf)).astype(np.float32)
    p /= p.sum(axis=(2, 3), keepdims=True)
    centers = rng.uniform(0, stamp - 1, size=(n, k, 2)).astype(np.float32)
    centers[~filled] = np.nan
    b_idx, slot = np.nonzero(filled)
    dt = truth_dtype(bands)
    truth = np.zeros(b_idx.size, dtype=dt)
    for name in dt.names:
        if dt[name].kind == "f":
            truth[name] = rng.normal(size=b_idx.size)
        else:
            truth[name] = rng.integers(0, 5, size=b_idx.size)
    truth["blend_index"] = b_idx
    truth["slot"] = slot
    truth["labelled"] = 1
    truth["x"] = centers[b_idx, slot, 0]
    truth["y"] = centers[b_idx, slot, 1]
    truth = truth[rng.permutation(truth.size)]
    return {
        "blend": blend,
        "isolated": isolated,
        "psf": p,
        "noise_sigma": noise_sigma,
        "centers": centers,
        "n_galaxies": n_gal,
    }, truth


ATTRS = {
    "pixel_scale": 0.2,
    "gain": [1.5, 1.7],
    "zeropoint": np.array([28.1, 28.3]),
    "config": {"stamp_size": 16, "seeds": [1, 2], "name": "tiny"},
    "seed": 1234,
    "split": "train",
    "first_index": np.int64(0),
    "sed_names": ["E", "Sbc"],
}


def writer_for(path, arrays, *, overwrite=False, attrs=ATTRS):
    n, k, _, s = arrays["isolated"].shape[:4]
    return DatasetWriter(
        path,
        n_blends=n,
        bands=BANDS,
        max_galaxies=k,
        stamp_size=s,
        psf_size=arrays["psf"].shape[-1],
        attrs=attrs,
        overwrite=overwrite,
    )


def rows(arrays, truth, lo, hi):
    """The write() keyword arguments of rows [lo, hi)."""
    part = {name: arr[lo:hi] for name, arr in arrays.items()}
    sel = (truth["blend_index"] >= lo) & (truth["blend_index"] < hi)
    return dict(part, truth_rows=truth[sel])


def write_fake_file(path, *, overwrite=False, **kw):
    arrays, truth = fake_arrays(**kw)
    with writer_for(path, arrays, overwrite=overwrite) as w:
        w.write(0, **rows(arrays, truth, 0, arrays["blend"].shape[0]))
    return arrays, truth


def sorted_truth(truth):
    return truth[np.lexsort((truth["slot"], truth["blend_index"]))]


def chunk_offset(path, name, row):
    """Byte offset and size of the chunk holding ``row`` of dataset ``name``."""
    with h5py.File(path, "r") as f:
        ds = f[name]
        info = ds.id.get_chunk_info_by_coord((row,) + (0,) * (ds.ndim - 1))
        return info.byte_offset, info.size
