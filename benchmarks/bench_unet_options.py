"""The U-Net baseline with other options, on the transfer test sets (#16).

Trains ``submissions/unet``'s ``Deblender(**OPTIONS)`` on the default training
data (its default budget unless the options say otherwise) and prints, for the
default test set and each transfer set of ``bench_transfer.py``, the primary
score, its ratio to the default set's, the r-band flux scatter and the median
F_pred / F_true in r per bin of true r magnitude.

Usage::

    python benchmarks/bench_transfer.py --out /tmp/bench_transfer --submissions forward_model   # makes the sets
    python benchmarks/bench_unet_options.py '{"prior": "forward_model"}' --sets /tmp/bench_transfer

The sets are read from ``--sets`` (``<name>/test.h5``, made by ``bench_transfer.py``).

``--refit-widths 0,0.3,0.1,0.03,0.01``: the network is trained as the options say
(with ``flux_refit="validate"``, the default, it prints the width it chose on its
held-out blends), its predictions are made once without the flux refit and scored
again after
:func:`deblendkit.deblend.amplitudes.refit_amplitudes` with each prior width (0:
plain least squares), one row per width and set.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from bench_transfer import MAG_BINS, ROOT, TEST_SETS, score, true_mag_r
from rampwf.utils.importing import import_module_from_source

from deblendkit.deblend.amplitudes import refit_amplitudes
from deblendkit.deblend.blendset import load_split


def _refitted(Xt, pred, width: float):
    """``pred`` after the flux refit of prior width ``width`` (0: plain least squares)."""
    if width == 0:
        return refit_amplitudes(np.asarray(Xt.blend), pred)
    return refit_amplitudes(np.asarray(Xt.blend), pred, noise_sigma=np.asarray(Xt.noise_sigma), amplitude_sigma=width)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("options", nargs="?", default="{}", help="Deblender options as JSON")
    ap.add_argument("--data", default=str(ROOT / "data"), help="holds train.h5 and test.h5")
    ap.add_argument("--sets", default="/tmp/bench_transfer", help="folder of the transfer sets")
    ap.add_argument("--n-train", type=int, help="training blends used (default: all)")
    ap.add_argument("--max-blends", type=int, default=150, help="blends scored per set")
    ap.add_argument("--refit-widths", default="", help="comma-separated flux-refit prior widths to score too")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    unet = import_module_from_source(str(ROOT / "submissions" / "unet" / "deblender.py"), "deblender",
                                     sanitize=True)
    X, y = load_split(Path(args.data) / "train.h5")
    if args.n_train:
        X, y = X[:args.n_train], y[:args.n_train]
    options = json.loads(args.options)
    widths = [float(w) for w in args.refit_widths.split(",") if w.strip()]
    model = unet.Deblender(**options)
    t0 = time.perf_counter()
    model.fit(X, y)
    print(f"fit on {len(X)} blends: {time.perf_counter() - t0:.0f} s, {model.steps_run_} steps; flux refit "
          f"{model.flux_refit_} (held-out figures: {model.validation_scores_})", flush=True)
    if widths:
        model.flux_refit_ = None  # predictions before the refit; each width applied afterwards
    sets = {"default": Path(args.data) / "test.h5"}
    sets.update({name: Path(args.sets) / name / "test.h5" for name in TEST_SETS})
    bins = " ".join(f"r {lo:g}-{hi:g}" for lo, hi in MAG_BINS)
    print(f"{'test set':10s} score  ratio fscat_r  s/blend  F_pred/F_true in r ({bins})")
    first = {}  # refit width -> score on the default set
    for name, path in sets.items():
        if not path.exists():
            print(f"{name:10s} missing ({path}: run bench_transfer.py --out {args.sets} first)")
            continue
        Xt, yt = load_split(path)
        Xt, yt = Xt[:args.max_blends], yt[:args.max_blends]
        mags = true_mag_r(path)
        mags = None if mags is None else mags[:int(np.asarray(Xt.n_galaxies).sum())]
        t0 = time.perf_counter()
        pred = model.predict(Xt)
        seconds = (time.perf_counter() - t0) / len(Xt)
        for width in [None, *widths]:
            value, fscat, ratios = score(yt, pred if width is None else _refitted(Xt, pred, width), Xt.bands, mags)
            if name == "default":
                first[width] = value
            label = name if width is None else f"{name}+{width:g}"
            print(f"{label:10s} {value:.4f} {value / first[width]:.3f}  {fscat:.3f}   {seconds:.3f}   "
                  f"{' '.join(f'{r:.2f}' for r in ratios)}", flush=True)


if __name__ == "__main__":
    main()
