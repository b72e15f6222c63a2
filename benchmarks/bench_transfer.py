"""Transfer: each baseline's score on test sets it was not trained on, against its own default score.

Every baseline is trained (through the challenge's workflow, as ``ramp-test``
does) on the default training data, then scored on the default test set and on
small test sets made here with the kit's own simulator, each changing one thing
(galaxies brighter, larger, another PSF family, a shallower survey, more galaxies
per blend than the training data ever has). Prints, per test set and baseline,
the primary score, the flux scatter in r, and the ratio of the primary score to
the baseline's score on the default test set measured in the same run (the
issue's goal: >= 0.9).

With ``--references``, the kit's reference deblenders (known morphology, oracle
apportioning) are added as columns: how hard each set is for any method.

With ``--cross-population``, each baseline is also trained on one galaxy
population (``population = "smooth"``, bulge + disk; ``"realistic"``, with
star-forming knots, asymmetries and stars) and scored on the test sets of both
(issue 14): rows ``train -> test``.

Usage::

    python benchmarks/bench_transfer.py [--data data] [--out /tmp/bench_transfer]
        [--n-test 150] [--unet-seconds 660] [--sets bright,large,moffat,noisy,crowded]
        [--cross-population] [--n-train-population 1600]

``--data`` must hold ``train.h5`` and ``test.h5`` (``python prepare_data.py``). The
test sets are written under ``--out`` once and reused (delete the folder to
remake them). The U-Net's training budget is ``--unet-seconds`` (the default,
660 s, is its budget per fold in a full ``ramp-test``), passed through
``DEBLEND_UNET_MAX_TRAIN_SECONDS``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from deblendkit.cli import prepare_data
from deblendkit.deblend.blendset import load_split
from deblendkit.errors import SubmissionError
from deblendkit.ramp.workflow import DeblenderWorkflow
from deblendkit.scoring.metrics import deblend_scores
from deblendkit.scoring.references import known_morphology, oracle_apportioning
from deblendkit.scoring.table import robust_scatter
from deblendkit.storage import read_dataset

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_transfer")

#: The transfer test sets: SimConfig options that differ from the default.
TEST_SETS: dict[str, dict] = {
    "bright": {"mag_range": [20.0, 23.0]},  # default 19-25.3, median r of the training galaxies 25.3
    "large": {"disk_size_zero": -0.452},  # disk radii x2: ln 2 added to the default -1.145
    "moffat": {"psf_model": "moffat"},  # default Kolmogorov
    "noisy": {"exposure_fraction": 0.1},  # 10% of the full depth
    "crowded": {"min_galaxies": 7, "max_galaxies": 9},  # default 2-6 galaxies
}
POPULATIONS = ("smooth", "realistic")


def make_test_set(out: Path, options: dict, *, n_test: int, seed: int, n_jobs: int, split: str = "test") -> Path:
    """``out/<split>.h5`` made by ``prepare_data.py`` with SimConfig ``options`` (reused if present)."""
    path = out / prepare_data.SPLIT_FILES[split]
    if path.exists():
        return path
    out.mkdir(parents=True, exist_ok=True)
    config = out / "config.json"
    config.write_text(json.dumps(options))
    argv = ["--config", str(config), "--output-dir", str(out), "--splits", split, f"--n-{split.split('_')[0]}",
            str(n_test), "--seed", str(seed), "--n-jobs", str(n_jobs), "--quiet"]
    t0 = time.perf_counter()
    rc = prepare_data.main(argv)
    if rc:
        raise SystemExit(f"prepare_data.py {' '.join(argv)} failed (exit {rc})")
    log.info("made %s in %.0f s", path, time.perf_counter() - t0)
    return path


#: Bins of true r magnitude for the flux ratio table.
MAG_BINS = ((18.0, 21.0), (21.0, 23.0), (23.0, 24.5), (24.5, 26.0), (26.0, 30.0))


def score(y_true, y_pred, bands, mag_r=None) -> tuple[float, float, list]:
    """(primary score, flux scatter in r, median F_pred / F_true in r per bin of ``mag_r``) of predictions.

    ``mag_r``: true r magnitudes of the real galaxies (blend-major order), or None (no bins).
    """
    real, per_galaxy = deblend_scores(y_true, y_pred)
    r = list(bands).index("r")
    ft = np.asarray(y_true)[real][:, r].sum(axis=(-2, -1), dtype=np.float64)
    fp = np.asarray(y_pred)[real][:, r].sum(axis=(-2, -1), dtype=np.float64)
    ok = ft > 0
    ratios = []
    if mag_r is not None and len(mag_r) == len(ft):
        for lo, hi in MAG_BINS:
            sel = ok & (mag_r >= lo) & (mag_r < hi)
            ratios.append(float(np.median(fp[sel] / ft[sel])) if sel.sum() >= 5 else np.nan)
    return float(per_galaxy.mean()), robust_scatter((fp[ok] - ft[ok]) / ft[ok]), ratios


def true_mag_r(path: Path):
    """True r magnitudes of the labelled galaxies of a data file, blend-major order (None if unknown)."""
    truth = read_dataset(path, in_memory=False).truth
    if "mag_r" not in truth.columns:
        return None
    if "labelled" in truth.columns:
        truth = truth[truth["labelled"] == 1]
    return truth.sort_values(["blend_index", "slot"])["mag_r"].to_numpy()


def evaluate_references(tests: dict[str, Path], max_blends: int | None = None) -> dict:
    """``{(test, reference): (score, flux scatter r, flux ratios)}`` of the kit's reference deblenders.

    *known_morphology* (true shapes, fluxes fitted to the noisy blend) and
    *oracle_apportioning* (the blend split with the true images as weights): how
    hard each set is for any method.
    """
    results = {}
    for test, path in tests.items():
        Xt, yt = load_split(path)
        mags = true_mag_r(path)
        if max_blends and len(Xt) > max_blends:
            Xt, yt = Xt[:max_blends], yt[:max_blends]
            mags = None if mags is None else mags[:int(np.asarray(Xt.n_galaxies).sum())]
        yt = np.asarray(yt)
        for name, fn in (("known_morphology", known_morphology), ("oracle_apportioning", oracle_apportioning)):
            results[test, name] = score(yt, fn(np.asarray(Xt.blend), yt), Xt.bands, mags)
    return results


def evaluate(names, train_path: Path, tests: dict[str, Path], n_train: int | None,
             max_blends: int | None = None) -> dict:
    """``{(test, submission): (score, flux scatter r, flux ratios)}`` for submissions trained on ``train_path``.

    Each test set is cut to its first ``max_blends`` blends (None: all).
    """
    X, y = load_split(train_path)
    if n_train:
        X, y = X[:n_train], y[:n_train]
    wf = DeblenderWorkflow()
    results = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            model = wf.train_submission(str(ROOT / "submissions" / name), X, y)
        except SubmissionError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        t_fit = time.perf_counter() - t0
        for test, path in tests.items():
            Xt, yt = load_split(path)
            mags = true_mag_r(path)
            if max_blends and len(Xt) > max_blends:
                Xt, yt = Xt[:max_blends], yt[:max_blends]
                mags = None if mags is None else mags[:int(np.asarray(Xt.n_galaxies).sum())]
            t0 = time.perf_counter()
            pred = wf.test_submission(model, Xt)
            results[test, name] = score(yt, pred, Xt.bands, mags)
            print(f"  {name:14s} trained on {train_path.parent.name}/{train_path.name} ({t_fit:.0f} s), "
                  f"{test:22s} {results[test, name][0]:.4f} ({(time.perf_counter() - t0) / len(Xt):.3f} s/blend)",
                  flush=True)
    return results


def print_table(results: dict, names, tests, reference: dict[str, str]) -> None:
    """Rows = test sets; per submission: score, ratio to the score on ``reference[test]``, flux scatter r."""
    head = "".join(f" | {n:>14s} score  ratio fscat_r" for n in names)
    print(f"{'test set':24s}{head}")
    for test in tests:
        cells = []
        for n in names:
            if (test, n) not in results:
                cells.append(f" | {'-':>29s}      ")
                continue
            s, f, _ = results[test, n]
            ref = results.get((reference[test], n), (np.nan,))[0]
            cells.append(f" | {s:20.4f} {s / ref:6.3f} {f:7.3f}")
        print(f"{test:24s}{''.join(cells)}")


def print_flux_ratios(results: dict, names, tests) -> None:
    """The median predicted / true r flux per bin of true r magnitude (1: unbiased)."""
    bins = "".join(f" {f'r {lo:g}-{hi:g}':>10s}" for lo, hi in MAG_BINS)
    print(f"\nMedian F_pred / F_true in r by true r magnitude\n{'test set':12s} {'submission':14s}{bins}")
    for test in tests:
        for n in names:
            if (test, n) in results and results[test, n][2]:
                print(f"{test:12s} {n:14s}" + "".join(f" {v:10.2f}" for v in results[test, n][2]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data"), help="holds train.h5 and test.h5")
    ap.add_argument("--out", default="/tmp/bench_transfer", help="where the test sets go")
    ap.add_argument("--n-test", type=int, default=150, help="blends per transfer test set")
    ap.add_argument("--n-train", type=int, default=None, help="training blends used (default: all)")
    ap.add_argument("--max-blends", type=int, default=None, help="blends scored per test set (default: all)")
    ap.add_argument("--seed", type=int, default=101, help="master seed of the test sets")
    ap.add_argument("--n-jobs", type=int, default=1, help="simulation processes")
    ap.add_argument("--sets", default=",".join(TEST_SETS), help="transfer test sets, of " + ",".join(TEST_SETS))
    ap.add_argument("--submissions", default="unet,forward_model,starting_kit")
    ap.add_argument("--unet-seconds", type=float, default=660.0, help="U-Net training budget, s")
    ap.add_argument("--references", action="store_true",
                    help="add the reference deblenders (known morphology, oracle apportioning) to the table")
    ap.add_argument("--cross-population", action="store_true",
                    help="also train on each population and score on both (issue 14)")
    ap.add_argument("--n-train-population", type=int, default=1600, help="training blends per population")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ["DEBLEND_UNET_MAX_TRAIN_SECONDS"] = str(args.unet_seconds)
    names = [n for n in args.submissions.split(",") if n]
    out = Path(args.out)
    data = Path(args.data)

    tests = {"default": data / "test.h5"}
    for name in args.sets.split(","):
        if name:
            tests[name] = make_test_set(out / name, TEST_SETS[name], n_test=args.n_test, seed=args.seed,
                                        n_jobs=args.n_jobs)
    results = evaluate(names, data / "train.h5", tests, args.n_train, args.max_blends)
    if args.references:
        results.update(evaluate_references(tests, args.max_blends))
        names = [*names, "known_morphology", "oracle_apportioning"]
    print(f"\nTrained on {data / 'train.h5'}; U-Net budget {args.unet_seconds:.0f} s; {args.n_test} blends "
          f"per transfer set (seed {args.seed}), at most {args.max_blends or 'all'} scored per set; "
          f"cores: {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    print_table(results, names, tests, {t: "default" for t in tests})
    print_flux_ratios(results, names, ["default", "bright"])

    if args.cross_population:
        pop_tests, pop_train = {}, {}
        for pop in POPULATIONS:
            pop_tests[pop] = make_test_set(out / f"pop_{pop}", {"population": pop}, n_test=args.n_test,
                                           seed=args.seed, n_jobs=args.n_jobs)
            pop_train[pop] = make_test_set(out / f"pop_{pop}", {"population": pop}, n_test=args.n_train_population,
                                           seed=args.seed + 1, n_jobs=args.n_jobs, split="train")
        cross, rows, ref = {}, [], {}
        for train_pop in POPULATIONS:
            res = evaluate(names, pop_train[train_pop], pop_tests, None, args.max_blends)
            for test_pop in POPULATIONS:
                row = f"{train_pop} -> {test_pop}"
                rows.append(row)
                ref[row] = f"{test_pop} -> {test_pop}"
                for n in names:
                    if (test_pop, n) in res:
                        cross[row, n] = res[test_pop, n]
        print(f"\nPopulations (train -> test), {args.n_train_population} training blends each; ratio to the "
              "score of a baseline trained on the test set's own population")
        print_table(cross, names, rows, ref)


if __name__ == "__main__":
    main()
