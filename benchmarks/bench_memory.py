"""Peak memory of scoring: out of core (batch by batch) against in memory, for two data set sizes.

Makes a data file of ``max(--sizes)`` blends (default configuration with
``--stamp-size`` pixel stamps, 6 bands, K=6) and one of the first
``min(--sizes)`` blends of it, then scores the starting kit on each in a fresh
subprocess and reports that process's peak resident memory (``ru_maxrss``):

* out of core: ``python -m deblendkit.cli.score`` (fit on the file-backed
  training data, predict and score ``--batch-size`` blends at a time);
* in memory, for reference: ``load_split`` + ``predict`` on every blend +
  ``galaxy_table``.

The out-of-core peak should not grow with the data set (ratio ~1); the
in-memory one does.

Usage: ``python benchmarks/bench_memory.py [--sizes 200,800] [--stamp-size 32] [--batch-size 32]``
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STREAMING = """
import json, resource, sys
from deblendkit.cli.score import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

IN_MEMORY = """
import json, resource, sys
import numpy as np
from rampwf.utils.importing import import_module_from_source
from deblendkit.deblend.blendset import load_split
from deblendkit.scoring.table import galaxy_table, summarize
path, sub, metrics = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
X, y = load_split(path)
model = import_module_from_source(sub + "/deblender.py", "deblender").Deblender()
model.fit(X, y)
y_pred = np.asarray(model.predict(X), dtype=np.float32)
s = summarize(galaxy_table(y, y_pred, bands=X.bands, metrics=metrics), bands=X.bands)
print(json.dumps({"rc": 0, "deblend": s["deblend"],
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def peak_mb(code: str, args: list[str]) -> tuple[float, float]:
    """Peak RSS (MB) and wall time (s) of ``python -c code args`` (its own last JSON line)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"scoring failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"scoring failed:\n{out.stderr[-2000:]}")
    return result["maxrss_kb"] / 1024, seconds


def make_files(directory: str, sizes: list[int], stamp: int, n_jobs: int) -> dict[int, str]:
    from deblendkit.config import SimConfig
    from deblendkit.generation.split import generate_split
    from deblendkit.storage import DatasetWriter, read_batches

    config = SimConfig(stamp_size=stamp, psf_size=min(25, stamp - 1 if stamp % 2 == 0 else stamp))
    big = max(sizes)
    paths = {big: os.path.join(directory, f"test_{big}.h5")}
    t0 = time.perf_counter()
    generate_split(config, path=paths[big], split="test", n_blends=big, seed=0, n_jobs=n_jobs,
                   chunk_size=16, progress=False)
    print(f"made {big} blends in {time.perf_counter() - t0:.0f} s")
    from deblendkit.storage import validate_file

    layout = validate_file(paths[big])
    for n in sizes:
        if n == big:
            continue
        paths[n] = os.path.join(directory, f"test_{n}.h5")
        with DatasetWriter(paths[n], n_blends=n, bands=layout.bands, max_galaxies=layout.max_galaxies,
                           stamp_size=layout.stamp_size, psf_size=layout.psf_size,
                           attrs={k: v for k, v in layout.attrs.items()
                                  if k not in ("schema_version", "kit", "attrs_sha256")}) as w:
            for batch in read_batches(paths[big], 50):
                if batch.start >= n:
                    break
                m = min(len(batch), n - batch.start)
                truth = batch.truth[batch.truth["blend_index"] < batch.start + m]
                w.write(batch.start, blend=batch.blend[:m], isolated=batch.isolated[:m], psf=batch.psf[:m],
                        noise_sigma=batch.noise_sigma[:m], centers=batch.centers[:m],
                        n_galaxies=batch.n_galaxies[:m], truth_rows=truth)
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="200,800", help="blends per data set (default %(default)s)")
    p.add_argument("--stamp-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--metrics", default="deblend,flux,cosine")
    p.add_argument("--n-jobs", type=int, default=2, help="processes to make the data")
    p.add_argument("--json", help="write the figures to this JSON file")
    args = p.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    sub = os.path.join(ROOT, "submissions", "starting_kit")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        paths = make_files(d, sizes, args.stamp_size, args.n_jobs)
        for n in sizes:
            f = paths[n]
            label_mb = n * 6 * 6 * args.stamp_size**2 * 4 / 2**20
            stream, t_stream = peak_mb(STREAMING, ["--submission", sub, "--data", f, "--train", f,
                                                   "--batch-size", str(args.batch_size), "--metrics", args.metrics])
            memory, t_memory = peak_mb(IN_MEMORY, [f, sub, args.metrics])
            rows.append({"n_blends": n, "labels_mb": label_mb, "streaming_peak_mb": stream,
                         "in_memory_peak_mb": memory, "streaming_s": t_stream, "in_memory_s": t_memory})
    print(f"starting kit, stamps {args.stamp_size}x{args.stamp_size}, 6 bands, K=6, batch {args.batch_size}, "
          f"metrics {args.metrics}; peak RSS of the scoring process")
    print(f"{'blends':>7} {'labels MB':>10} {'out-of-core MB':>15} {'in-memory MB':>13}")
    for r in rows:
        print(f"{r['n_blends']:>7} {r['labels_mb']:>10.0f} {r['streaming_peak_mb']:>15.0f} "
              f"{r['in_memory_peak_mb']:>13.0f}")
    a, b = rows[0], rows[-1]
    print(f"ratio {b['n_blends']}/{a['n_blends']} blends: out of core "
          f"{b['streaming_peak_mb'] / a['streaming_peak_mb']:.2f}, in memory "
          f"{b['in_memory_peak_mb'] / a['in_memory_peak_mb']:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
