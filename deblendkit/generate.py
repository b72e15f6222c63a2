"""Generate a data split: chunks of blends simulated in parallel, written atomically.

The unit of work is :func:`simulate_chunk` (blends ``[start, stop)`` of a split),
a pure function of ``(config, seed, split, start, stop)``: the local process pool
runs it here and a Dask cluster can run the very same function, and since
every blend has its own seed-sequence child the bytes do not depend on the
number of workers or the chunk size.
"""
from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata

import numpy as np
from tqdm.auto import tqdm

from .config import SimConfig
from .errors import ConfigError
from .io import DatasetWriter, truth_dtype
from .scene import simulate_blend
from .seds import SED_NAMES, colour_table

__all__ = ["Chunk", "simulate_chunk", "generate_split", "split_attrs", "package_versions"]

log = logging.getLogger(__name__)

PER_BLEND = ("blend", "isolated", "psf", "noise_sigma", "centers", "n_galaxies")


@dataclass(frozen=True)
class Chunk:
    """Blends ``[start, start + n)`` of a split, stacked (see :class:`~deblendkit.scene.BlendSample`)."""

    start: int
    arrays: dict  # name -> (n, ...) array, names in PER_BLEND
    truth: np.ndarray  # structured, truth_dtype(bands)

    def __len__(self) -> int:
        return len(self.arrays["n_galaxies"])


def simulate_chunk(config: SimConfig, seed: int, split: str, start: int, stop: int) -> Chunk:
    """Simulate blends ``start .. stop-1`` of ``split`` (a pure function of its arguments)."""
    samples = [simulate_blend(config, seed=seed, split=split, index=i) for i in range(start, stop)]
    arrays = {
        "blend": np.stack([s.blend for s in samples]),
        "isolated": np.stack([s.isolated for s in samples]),
        "psf": np.stack([s.psf for s in samples]),
        "noise_sigma": np.stack([s.noise_sigma for s in samples]),
        "centers": np.stack([s.centers for s in samples]),
        "n_galaxies": np.array([s.n_galaxies for s in samples], dtype=np.int32),
    }
    dtype = truth_dtype(config.band_names)
    n_rows = sum(s.n_galaxies for s in samples)
    truth = np.zeros(n_rows, dtype=dtype)
    row = 0
    for s in samples:
        for name in dtype.names:
            truth[name][row: row + s.n_galaxies] = s.truth[name]
        row += s.n_galaxies
    return Chunk(start=start, arrays=arrays, truth=truth)


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the data."""
    out = {}
    for name in ("deblendkit", "galsim", "numpy", "h5py", "surveycodex", "astropy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - not installed
            out[name] = "unknown"
    return out


def split_attrs(config: SimConfig, *, seed: int, split: str) -> dict:
    """Root attributes of a data file (see data/README.md)."""
    survey = config.survey_obj
    bands = config.band_names
    return {
        "bands": list(bands),
        "pixel_scale": config.pixel_scale,
        "gain": [survey.gain] * len(bands),
        "zeropoint": [survey.band(b).zeropoint for b in bands],
        "exposure_time": [survey.band(b).exposure_time * config.exposure_fraction for b in bands],
        "config": config.to_json(),
        "seed": int(seed),
        "split": split,
        "first_index": 0,
        "versions": json.dumps(package_versions(), sort_keys=True),
        "sed_names": list(SED_NAMES),
        "survey": config.survey,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def chunk_bounds(n_blends: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n_blends)``."""
    return [(a, min(a + chunk_size, n_blends)) for a in range(0, n_blends, chunk_size)]


def generate_split(
    config: SimConfig,
    *,
    path: str | os.PathLike,
    split: str,
    n_blends: int,
    seed: int,
    n_jobs: int = 1,
    chunk_size: int = 16,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Simulate ``n_blends`` blends of ``split`` and write them to ``path``.

    Parameters
    ----------
    config : SimConfig
    path : output HDF5 file (written atomically: temp file, then rename).
    split : "train", "test", "train_mini" or "test_mini" (selects the seed stream).
    n_blends : number of blends, >= 1.
    seed : master seed (int >= 0).
    n_jobs : worker processes (1 = in this process).
    chunk_size : blends per task.
    overwrite : replace an existing file.
    progress : show a tqdm progress bar.

    Returns
    -------
    dict with ``n_blends``, ``n_galaxies``, ``blendedness`` (array), ``seconds``, ``bytes``.
    """
    for name, value in (("n_blends", n_blends), ("n_jobs", n_jobs), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    # Build the cached colour table once, before workers fork, so they inherit it.
    colour_table(config.survey, config.band_names, config.ref_band)
    t0 = time.perf_counter()
    bounds = chunk_bounds(int(n_blends), int(chunk_size))
    blendedness = []
    n_gal = 0
    writer = DatasetWriter(
        path, n_blends=int(n_blends), bands=config.band_names, max_galaxies=config.max_galaxies,
        stamp_size=config.stamp_size, psf_size=config.psf_size,
        attrs=split_attrs(config, seed=seed, split=split), overwrite=overwrite,
    )
    bar = tqdm(total=int(n_blends), desc=f"{split}", unit="blend", disable=not progress, leave=False)
    with writer:
        def consume(chunk: Chunk) -> None:
            nonlocal n_gal
            writer.write(chunk.start, truth_rows=chunk.truth, **chunk.arrays)
            blendedness.append(chunk.truth["blendedness"])
            n_gal += len(chunk.truth)
            bar.update(len(chunk))

        if n_jobs == 1 or len(bounds) == 1:
            for a, b in bounds:
                consume(simulate_chunk(config, seed, split, a, b))
        else:
            with ProcessPoolExecutor(max_workers=int(n_jobs)) as pool:
                futures = [pool.submit(simulate_chunk, config, seed, split, a, b) for a, b in bounds]
                for fut in as_completed(futures):
                    consume(fut.result())
    bar.close()
    seconds = time.perf_counter() - t0
    size = os.path.getsize(path)
    log.info("%s: %d blends, %d galaxies, %.1f s, %.1f MB", path, n_blends, n_gal, seconds, size / 1e6)
    return {
        "path": str(path),
        "n_blends": int(n_blends),
        "n_galaxies": int(n_gal),
        "blendedness": np.concatenate(blendedness) if blendedness else np.zeros(0),
        "seconds": seconds,
        "bytes": size,
    }
