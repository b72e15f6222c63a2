"""The scoring command line: ``python -m deblendkit.cli.score`` (``deblend-score``).

Two modes:

* ``--submission NAME --data FILE``: fit a submission on the training file
  (``train.h5`` beside ``--data`` unless ``--train``) and score it on ``--data``
  batch by batch (:func:`deblendkit.ramp.stream.score_submission`); memory grows
  with ``--batch-size``, not with the data set;
* ``--references FILE``: the scores of the reference predictions of a data
  file (zeros, oracle apportioning, known morphology) with every secondary
  metric (:func:`deblendkit.scoring.references.reference_scores`).

Errors are reported in one line on stderr, exit code 2, no traceback.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys

from deblendkit.errors import ConfigError, DeblendKitError
from deblendkit.ramp.stream import score_submission
from deblendkit.scoring.checks import METRIC_GROUPS
from deblendkit.scoring.out_of_core import DEFAULT_BATCH_SIZE
from deblendkit.scoring.references import reference_scores

__all__ = ["build_parser", "main"]

PROG = "python -m deblendkit.cli.score"
_SHOWN = ("deblend", "flux_scatter_r", "flux_bias_r", "flux_catastrophic_r", "colour_scatter_g_r",
          "cosine", "de_median", "ssim")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of :func:`main`."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Fit a submission and score it on a data file batch by batch "
        "(memory grows with --batch-size, not with the data set); or, with --references, "
        "score the reference predictions of a data file.",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--submission", help="submission name (folder in --kit-dir/submissions) or path")
    mode.add_argument("--references", metavar="FILE",
                      help="score the reference predictions (zeros, oracle apportioning, known morphology) "
                      "of this data file, e.g. data/test.h5")
    p.add_argument("--data", help="data file to score on, e.g. data/test.h5 (required with --submission)")
    p.add_argument("--train", help="training file (default: train.h5 beside --data)")
    p.add_argument("--kit-dir", default=".", help="the kit (holding submissions/); default %(default)s")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="blends per batch (default %(default)s)")
    p.add_argument("--metrics", default=",".join(METRIC_GROUPS),
                   help="comma-separated metric groups (default: all, %(default)s)")
    p.add_argument("--output", help="write the per-galaxy table to this CSV file (with --references: "
                   "the table of reference scores)")
    p.add_argument("--with-truth", action="store_true", help="join the truth table in --output")
    p.add_argument("--max-blends", type=int, help="score only the first N blends of the data file (default all)")
    return p


def _metric_groups(text: str) -> tuple[str, ...]:
    metrics = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = sorted(set(metrics) - set(METRIC_GROUPS))
    if unknown or not metrics:
        raise ConfigError(f"--metrics has unknown group(s) {unknown}; allowed: {list(METRIC_GROUPS)}",
                          value=unknown, allowed=METRIC_GROUPS)
    return metrics


def _run_submission(args, metrics) -> None:
    sub = args.submission
    if not os.path.isdir(sub):
        sub = os.path.join(args.kit_dir, "submissions", args.submission)
    if not os.path.isdir(sub):
        raise ConfigError(f"no submission folder {sub!r}", value=sub)
    result = score_submission(sub, args.data, train_path=args.train, batch_size=args.batch_size,
                              metrics=metrics, with_truth=args.with_truth, max_blends=args.max_blends)
    if args.output:
        result.table.to_csv(args.output, index=False)
    s = result.summary
    print(f"{os.path.basename(os.path.normpath(sub))} on {args.data}: {result.n_blends} blends, "
          f"{int(s['n_galaxies'])} galaxies, batch {result.batch_size}, {result.seconds:.1f} s")
    per_blend = result.predict_seconds / max(result.n_blends, 1)
    print(f"  fit {result.fit_seconds:.1f} s, predict {per_blend:.4f} s per blend")
    for key in _SHOWN:
        value = s.get(key, math.nan)
        if not (isinstance(value, float) and math.isnan(value)):
            print(f"  {key:<22} {value:.4f}")


def _run_references(args, metrics) -> None:
    refs = reference_scores(args.references, max_blends=args.max_blends, batch_size=args.batch_size,
                            metrics=metrics)
    frame = refs.frame()
    if args.output:
        frame.to_csv(args.output, index_label="reference")
    n_gal = int(refs.rows[0].summary.get("n_galaxies", 0)) if refs.rows else 0
    print(f"references on {args.references}: {refs.n_blends} blends, {n_gal} galaxies, {refs.seconds:.1f} s")
    print(frame.to_string(float_format=lambda v: f"{v:.4f}", na_rep="-"))


def main(argv=None) -> int:
    """CLI entry point; returns the exit code (2 on a kit error, one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.submission is not None and not args.data:
        parser.error("--data is required with --submission")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        metrics = _metric_groups(args.metrics)
        if args.references is not None:
            _run_references(args, metrics)
        else:
            _run_submission(args, metrics)
    except DeblendKitError as exc:
        print(f"deblendkit.cli.score: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
