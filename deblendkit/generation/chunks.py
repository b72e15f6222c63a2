"""The unit of work of data generation: a chunk of blends, simulated by a pure function.

A chunk is blends ``[start, stop)`` of a split. :func:`simulate_chunk` is a pure
function of ``(config, seed, split, start, stop)``: this process, a local process
pool or a Dask worker runs the very same function, and since every blend has its
own seed-sequence child the bytes do not depend on the number of workers, the
scheduler or the chunk size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.sim.modes import simulate_scene
from deblendkit.storage import truth_dtype

__all__ = ["Chunk", "simulate_chunk", "chunk_bounds", "check_finite"]

_FLOAT_ARRAYS = ("blend", "isolated", "psf", "noise_sigma")


@dataclass(frozen=True)
class Chunk:
    """Blends ``[start, start + n)`` of a split, stacked (see :class:`~deblendkit.sim.sample.BlendSample`)."""

    start: int
    arrays: dict  # name -> (n, ...) array, names in deblendkit.storage.schema.PER_BLEND_DATASETS
    truth: np.ndarray  # structured, truth_dtype(bands)

    def __len__(self) -> int:
        return len(self.arrays["n_galaxies"])


def simulate_chunk(config: SimConfig, seed: int, split: str, start: int, stop: int) -> Chunk:
    """Simulate blends ``start .. stop-1`` of ``split`` (a pure function of its arguments)."""
    samples = [simulate_scene(config, seed=seed, split=split, index=i) for i in range(start, stop)]
    arrays = {
        "blend": np.stack([s.blend for s in samples]),
        "isolated": np.stack([s.isolated for s in samples]),
        "psf": np.stack([s.psf for s in samples]),
        "noise_sigma": np.stack([s.noise_sigma for s in samples]),
        "centers": np.stack([s.centers for s in samples]),
        "n_galaxies": np.array([s.n_galaxies for s in samples], dtype=np.int32),
    }
    dtype = truth_dtype(config.simulated_bands)
    # One truth row per galaxy in the scene: in field mode that includes the
    # unlabelled faint galaxies, so count rows, not n_galaxies (the labelled ones).
    n_rows = sum(len(s.truth["blend_index"]) for s in samples)
    truth = np.zeros(n_rows, dtype=dtype)
    row = 0
    for s in samples:
        for name in dtype.names:
            truth[name][row: row + len(s.truth["blend_index"])] = s.truth[name]
        row += len(s.truth["blend_index"])
    return Chunk(start=start, arrays=arrays, truth=truth)


def check_finite(chunk: Chunk, split: str) -> None:
    """Refuse a chunk whose pixel arrays hold NaN or inf (an overflowing simulation).

    Raises
    ------
    ConfigError
        Naming the first such blend (its index in the split) and the array.
    """
    for name in _FLOAT_ARRAYS:
        arr = chunk.arrays[name]
        if not np.isfinite(arr).all():
            i = int(np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))[0])
            raise ConfigError(
                f"blend {chunk.start + i} of {split} has NaN or inf values in {name!r}: the simulation "
                "overflowed; check the config for extreme values (exposure_fraction, seeing_scatter, ...)",
                value=chunk.start + i,
            )


def chunk_bounds(n_blends: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n_blends)``, each at most ``chunk_size`` blends."""
    return [(a, min(a + chunk_size, n_blends)) for a in range(0, n_blends, chunk_size)]
