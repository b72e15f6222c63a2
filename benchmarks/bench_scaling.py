"""Generation on a local Dask cluster: blends/s with 1 and 2 workers, and per-blend costs.

For each number of workers a :class:`distributed.LocalCluster` (one thread per
worker process) is started and warmed up (imports, colour tables), then
``generate_split`` makes ``--n-blends`` blends of the default configuration
(LSST ugrizy, 48x48 pixels, K=6). Reported:

* simulation throughput (blends/s, workers writing chunk files) and the
  2-worker / 1-worker ratio;
* end-to-end throughput (simulation + the serial assembly into the final file);
* per blend: simulation core-seconds, assembly seconds, final file bytes and
  temporary chunk-file bytes -- the figures behind the extrapolation to 10^6
  and 10^7 blends printed at the end (and written to ``--json``).

The machine's load average is printed with the figures: on a shared machine
the ratio says more about the other jobs than about Dask.

Usage: ``python benchmarks/bench_scaling.py [--n-blends 96] [--chunk-size 8] [--json out.json]``
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time

from deblendkit.config import SimConfig
from deblendkit.generation import dask_client, generate_split


def run(config: SimConfig, *, n_workers: int, n_blends: int, chunk_size: int, directory: str) -> dict:
    with dask_client(f"local:{n_workers}") as client:
        warm = os.path.join(directory, f"warm_{n_workers}.h5")
        # One chunk per worker: every worker imports the kit and builds its colour table now.
        generate_split(config, path=warm, split="test", n_blends=n_workers, seed=1, chunk_size=1,
                       scheduler=client, progress=False)
        path = os.path.join(directory, f"bench_{n_workers}.h5")
        t0 = time.perf_counter()
        out = generate_split(config, path=path, split="train", n_blends=n_blends, seed=0,
                             chunk_size=chunk_size, scheduler=client, progress=False)
        total = time.perf_counter() - t0
    return {
        "workers": n_workers,
        "n_blends": n_blends,
        "simulate_s": out.simulate_seconds,
        "assemble_s": out.assemble_seconds,
        "total_s": total,
        "file_bytes": out.nbytes,
        "chunk_bytes": out.chunk_bytes,
        "sim_blends_per_s": n_blends / out.simulate_seconds,
        "blends_per_s": n_blends / total,
    }


def extrapolate(r1: dict, r2: dict) -> dict:
    """Per-blend figures (from the 1-worker run) and what 10^6 and 10^7 blends cost."""
    n = r1["n_blends"]
    per = {
        "sim_core_s": r1["simulate_s"] / n,  # one worker = one core busy
        "assemble_s": r1["assemble_s"] / n,
        "file_bytes": r1["file_bytes"] / n,
        "chunk_bytes": r1["chunk_bytes"] / n,
        "efficiency_2_workers": r2["sim_blends_per_s"] / (2 * r1["sim_blends_per_s"]),
    }
    out = {"per_blend": per}
    for total in (10**6, 10**7):
        out[f"{total:.0e}"] = {
            "simulation_core_hours": per["sim_core_s"] * total / 3600,
            "assembly_hours_serial": per["assemble_s"] * total / 3600,
            "final_disk_gb": per["file_bytes"] * total / 1e9,
            "chunk_disk_gb": per["chunk_bytes"] * total / 1e9,
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-blends", type=int, default=96)
    p.add_argument("--chunk-size", type=int, default=8)
    p.add_argument("--json", help="write the figures to this JSON file")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import distributed  # noqa: F401  (its loggers exist once imported)

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.ERROR)  # no per-worker INFO lines
    config = SimConfig()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (1 min) before the run; "
          f"{args.n_blends} blends of {config.stamp_size}x{config.stamp_size} px, "
          f"{len(config.simulated_bands)} bands, K={config.max_galaxies}, chunks of {args.chunk_size}")
    with tempfile.TemporaryDirectory() as d:
        results = [run(config, n_workers=w, n_blends=args.n_blends, chunk_size=args.chunk_size, directory=d)
                   for w in (1, 2)]
    print(f"{'workers':>7} {'sim blends/s':>12} {'end-to-end blends/s':>20} {'simulate s':>10} {'assemble s':>10}")
    for r in results:
        print(f"{r['workers']:>7} {r['sim_blends_per_s']:>12.2f} {r['blends_per_s']:>20.2f} "
              f"{r['simulate_s']:>10.1f} {r['assemble_s']:>10.1f}")
    r1, r2 = results
    print(f"ratio 2/1 workers: simulation {r2['sim_blends_per_s'] / r1['sim_blends_per_s']:.2f}, "
          f"end-to-end {r2['blends_per_s'] / r1['blends_per_s']:.2f}; "
          f"load average after: {os.getloadavg()[0]:.1f}")
    ex = extrapolate(r1, r2)
    per = ex["per_blend"]
    print(f"per blend: {per['sim_core_s'] * 1e3:.0f} ms simulation (core), {per['assemble_s'] * 1e3:.1f} ms "
          f"assembly, {per['file_bytes'] / 1e3:.0f} kB final file, {per['chunk_bytes'] / 1e3:.0f} kB chunk files")
    for key in ("1e+06", "1e+07"):
        e = ex[key]
        print(f"{key} blends: {e['simulation_core_hours']:,.0f} core-hours simulation, "
              f"{e['assembly_hours_serial']:,.1f} h serial assembly, {e['final_disk_gb']:,.0f} GB final, "
              f"{e['chunk_disk_gb']:,.0f} GB chunk files at the peak")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"runs": results, "extrapolation": ex, "load_average": os.getloadavg()}, fh, indent=1)


if __name__ == "__main__":
    main()
