"""Predict time per blend of each baseline, against the starting kit, in one run.

Each submission is loaded through the challenge's workflow (as ``ramp-test``
does), fitted on a small training set (the U-Net with a short time budget:
its predict time does not depend on how long it trained), then timed on the
same test blends. Prints seconds per blend and the ratio to the starting kit
measured in the same run.

Usage::

    python benchmarks/bench_baselines.py [--data data] [--n-test 40] [--n-train 40]
    python benchmarks/bench_baselines.py --forward-model 200 [--submissions ""]

``--forward-model N`` also times the forward model against its original
per-blend implementation (``Deblender(reference=True)``, kept in the
submission for this) on the first N test blends, in the same run: the
batched fit on one thread and on :meth:`Deblender.threads` threads (the
usable cores), each before and after the reference, the gain measured once
on the training blends and given to all; prints seconds per blend, the ratio
to the reference, the deblend score and the r-band flux scatter of each, and
the largest change of a galaxy's score.

(``--data`` must hold ``train.h5`` and ``test.h5``; ``python prepare_data.py``
makes them.)
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def compare_forward_model(data: str, n_blends: int, n_gain: int = 200) -> None:
    """Batched forward model against its per-blend reference on the same blends (see module doc)."""
    from rampwf.utils.importing import import_module_from_source

    from deblendkit.deblend.blendset import load_split
    from deblendkit.scoring.metrics import deblend_scores
    from deblendkit.scoring.table import galaxy_table, summarize
    from deblendkit.storage import read_dataset

    fm = import_module_from_source(str(ROOT / "submissions" / "forward_model" / "deblender.py"),
                                   "deblender", sanitize=True)
    X, y = load_split(os.path.join(data, "train.h5"))
    gain = fm.Deblender().fit(X[:n_gain], np.asarray(y[:n_gain])).gain_
    Xt, yt = load_split(os.path.join(data, "test.h5"))
    Xt, yt = Xt[:n_blends], np.asarray(yt[:n_blends])
    test = read_dataset(os.path.join(data, "test.h5"), in_memory=False)
    truth = test.truth[test.truth["blend_index"] < len(Xt)]
    threads = fm.Deblender().threads()
    # (label, reference?, threads); the batched runs before and after the reference.
    plan = [("batched 1 thread", False, 1), (f"batched {threads} threads", False, threads),
            ("reference", True, 1), ("batched 1 thread", False, 1), (f"batched {threads} threads", False, threads)]
    runs: dict[str, list] = {}
    for name, reference, n_threads in plan:
        deb = fm.Deblender(reference=reference, n_threads=n_threads)
        deb.gain_ = gain
        t0 = time.perf_counter()
        pred = deb.predict(Xt)
        seconds = (time.perf_counter() - t0) / len(Xt)
        _, per_galaxy = deblend_scores(yt, pred)
        summary = summarize(galaxy_table(yt, pred, bands=test.bands, truth=truth), bands=test.bands)
        runs.setdefault(name, []).append((seconds, per_galaxy, summary["flux_scatter_r"]))
        print(f"  {name}: {seconds:.4f} s/blend", flush=True)
    ref_s, ref_scores, ref_flux = runs["reference"][0]
    print(f"forward_model on {len(Xt)} test blends ({len(ref_scores)} galaxies), cores: {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}; the faster of two runs of each batched version")
    print(f"{'version':<20} {'s/blend':>9} {'x reference':>12} {'deblend':>8} {'flux scatter r':>15}")
    print(f"{'reference':<20} {ref_s:9.4f} {1.0:12.2f} {ref_scores.mean():8.4f} {ref_flux:15.4f}")
    for name in dict.fromkeys(label for label, reference, _ in plan if not reference):
        new_s = min(r[0] for r in runs[name])
        _, new_scores, new_flux = runs[name][0]
        print(f"{name:<20} {new_s:9.4f} {ref_s / new_s:12.2f} {new_scores.mean():8.4f} {new_flux:15.4f}")
    diff = np.abs(new_scores - ref_scores)
    print(f"batched against the reference: deblend difference {new_scores.mean() - ref_scores.mean():+.4f}; "
          f"per galaxy |difference| median {np.median(diff):.4f}, 95% {np.quantile(diff, 0.95):.4f}, "
          f"max {diff.max():.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--n-train", type=int, default=40)
    ap.add_argument("--n-test", type=int, default=40)
    ap.add_argument("--submissions", default="starting_kit,forward_model,unet,scarlet2")
    ap.add_argument("--forward-model", type=int, default=0, metavar="N",
                    help="also compare the batched forward model with its per-blend reference on N test blends")
    args = ap.parse_args()
    if args.forward_model:
        compare_forward_model(args.data, args.forward_model)
    if not args.submissions:
        return
    os.environ.setdefault("DEBLEND_UNET_MAX_TRAIN_SECONDS", "20")

    from deblendkit.deblend.blendset import load_split
    from deblendkit.ramp.workflow import DeblenderWorkflow
    from deblendkit.scoring.metrics import deblend_scores

    X, y = load_split(os.path.join(args.data, "train.h5"))
    Xt, yt = load_split(os.path.join(args.data, "test.h5"))
    X, y = X[: args.n_train], y[: args.n_train]
    Xt, yt = Xt[: args.n_test], yt[: args.n_test]
    wf = DeblenderWorkflow()
    rows = []
    from deblendkit.errors import SubmissionError

    for name in args.submissions.split(","):
        path = str(ROOT / "submissions" / name)
        t0 = time.perf_counter()
        try:
            model = wf.train_submission(path, X, y)
        except SubmissionError as exc:  # e.g. scarlet2 without requirements-scarlet2.txt
            print(f"{name}: skipped ({exc})")
            continue
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = wf.test_submission(model, Xt)
        t_pred = time.perf_counter() - t0
        _, scores = deblend_scores(yt, pred)
        rows.append((name, t_fit, t_pred / len(Xt), float(scores.mean())))
    ref = rows[0][2]
    print(f"{len(Xt)} test blends, {Xt.n_bands} bands, {Xt.stamp_size}x{Xt.stamp_size}, cores: {os.cpu_count()}")
    print(f"{'submission':<15} {'fit s':>8} {'predict s/blend':>16} {'x starting_kit':>15} {'deblend':>8}")
    for name, t_fit, t_blend, score in rows:
        print(f"{name:<15} {t_fit:8.1f} {t_blend:16.4f} {t_blend / ref:15.1f} {score:8.3f}")


if __name__ == "__main__":
    main()
