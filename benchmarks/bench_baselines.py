"""Predict time per blend of each baseline, against the starting kit, in one run.

Each submission is loaded through the challenge's workflow (as ``ramp-test``
does), fitted on a small training set (the U-Net with a short time budget:
its predict time does not depend on how long it trained), then timed on the
same test blends. Prints seconds per blend and the ratio to the starting kit
measured in the same run.

Usage::

    python benchmarks/bench_baselines.py [--data data] [--n-test 40] [--n-train 40]

(``--data`` must hold ``train.h5`` and ``test.h5``; ``python prepare_data.py``
makes them.)
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--n-train", type=int, default=40)
    ap.add_argument("--n-test", type=int, default=40)
    ap.add_argument("--submissions", default="starting_kit,forward_model,unet,scarlet2")
    args = ap.parse_args()
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
