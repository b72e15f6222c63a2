"""Blind scores of the baselines on the first blends of a test file, beside the first track's.

Usage (from the kit root)::

    .venv/bin/python blind/measure_baselines.py --data data/test.h5 --n 200 \
        --submissions sep_detect sep_forward

Fits each blind submission on the first 200 training blends (``--train``),
predicts the first ``--n`` test blends, prints the blind summary and the recall
and unrecognised fraction by magnitude; with ``--first-track``, also scores the
first track's submission of the same images (given the true centres).
"""
import argparse
import importlib.util
import json
import logging
import os
import sys
import time

import numpy as np

from deblendkit.deblend.blendset import load_split
from deblendkit.ramp.blind_problem import load_blind
from deblendkit.ramp.blind_workflow import BlindWorkflow
from deblendkit.scoring import deblend_scores
from deblendkit.scoring.blind_metrics import blind_evaluate, blind_summary, breakdown

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = ("blind", "recall", "precision", "f1", "unrecognised", "deblend_matched", "flux_scatter_r",
        "n_true", "n_detections", "n_spurious")


def first_track_score(name: str, data: str, train: str, n: int) -> dict:
    """Mean first-track score of ``submissions/<name>`` on the first ``n`` blends (true centres)."""
    path = os.path.join(os.path.dirname(HERE), "submissions", name, "deblender.py")
    spec = importlib.util.spec_from_file_location(f"first_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Xt, yt = load_split(train)
    X, y = load_split(data)
    t0 = time.perf_counter()
    model = module.Deblender().fit(Xt[:200], yt[:200])
    pred = model.predict(X[:n])
    _, score = deblend_scores(y[:n], pred)
    return {"deblend": float(np.mean(score)), "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    """Measure, print, optionally write JSON; exit status 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/test.h5")
    p.add_argument("--train", default="data/train.h5")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--submissions", nargs="+", default=["sep_detect", "sep_forward"])
    p.add_argument("--first-track", nargs="*", default=[],
                   help="first-track submissions to score on the same blends, given the true centres")
    p.add_argument("--json", default=None, help="write the summaries here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    X, y = load_blind(args.data)
    X, y = X[:args.n], y[:args.n]
    Xt, yt = load_blind(args.train)
    Xt, yt = Xt[:200], yt[:200]
    wf = BlindWorkflow()
    out = {}
    for name in args.submissions:
        t0 = time.perf_counter()
        model = wf.train_submission(os.path.join(HERE, "submissions", name), Xt, yt)
        pred = wf.predict(model, X)
        dt = time.perf_counter() - t0
        res = blind_evaluate(y, pred, bands=X.bands, metrics=("flux",))
        summ = blind_summary(res, bands=X.bands)
        out[name] = {k: summ[k] for k in KEYS} | {"seconds": dt}
        if getattr(model, "train_log", None):  # a learned detector's training: steps, epochs, seconds
            out[name]["train_log"] = dict(model.train_log)
            print(f"   training: {model.train_log}")
        out[name]["by_mag"] = breakdown(res, by="mag").to_dict("records")
        out[name]["by_blendedness"] = breakdown(res, by="blendedness").to_dict("records")
        print(f"== {name} ({dt:.0f} s)")
        print("  " + "  ".join(f"{k} {summ[k]:.4f}" for k in KEYS))
        print(breakdown(res, by="mag").to_string(index=False))
        print(breakdown(res, by="blendedness").to_string(index=False))
        sys.stdout.flush()
    for name in args.first_track:
        out[f"first_track:{name}"] = first_track_score(name, args.data, args.train, args.n)
        print(f"== first track {name}: deblend {out[f'first_track:{name}']['deblend']:.4f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
