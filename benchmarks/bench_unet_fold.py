"""The U-Net on one CV fold: how far it moves from its forward-model prior, per magnitude (#16).

Trains ``submissions/unet``'s ``Deblender(**OPTIONS)`` on the training blends of
CV fold ``--fold`` of ``train.h5`` (the folds of ``ramp-test``), with no flux
refit, and scores the first ``--max-blends`` of that fold's validation blends:
the forward-model prior alone, the network, and the network after the flux refit
at each of ``--refit-widths``. Per bin of true r magnitude it prints the mean
primary score and the median F_pred / F_true in r, which is where a network that
shrinks or brightens galaxies shows it.

Usage::

    python benchmarks/bench_unet_fold.py '{}' --fold 0 --budget 420
    python benchmarks/bench_unet_fold.py '{"flux_weight": 0.3}' --fold 0 --budget 420

Training is on a wall-clock budget: run it on an idle machine (the step count is
printed) and compare runs made under the same load.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from bench_transfer import ROOT, score
from rampwf.utils.importing import import_module_from_source

from deblendkit.deblend.amplitudes import refit_amplitudes
from deblendkit.deblend.blendset import load_split
from deblendkit.ramp.problem import get_cv
from deblendkit.scoring.metrics import deblend_scores
from deblendkit.storage import read_dataset

#: Bins of true r magnitude of the per-magnitude rows, [low, high).
FOLD_MAG_BINS = ((18.0, 23.0), (23.0, 24.5), (24.5, 25.5), (25.5, 27.5))


def fold_mags(path: Path, blends: np.ndarray) -> np.ndarray:
    """True r magnitudes of the labelled galaxies of ``blends`` (sorted indices), blend-major order."""
    truth = read_dataset(path, in_memory=False).truth
    if "labelled" in truth.columns:
        truth = truth[truth["labelled"] == 1]
    truth = truth[truth["blend_index"].isin(blends)]
    return truth.sort_values(["blend_index", "slot"])["mag_r"].to_numpy()


def by_magnitude(y_true, y_pred, bands, mags) -> str:
    """``[lo,hi) n s=<mean score> F=<median F_pred/F_true in r>`` per bin of ``FOLD_MAG_BINS``."""
    real, per_galaxy = deblend_scores(y_true, y_pred)
    r = list(bands).index("r")
    ft = np.asarray(y_true)[real][:, r].sum(axis=(-2, -1), dtype=np.float64)
    fp = np.asarray(y_pred)[real][:, r].sum(axis=(-2, -1), dtype=np.float64)
    cells = []
    for lo, hi in FOLD_MAG_BINS:
        sel = (mags >= lo) & (mags < hi) & (ft > 0)
        if sel.sum() == 0:
            cells.append(f"[{lo:g},{hi:g}) n=0")
            continue
        cells.append(f"[{lo:g},{hi:g}) n={sel.sum()} s={per_galaxy[sel].mean():.3f} "
                     f"F={np.median(fp[sel] / ft[sel]):.2f}")
    return "  ".join(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("options", nargs="?", default="{}", help="Deblender options as JSON")
    ap.add_argument("--data", default=str(ROOT / "data"), help="holds train.h5")
    ap.add_argument("--fold", type=int, default=0, help="CV fold (as ramp-test numbers them)")
    ap.add_argument("--budget", type=float, default=420.0, help="training budget, seconds")
    ap.add_argument("--max-blends", type=int, default=200, help="validation blends scored")
    ap.add_argument("--refit-widths", default="0.1,0.03,0.01", help="comma-separated flux-refit prior widths")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    unet = import_module_from_source(str(ROOT / "submissions" / "unet" / "deblender.py"), "deblender",
                                     sanitize=True)
    path = Path(args.data) / "train.h5"
    X, y = load_split(path)
    train, valid = list(get_cv(X, y))[args.fold]
    train, valid = np.sort(train), np.sort(valid)[:args.max_blends]
    options = dict(json.loads(args.options), max_train_seconds=args.budget, flux_refit=None)
    model = unet.Deblender(**options)
    t0 = time.perf_counter()
    model.fit(X[train], np.asarray(y[train]))
    print(f"fold {args.fold}: fit on {len(train)} blends, {time.perf_counter() - t0:.0f} s, "
          f"{model.steps_run_} steps; options {options}", flush=True)
    Xv, yv = X[valid], np.asarray(y[valid])
    mags = fold_mags(path, valid)
    rows = {"prior (forward model)": model._prior(Xv), "network": model.predict(Xv)}
    blend, sigma = np.asarray(Xv.blend), np.asarray(Xv.noise_sigma)
    for width in (float(w) for w in args.refit_widths.split(",") if w.strip()):
        rows[f"network, refit {width:g}"] = refit_amplitudes(blend, rows["network"], noise_sigma=sigma,
                                                             amplitude_sigma=width)
    print(f"{len(valid)} validation blends: score / r flux scatter; per r bin: score, median F_pred/F_true")
    for name, pred in rows.items():
        s, fscat, _ = score(yv, pred, Xv.bands)
        print(f"  {name:24s} {s:.4f} / {fscat:.3f}   {by_magnitude(yv, pred, Xv.bands, mags)}", flush=True)


if __name__ == "__main__":
    main()
