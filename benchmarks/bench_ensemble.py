#!/usr/bin/env python
"""The greedy ensemble of baselines on the default data, selected and scored on disjoint test blends.

Each member is fitted on ``train.h5`` (the kit's workflow, as ``ramp-test`` fits it) and predicts
every blend of ``test.h5``; its predictions go to a memory-mapped ``.npy`` in a scratch folder.
The greedy selection (:mod:`deblendkit.scoring.ensemble`) runs on the first ``--select-blends``
test blends; the ensemble and the best single member (best on the same blends) are then scored
on the remaining blends, which the selection never saw. Prints the primary score and the r-band
flux scatter of every member, of the best single and of the ensemble, with the contributivities.

    python benchmarks/bench_ensemble.py --members starting_kit forward_model unet
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deblendkit.ramp.problem import load_lazy
from deblendkit.ramp.workflow import DeblenderWorkflow
from deblendkit.scoring.ensemble import combine, greedy_selection
from deblendkit.scoring.table import galaxy_table, summarize
from deblendkit.storage import read_dataset

ROOT = Path(__file__).resolve().parents[1]


def predict_member(name: str, data: Path, scratch: Path, batch: int = 32) -> tuple[Path, float, float]:
    wf = DeblenderWorkflow()
    X_train, y_train = load_lazy(os.fspath(data / "train.h5"))
    t0 = time.perf_counter()
    model = wf.train_submission(os.fspath(ROOT / "submissions" / name), X_train, y_train)
    fit_s = time.perf_counter() - t0
    X_test, y_test = load_lazy(os.fspath(data / "test.h5"))
    part = scratch / f"{name}.part.npy"  # renamed when complete: a crashed run leaves no reusable file
    out = np.lib.format.open_memmap(part, mode="w+", dtype=np.float32, shape=y_test.shape)
    t0 = time.perf_counter()
    for a in range(0, len(y_test), batch):
        b = min(len(y_test), a + batch)
        out[a:b] = wf.predict(model, X_test[a:b])
    predict_s = (time.perf_counter() - t0) / len(y_test)
    out.flush()
    del out
    os.replace(part, scratch / f"{name}.npy")
    return scratch / f"{name}.npy", fit_s, predict_s


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", nargs="+", default=["starting_kit", "forward_model", "unet"])
    p.add_argument("--data", default=str(ROOT / "data"))
    p.add_argument("--select-blends", type=int, default=200)
    p.add_argument("--scratch", default=None)
    args = p.parse_args()
    data = Path(args.data)
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="bench-ensemble-"))
    scratch.mkdir(parents=True, exist_ok=True)
    test = read_dataset(data / "test.h5", in_memory=False)
    n, k = len(test), args.select_blends
    paths = {}
    for m in args.members:
        path = scratch / f"{m}.npy"
        if not path.exists():
            path, fit_s, pred_s = predict_member(m, data, scratch)
            print(f"{m}: fit {fit_s:.0f} s, predict {pred_s:.3f} s/blend", flush=True)
        paths[m] = path
    sel_rows, eval_rows = slice(0, k), slice(k, n)
    y_sel = np.asarray(test.isolated[sel_rows])
    loaders = {m: (lambda pth=pth: np.load(pth, mmap_mode="r")[sel_rows]) for m, pth in paths.items()}
    sel = greedy_selection(loaders, y_sel)
    del y_sel
    eval_loaders = {m: (lambda pth=pth: np.load(pth, mmap_mode="r")[eval_rows]) for m, pth in paths.items()}
    y_eval = np.asarray(test.isolated[eval_rows])
    truth = test.truth[(test.truth["blend_index"] >= k)].assign(blend_index=lambda t: t["blend_index"] - k)

    def scores(pred):
        s = summarize(galaxy_table(y_eval, pred, bands=test.bands, truth=truth), bands=test.bands)
        return s["deblend"], s["flux_scatter_r"]

    print(f"selection on test blends [0, {k}), scores on [{k}, {n}) ({n - k} blends)")
    print(f"{'member':<28}{'deblend':>9}{'flux scatter r':>16}{'contributivity':>16}")
    for m in sorted(paths):
        d, f = scores(np.asarray(eval_loaders[m]()))
        print(f"{m:<28}{d:>9.4f}{f:>16.4f}{sel.weights[m]:>16.3f}")
    d, f = scores(combine(eval_loaders, sel.picks))
    print(f"{'ensemble (' + str(len(sel.picks)) + ' picks)':<28}{d:>9.4f}{f:>16.4f}")
    print(f"best single on the selection blends: {sel.best_single}; picks {list(sel.picks)}")
    print(f"selection-blend scores: ensemble {sel.score:.4f}, best single {sel.single_scores[sel.best_single]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
