"""Simulation speed: the full pipeline against plain GalSim drawing, in one run.

Prints blends/s of

* the bare reference: the same sources drawn with plain GalSim calls (one
  ``drawImage`` of bulge + disk + knots (a star: a delta function) convolved with
  the band's PSF per source and band; no noise, no truth, no I/O);
* the kit's full pipeline (render, noise, truth table, compressed HDF5 write)
  at ``n_jobs=1`` and ``n_jobs=2``;

and the two ratios the simulator issue sets goals for: pipeline / reference at
one job (goal >= 2) and two jobs / one job (goal >= 1.7).

The three measurements are interleaved in ``--rounds`` rounds (reference,
1 job, 2 jobs, then again): on a shared machine the speed drifts by tens of
percent within a minute, so each round gives its own ratios and the summary is
their median (and range), not a ratio of measurements taken minutes apart.
The pipeline runs with ``prepare_data.py``'s default chunk size (16 blends).

Usage: ``python benchmarks/bench_simulation.py [--n-blends 200] [--rounds 3] [--population realistic] [--profile]``
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time

import galsim
import numpy as np

from deblendkit.config import SimConfig
from deblendkit.generation import generate_split
from deblendkit.sim.blend_mode import scene_parameters
from deblendkit.sim.render import source_profiles
from deblendkit.sim.seds import colour_table


def bare_reference(config: SimConfig, n_blends: int, seed: int) -> float:
    """Seconds to draw blends 0..n-1 with one plain drawImage per galaxy and band."""
    params = [scene_parameters(config, seed=seed, split="train", index=i) for i in range(n_blends)]
    w = config.stamp_size
    scale = config.pixel_scale
    t0 = time.perf_counter()
    for p in params:
        g = p.galaxies
        bulges, disks, knots = source_profiles(g)
        for k in range(len(g)):
            offset = (p.positions[k, 0] - (w - 1) / 2, p.positions[k, 1] - (w - 1) / 2)
            for c, psf in enumerate(p.psfs):
                parts = [(bulges[k], p.flux_bulge[k, c]), (disks[k], p.flux_disk[k, c]),
                         (knots[k], p.flux_knots[k, c])]
                gal = galsim.Add([obj * flux for obj, flux in parts if obj is not None])
                galsim.Convolve(gal, psf).drawImage(nx=w, ny=w, scale=scale, offset=offset)
    return time.perf_counter() - t0


def pipeline(config: SimConfig, n_blends: int, seed: int, n_jobs: int, directory: str) -> float:
    path = os.path.join(directory, f"bench_{n_jobs}.h5")
    t0 = time.perf_counter()
    generate_split(config, path=path, split="train", n_blends=n_blends, seed=seed, n_jobs=n_jobs,
                   overwrite=True, progress=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-blends", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds (median reported)")
    ap.add_argument("--profile", action="store_true", help="print where the pipeline's time goes")
    ap.add_argument("--population", choices=["realistic", "smooth"], default="realistic")
    args = ap.parse_args()
    config = SimConfig(population=args.population)
    colour_table(config.survey, config.simulated_bands, config.magnitude_band)  # warm caches
    scene_parameters(config, seed=args.seed, split="train", index=0)
    n = args.n_blends
    rounds = []
    with tempfile.TemporaryDirectory() as d:
        pipeline(config, 8, args.seed, 1, d)  # warm GalSim's profile tables
        bare_reference(config, 4, args.seed)
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            pipeline(config, n, args.seed, 1, d)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        for r in range(args.rounds):
            t_ref = bare_reference(config, n, args.seed)
            t1 = pipeline(config, n, args.seed, 1, d)
            t2 = pipeline(config, n, args.seed, 2, d)
            rounds.append((t_ref, t1, t2))
            print(f"round {r + 1}: bare {n / t_ref:6.1f} /s, pipeline 1 job {n / t1:6.1f} /s, "
                  f"2 jobs {n / t2:6.1f} /s; ratios {t_ref / t1:5.2f} and {t1 / t2:5.2f}", flush=True)
    ngal = sum(len(scene_parameters(config, seed=args.seed, split="train", index=i).galaxies) for i in range(n))
    t_ref, t1, t2 = (np.median([x[i] for x in rounds]) for i in range(3))
    r1 = [x[0] / x[1] for x in rounds]
    r2 = [x[1] / x[2] for x in rounds]
    print(f"{n} blends ({ngal / n:.2f} sources/blend, {args.population} population, "
          f"{len(config.simulated_bands)} bands, "
          f"{config.stamp_size}x{config.stamp_size} pixels), cores: {os.cpu_count()}, rounds: {args.rounds}")
    print(f"bare GalSim reference (drawImage per galaxy and band, no noise/I/O): {n / t_ref:7.1f} blends/s")
    print(f"full pipeline, n_jobs=1 (render+noise+truth+HDF5):                {n / t1:7.1f} blends/s")
    print(f"full pipeline, n_jobs=2:                                           {n / t2:7.1f} blends/s")
    print(f"ratio pipeline(n_jobs=1) / bare reference: {np.median(r1):5.2f}  "
          f"(rounds {min(r1):.2f}-{max(r1):.2f}; goal >= 2)")
    print(f"ratio pipeline n_jobs=2 / n_jobs=1:         {np.median(r2):5.2f}  "
          f"(rounds {min(r2):.2f}-{max(r2):.2f}; goal >= 1.7)")

if __name__ == "__main__":
    main()
