"""Peak memory against data set size: ``ramp-test`` (default), scoring, and making the data (#18).

Three modes, each printing the ratio of the peaks at two sizes measured in the same run:

* ``--mode ramp`` (default): a full ``ramp-test --submission starting_kit`` (3
  folds, bagging) out of core (``DEBLEND_OUT_OF_CORE=1``: file-backed X, labels
  read per scored batch, predictions in unnamed scratch files, see
  :mod:`deblendkit.ramp.prediction`) at ``--sizes`` training blends and
  ``--n-test`` test blends; peak RSS of the ``ramp-test`` process
  (``ru_maxrss`` from ``wait4``). ``--in-memory-at N`` also runs the in-memory
  path at size N for reference, and the ratio of the paths ``ramp-test`` picks
  by itself (``DEBLEND_OUT_OF_CORE`` unset, see
  :func:`deblendkit.ramp.problem.out_of_core`). The data are made with ``prepare_data.py``
  unless ``--data-dirs N=DIR,...`` gives them. Goal: ratio <= 1.3, peak < 6 GB.
* ``--mode score``: the out-of-core scorer ``python -m deblendkit.cli.score``
  against an in-memory scoring, on files of ``--sizes`` blends
  (``--stamp-size`` pixels).
* ``--mode prepare``: ``prepare_data.py --n-train N --n-jobs J`` for each size:
  wall time, size on disk, and the peak of the summed RSS of its process tree
  (psutil, sampled every 0.5 s); the files are deleted afterwards unless ``--keep``.

Usage::

    python benchmarks/bench_memory.py --sizes 1600,20000 [--data-dirs 1600=DIR,20000=DIR] [--in-memory-at 1600]
    python benchmarks/bench_memory.py --mode score --sizes 200,800 --stamp-size 32
    python benchmarks/bench_memory.py --mode prepare --sizes 10000,100000 --work-dir /tmp/mem/prep
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import psutil

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


def score_main(args) -> list[dict]:
    """``--mode score``: out-of-core scorer against in-memory scoring."""
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
    return rows


# ---------------------------------------------------------------------------
# --mode ramp: a full ramp-test, out of core, at two training-set sizes
# ---------------------------------------------------------------------------
def run_peak(argv: list[str], *, cwd: str, env: dict[str, str], log_path: str) -> tuple[float, float, int]:
    """Peak RSS (MB, the child's own ``ru_maxrss``), wall seconds and exit status of ``argv``."""
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, proc.returncode


def make_kit_data(work: str, n_train: int, n_test: int, n_jobs: int) -> str:
    """``prepare_data.py`` into ``work/data_<n_train>``; returns the directory."""
    out = os.path.join(work, f"data_{n_train}")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(ROOT, "prepare_data.py"), "--output-dir", out,
                    "--n-train", str(n_train), "--n-test", str(n_test), "--n-jobs", str(n_jobs), "--quiet"],
                   check=True)
    print(f"made {n_train} + {n_test} blends in {time.perf_counter() - t0:.0f} s")
    return out


FEWER_SCORES = """
import os
from deblendkit import ramp as _kit

problem_title = _kit.PROBLEM_TITLE
workflow = _kit.DeblenderWorkflow()
get_cv, get_train_data, get_test_data = _kit.get_cv, _kit.get_train_data, _kit.get_test_data
save_y_pred = _kit.save_y_pred
_KIT_DIR = os.path.dirname(os.path.abspath(__file__))


def __getattr__(name):
    value = _kit.problem_attribute(name, _KIT_DIR)
    return value[:{n}] if name == "score_types" else value
"""


def ramp_test_peak(work: str, data_dir: str, *, out_of_core: bool, tag: str, score_types: int | None) -> dict:
    """A full ramp-test of the starting kit on ``data_dir`` in a kit of symlinks; peak RSS and scores.

    ``score_types``: keep only the first ones (the kit's problem.py otherwise).
    """
    kit = os.path.join(work, f"kit_{tag}")
    os.makedirs(kit, exist_ok=True)
    for name, target in (("problem.py", os.path.join(ROOT, "problem.py")),
                         ("submissions", os.path.join(ROOT, "submissions")), ("data", data_dir)):
        link = os.path.join(kit, name)
        if os.path.lexists(link):
            os.unlink(link)
        if name == "problem.py" and score_types:
            with open(link, "w") as fh:
                fh.write(FEWER_SCORES.format(n=int(score_types)))
            continue
        os.symlink(os.path.abspath(target), link)
    scratch = os.path.join(work, f"scratch_{tag}")
    os.makedirs(scratch, exist_ok=True)
    env = dict(os.environ, DEBLEND_OUT_OF_CORE="1" if out_of_core else "0", DEBLEND_SCRATCH_DIR=scratch,
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("RAMP_TEST_MODE", None)
    ramp_test = os.path.join(os.path.dirname(sys.executable), "ramp-test")
    log_path = os.path.join(work, f"ramp_test_{tag}.log")
    peak, seconds, rc = run_peak([ramp_test, "--submission", "starting_kit"], cwd=kit, env=env, log_path=log_path)
    if rc != 0:
        with open(log_path, errors="replace") as fh:
            raise SystemExit(f"ramp-test failed ({tag}):\n{fh.read()[-3000:]}")
    with open(log_path, errors="replace") as fh:
        text = fh.read()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    bagged = [line for line in plain.splitlines() if line.split()[:1] in (["valid"], ["test"])][-2:]
    return {"tag": tag, "peak_mb": peak, "seconds": seconds, "scratch_left": os.listdir(scratch),
            "bagged": [" ".join(re.sub(r"\x1b\[[0-9;]*m", "", line).split()) for line in bagged]}


def ramp_main(args) -> list[dict]:
    """``--mode ramp``: ramp-test's peak RSS at two training-set sizes (and the in-memory reference)."""
    sizes = sorted(int(s) for s in args.sizes.split(","))
    given = dict(item.split("=", 1) for item in args.data_dirs.split(",")) if args.data_dirs else {}
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_memory_")
    os.makedirs(work, exist_ok=True)
    rows = []
    try:
        for n in sizes:
            data = given.get(str(n)) or make_kit_data(work, n, args.n_test, args.n_jobs)
            rows.append({"n_train": n, **ramp_test_peak(work, data, out_of_core=True, tag=f"{n}_out_of_core",
                                                        score_types=args.score_types)})
            if args.in_memory_at and n == args.in_memory_at:
                rows.append({"n_train": n, **ramp_test_peak(work, data, out_of_core=False, tag=f"{n}_in_memory",
                                                            score_types=args.score_types)})
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    scores = f"the first {args.score_types} score types" if args.score_types else "all score types"
    print(f"ramp-test --submission starting_kit, 3 folds + bagging, {args.n_test} test blends, {scores}; "
          "peak RSS of the ramp-test process")
    print(f"{'train blends':>12} {'path':>12} {'peak MB':>9} {'wall s':>8} {'scratch left':>13}  bagged scores")
    for r in rows:
        path = "in memory" if r["tag"].endswith("in_memory") else "out of core"
        print(f"{r['n_train']:>12} {path:>12} {r['peak_mb']:>9.0f} {r['seconds']:>8.0f} {len(r['scratch_left']):>13}  "
              f"{' | '.join(r['bagged'])}")
    ooc = [r for r in rows if r["tag"].endswith("out_of_core")]
    a, b = ooc[0], ooc[-1]
    print(f"ratio {b['n_train']}/{a['n_train']} training blends, out of core: {b['peak_mb'] / a['peak_mb']:.2f} "
          f"(goal <= 1.3; peak {b['peak_mb'] / 1024:.2f} GB, goal < 6)")
    _print_default_path(rows)
    return rows


def _print_default_path(rows: list[dict]) -> None:
    """The ratio a user gets with ``DEBLEND_OUT_OF_CORE`` unset: each size on the path ``auto`` picks."""
    from deblendkit.ramp.problem import AUTO_OUT_OF_CORE_TRAIN_BLENDS as auto_from

    def picked(n):
        want = "out_of_core" if n >= auto_from else "in_memory"
        return next((r for r in rows if r["n_train"] == n and r["tag"].endswith(want)), None)

    sizes = sorted({r["n_train"] for r in rows})
    a, b = picked(sizes[0]), picked(sizes[-1])
    if a is None or b is None or a is b:
        return
    print(f"default path (variable unset: out of core from {auto_from} training blends): "
          f"{b['n_train']} / {a['n_train']} training blends {b['peak_mb']:.0f} / {a['peak_mb']:.0f} MB, "
          f"ratio {b['peak_mb'] / a['peak_mb']:.2f}")


# ---------------------------------------------------------------------------
# --mode prepare: prepare_data.py at two sizes
# ---------------------------------------------------------------------------
def tree_peak(argv: list[str], *, cwd: str, log_path: str, series_path: str) -> dict:
    """Run ``argv``; the peak of the summed RSS of its process tree (0.5 s samples), wall time."""
    t0 = time.perf_counter()
    with open(log_path, "wb") as log, open(series_path, "w") as series:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        peak_tree = peak_one = 0
        last = -1e9
        while proc.poll() is None:
            rss = []
            try:
                for q in [root, *root.children(recursive=True)]:
                    try:
                        rss.append(q.memory_info().rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            peak_tree, peak_one = max(peak_tree, sum(rss)), max(peak_one, max(rss, default=0))
            now = time.perf_counter() - t0
            if now - last >= 10:  # a time series: where memory grows, if it does
                series.write(f"{now:.0f} {sum(rss) / 2**20:.0f} {max(rss, default=0) / 2**20:.0f}\n")
                series.flush()
                last = now
            time.sleep(0.5)
    return {"rc": proc.returncode, "seconds": time.perf_counter() - t0,
            "peak_tree_mb": peak_tree / 2**20, "peak_one_mb": peak_one / 2**20}


def disk_bytes(path: str) -> int:
    """Bytes of the files under ``path``."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def prepare_main(args) -> list[dict]:
    """``--mode prepare``: prepare_data.py's time, size on disk and peak tree RSS at two sizes."""
    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_memory_prepare_")
    os.makedirs(work, exist_ok=True)
    rows = []
    for n in sizes:
        out = os.path.join(work, f"d{n}")
        argv = [sys.executable, os.path.join(ROOT, "prepare_data.py"), "--output-dir", out, "--n-train", str(n),
                "--n-jobs", str(args.n_jobs), "--overwrite"]
        r = tree_peak(argv, cwd=ROOT, log_path=os.path.join(work, f"prepare_{n}.log"),
                      series_path=os.path.join(work, f"prepare_{n}.rss"))
        if r["rc"] != 0:
            raise SystemExit(f"prepare_data.py --n-train {n} failed (log in {work})")
        rows.append({"n_train": n, "disk_mb": disk_bytes(out) / 1e6, "load": os.getloadavg()[0], **r})
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    print(f"prepare_data.py --n-jobs {args.n_jobs} (default test and mini files); peak RSS summed over its processes")
    print(f"{'train blends':>12} {'wall s':>8} {'blends/s':>9} {'disk MB':>9} {'peak tree MB':>13} {'one proc MB':>12}")
    for r in rows:
        total = r["n_train"] + 400 + 24
        print(f"{r['n_train']:>12} {r['seconds']:>8.0f} {total / r['seconds']:>9.1f} {r['disk_mb']:>9.0f} "
              f"{r['peak_tree_mb']:>13.0f} {r['peak_one_mb']:>12.0f}")
    a, b = rows[0], rows[-1]
    print(f"ratio {b['n_train']}/{a['n_train']}: peak tree RSS {b['peak_tree_mb'] / a['peak_tree_mb']:.2f} "
          f"(flat: ~1), time {b['seconds'] / a['seconds']:.2f}, disk {b['disk_mb'] / a['disk_mb']:.2f}")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("ramp", "score", "prepare"), default="ramp")
    p.add_argument("--sizes", help="blends per data set (default: ramp 1600,20000; score 200,800; "
                                   "prepare 10000,100000)")
    p.add_argument("--n-test", type=int, default=400, help="test blends (ramp; default %(default)s)")
    p.add_argument("--data-dirs", help="ramp: existing data directories, N=DIR,... (else made)")
    p.add_argument("--in-memory-at", type=int, help="ramp: also run the in-memory path at this size")
    p.add_argument("--score-types", type=int, help="ramp: keep only the first N score types (1: the primary "
                                                   "score; the run's cost, not its memory structure, is smaller)")
    p.add_argument("--work-dir", help="ramp/prepare: where data, kits, logs go (default a temporary directory)")
    p.add_argument("--keep", action="store_true", help="prepare: keep the data files")
    p.add_argument("--stamp-size", type=int, default=32, help="score: stamp side (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="score: blends per batch")
    p.add_argument("--metrics", default="deblend,flux,cosine", help="score: metric groups")
    p.add_argument("--n-jobs", type=int, default=2, help="processes to make the data")
    p.add_argument("--json", help="write the figures to this JSON file")
    args = p.parse_args()
    args.sizes = args.sizes or {"ramp": "1600,20000", "score": "200,800", "prepare": "10000,100000"}[args.mode]
    rows = {"ramp": ramp_main, "score": score_main, "prepare": prepare_main}[args.mode](args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
