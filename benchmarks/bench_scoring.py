"""Time the scoring against one read pass over the same arrays.

Usage::

    python benchmarks/bench_scoring.py [--n-blends 500] [--repeat 3]

Builds deterministic synthetic truth / prediction arrays of the default shape
(n, 6 galaxies, 6 bands, 48, 48), float32: 2-6 elliptical Gaussian galaxies per
blend with band-dependent amplitudes, and predictions that are the truth plus
noise, a flux error and some light leaked from the next galaxy (so moments,
colours and SSIM do real work). Prints seconds per 1,000 blends for

* ``read``: ``float(np.sum(y_true)) + float(np.sum(y_pred))``, the reference;
* ``primary``: :func:`deblendkit.scoring.metrics.deblend_scores` and its mean;
* ``primary+flux+colour+cosine``: the vectorised table, no moments or SSIM;
* ``all``: :func:`galaxy_table` with every metric plus :func:`summarize`;
* ``shape`` and ``ssim`` groups alone,

each with its ratio to the reference, best of ``--repeat`` runs.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from deblendkit.scoring.metrics import deblend_scores
from deblendkit.scoring.table import galaxy_table, summarize

BANDS = ("u", "g", "r", "i", "z", "y")


def synthetic(n: int, *, k: int = 6, c: int = 6, size: int = 48, seed: int = 0):
    """Deterministic truth and prediction arrays, (n, k, c, size, size) float32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    y_true = np.zeros((n, k, c, size, size), np.float32)
    n_gal = rng.integers(2, k + 1, size=n)
    for i in range(n):
        for j in range(n_gal[i]):
            x0, y0 = rng.uniform(12, size - 12, 2)
            sig = rng.uniform(1.5, 4.0)
            e1, e2 = rng.normal(0, 0.2, 2)
            # inverse covariance of a sheared Gaussian (approximate, |e| small)
            a, b, cc = (1 - e1) / sig**2, -e2 / sig**2, (1 + e1) / sig**2
            dx, dy = xx - x0, yy - y0
            prof = np.exp(-0.5 * (a * dx * dx + 2 * b * dx * dy + cc * dy * dy))
            amp = rng.uniform(200, 2e4) * rng.uniform(0.3, 1.5, c)
            y_true[i, j] = amp[:, None, None] * prof
    y_pred = y_true * rng.uniform(0.9, 1.1, (n, k, c, 1, 1)).astype(np.float32)
    y_pred += 0.05 * np.roll(y_true, 1, axis=1)  # leaked neighbour light
    y_pred += rng.normal(0, 20, y_pred.shape).astype(np.float32)
    y_pred[y_true.reshape(n, k, -1).max(-1) == 0] = 0.0
    return y_true, y_pred


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-blends", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    n = args.n_blends
    y_true, y_pred = synthetic(n)
    print(f"arrays: 2 x {y_true.shape} float32 = {2 * y_true.nbytes / 1e6:.0f} MB, "
          f"{int((y_true.reshape(n, 6, -1).max(-1) > 0).sum())} galaxies")

    cases = {
        "read": lambda: float(np.sum(y_true)) + float(np.sum(y_pred)),
        "primary": lambda: float(np.mean(deblend_scores(y_true, y_pred)[1])),
        "primary+flux+colour+cosine": lambda: summarize(
            galaxy_table(y_true, y_pred, bands=BANDS, metrics=("flux", "colour", "cosine")),
            bands=BANDS),
        "shape (hsm, r band)": lambda: galaxy_table(y_true, y_pred, bands=BANDS, metrics=("shape",)),
        "ssim (r band)": lambda: galaxy_table(y_true, y_pred, bands=BANDS, metrics=("ssim",)),
        "all (table + summarize)": lambda: summarize(
            galaxy_table(y_true, y_pred, bands=BANDS), bands=BANDS),
    }
    ref = None
    print(f"{'case':<30} {'s / 1000 blends':>16} {'x read':>8}")
    for name, fn in cases.items():
        fn()  # warm up
        per_k = best_time(fn, args.repeat) / n * 1000
        ref = per_k if ref is None else ref
        print(f"{name:<30} {per_k:>16.3f} {per_k / ref:>8.1f}")


if __name__ == "__main__":
    main()
