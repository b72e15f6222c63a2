"""The kit's simulator against BlendingToolKit (BTK 1.0.9) on the same galaxies (#18).

1. The kit makes ``--n-blends`` blends (``--n-jobs 1``, the smooth bulge + disk
   population when the kit has a choice, default stamps of 48 x 48 pixels at
   0.2"): its process CPU time covers rendering, PSFs, noise, truth table and
   the HDF5 write.
2. Its truth table is turned into a CatSim-format catalogue (one row per
   galaxy: ``fluxnorm_bulge``/``fluxnorm_disk``/``fluxnorm_agn``, ``a_b``,
   ``b_b``, ``a_d``, ``b_d`` [arcsec] from the half-light radius and the shear
   ellipticity (``q = (1 - |g|) / (1 + |g|)``, ``a = hlr / sqrt(q)``,
   ``b = hlr sqrt(q)``: BTK draws ``hlr = sqrt(a b)``), ``pa_bulge``/``pa_disk``
   [deg], ``<band>_ab`` magnitudes, ``redshift``; positions as ``ra``/``dec``
   offsets from the stamp centre [deg]).
3. BTK draws the same blends (same galaxies, positions and stamp size,
   LSST survey, ``add_noise="all"``, ``njobs=1``) in its own virtual environment
   (``--venv``, default ``/tmp/btkvenv``, built here when missing with pip:
   ``blending-toolkit==1.0.9``, ``astropy<7``, ``numpy<2.4``; not part of the
   kit's requirements). Timed: the CPU time of its drawing (blends and
   isolated images).

Both rates are galaxy-band images per CPU second (one core), so the figure
does not depend on the machine's load. What differs: BTK's PSF is its own
LSST model (Kolmogorov + optics), its fluxes come from its survey's
zeropoints and exposure times, and it writes nothing to disk.

Usage: ``python benchmarks/bench_btk.py [--n-blends 100] [--venv /tmp/btkvenv]``
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from deblendkit.config import SimConfig  # noqa: E402
from deblendkit.generation.split import generate_split  # noqa: E402
from deblendkit.storage import H5Source, validate_file  # noqa: E402

BTK_REQUIREMENTS = ["blending-toolkit==1.0.9", "astropy<7", "numpy<2.4"]

BTK_DRAW = r'''
import json, sys, time
import numpy as np
from astropy.table import Table
import btk

cat_path, n_blends, stamp_arcsec, batch = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
cols = dict(np.load(cat_path))
blend_of = cols.pop("blend_index")
table = Table(cols)
starts = np.searchsorted(blend_of, np.arange(n_blends + 1))


class SameBlends(btk.sampling_functions.SamplingFunction):
    """The kit's blends, in order: blend i is its galaxies at their offsets (ra, dec in arcsec)."""

    def __init__(self):
        super().__init__(stamp_size=stamp_arcsec, max_number=int(np.diff(starts).max()), min_number=1)
        self.i = 0

    def __call__(self, table):
        rows = table[starts[self.i]:starts[self.i + 1]]
        self.i = (self.i + 1) % n_blends
        return rows


catalog = btk.catalog.CatsimCatalog(table)
survey = btk.survey.get_surveys("LSST")
gen = btk.draw_blends.CatsimGenerator(catalog, SameBlends(), survey, batch_size=batch, njobs=1, add_noise="all",
                                      seed=0)
cpu0, t0 = time.process_time(), time.perf_counter()
done = 0
shapes = None
while done < n_blends:
    b = next(gen)
    shapes = (tuple(b.blend_images.shape), tuple(b.isolated_images.shape))
    done += batch
print(json.dumps({"cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - t0, "blends": done,
                  "shapes": shapes, "btk": getattr(btk, "__version__", "?")}))
'''


def ensure_venv(venv: str) -> str:
    """The BTK venv's python, made with pip when missing."""
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        subprocess.run(["python3.11", "-m", "venv", venv], check=True)
    ok = subprocess.run([python, "-c", "import btk"], capture_output=True).returncode == 0
    if not ok:
        subprocess.run([python, "-m", "pip", "install", "-q", *BTK_REQUIREMENTS], check=True)
    return python


def kit_blends(path: str, n_blends: int) -> tuple[float, float]:
    """Make ``n_blends`` blends with the kit at one job; (process CPU s, wall s)."""
    fields = {f.name for f in dataclasses.fields(SimConfig)}
    config = SimConfig(population="smooth") if "population" in fields else SimConfig()
    cpu0, t0 = time.process_time(), time.perf_counter()
    generate_split(config, path=path, split="test", n_blends=n_blends, seed=0, n_jobs=1, chunk_size=16,
                   progress=False)
    return time.process_time() - cpu0, time.perf_counter() - t0


def catsim_columns(path: str) -> tuple[dict[str, np.ndarray], int, float, tuple[str, ...]]:
    """The truth table of ``path`` as CatSim columns (+ ``blend_index``), galaxies, stamp [arcsec], bands."""
    layout = validate_file(path)
    t = H5Source(path).array("truth")[:]
    scale, size = float(layout.attrs.get("pixel_scale", 0.2)), layout.stamp_size
    g = np.hypot(t["e1"], t["e2"])
    q = (1 - g) / (1 + g)
    pa = np.degrees(0.5 * np.arctan2(t["e2"], t["e1"]))
    centre = (size - 1) / 2
    cols = {
        "blend_index": t["blend_index"].astype(np.int64),
        # offsets from the stamp centre in degrees (CatsimCatalog turns ra, dec into arcsec)
        "ra": (t["x"] - centre) * scale / 3600, "dec": (t["y"] - centre) * scale / 3600,
        "fluxnorm_bulge": t["bulge_fraction"], "fluxnorm_disk": 1 - t["bulge_fraction"],
        "fluxnorm_agn": np.zeros(len(t)),
        "a_b": t["hlr_bulge"] / np.sqrt(q), "b_b": t["hlr_bulge"] * np.sqrt(q),
        "a_d": t["hlr_disk"] / np.sqrt(q), "b_d": t["hlr_disk"] * np.sqrt(q),
        "pa_bulge": pa, "pa_disk": pa, "redshift": t["redshift"],
    }
    for b in layout.bands:
        cols[f"{b}_ab"] = t[f"mag_{b}"]
    return cols, len(t), size * scale, tuple(layout.bands)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-blends", type=int, default=100)
    p.add_argument("--batch", type=int, default=20, help="BTK blends per batch")
    p.add_argument("--venv", default="/tmp/btkvenv")
    p.add_argument("--json", help="write the figures to this JSON file")
    args = p.parse_args()
    python = ensure_venv(args.venv)
    n = args.n_blends - args.n_blends % args.batch or args.batch
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "kit.h5")
        kit_cpu, kit_wall = kit_blends(path, n)
        cols, n_gal, stamp_arcsec, bands = catsim_columns(path)
        cat = os.path.join(d, "catsim.npz")
        np.savez(cat, **cols)
        out = subprocess.run([python, "-c", BTK_DRAW, cat, str(n), str(stamp_arcsec), str(args.batch)],
                             capture_output=True, text=True, cwd=d)
        if out.returncode != 0:
            raise SystemExit(f"BTK failed:\n{out.stderr[-3000:]}")
        btk = json.loads(out.stdout.strip().splitlines()[-1])
    images = n_gal * len(bands)
    kit_rate, btk_rate = images / kit_cpu, images / btk["cpu_s"]
    print(f"{n} blends, {n_gal} galaxies ({n_gal / n:.2f} per blend), {len(bands)} bands, "
          f"{stamp_arcsec:.1f}\" stamps; BTK {btk['btk']}, shapes {btk['shapes']}; load {os.getloadavg()[0]:.1f}")
    print(f"kit: {kit_cpu:7.1f} CPU s ({kit_wall:.1f} s wall) = {kit_rate:7.0f} galaxy-band images / CPU s "
          "(noise, truth, HDF5 write included)")
    print(f"BTK: {btk['cpu_s']:7.1f} CPU s ({btk['wall_s']:.1f} s wall) = {btk_rate:7.0f} galaxy-band images / CPU s "
          "(drawing blends + isolated images, noise)")
    print(f"ratio kit / BTK per core: {kit_rate / btk_rate:.2f} (goal >= 3)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n_blends": n, "n_galaxies": n_gal, "kit_cpu_s": kit_cpu, "btk": btk,
                       "ratio": kit_rate / btk_rate}, fh, indent=1)


if __name__ == "__main__":
    main()
