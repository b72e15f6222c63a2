"""``deblend-leaderboard`` / ``python -m deblendkit.cli.leaderboard``: the static leaderboard.

Builds ``index.html``, ``leaderboard.csv`` and ``leaderboard.md`` in ``--out``
from the results that ``ramp-test --submission NAME --save-output`` left in
each submission folder (:func:`deblendkit.report.build`), with the reference
rows of the test file in ``--data`` (``--no-references`` leaves them out).
Errors are reported in one line, exit code 2, no traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from deblendkit._checks import positive_int
from deblendkit.errors import DeblendKitError
from deblendkit.report import RANK_STEPS, build

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    p = argparse.ArgumentParser(
        prog="python -m deblendkit.cli.leaderboard",
        description="Build a static HTML (+ CSV, Markdown) leaderboard from the results that "
        "`ramp-test --submission NAME --save-output` left in each submission folder.",
    )
    p.add_argument("--submissions", default="submissions", help="folder of submissions (default %(default)s)")
    p.add_argument("--data", default="data", help="data folder, for the provenance section and the reference "
                   "rows (default %(default)s)")
    p.add_argument("--out", default="leaderboard", help="output folder (default %(default)s)")
    p.add_argument("--title", default="Galaxy deblending leaderboard", help="page title")
    p.add_argument("--rank-by", default="valid", choices=RANK_STEPS,
                   help="rank on the primary score's mean over folds on valid/test, or its bagged "
                   "valid/test score (default %(default)s)")
    p.add_argument("--no-images", action="store_true", help="leave out the plots and galleries (faster)")
    p.add_argument("--no-references", action="store_true",
                   help="leave out the reference rows (zeros, oracle apportioning, known morphology)")
    p.add_argument("--reference-blends", type=int, metavar="N",
                   help="compute the reference rows on the first N test blends only (default: all)")
    p.add_argument("--ensemble", metavar="DIR",
                   help="where deblend-ensemble wrote the ensemble (default: ensemble/ beside --submissions)")
    p.add_argument("--blind-submissions", metavar="DIR",
                   help="the blind track's submissions, for its section (default: blind/submissions beside "
                   "--submissions' folder, when there)")
    p.add_argument("--no-blind", action="store_true", help="leave out the blind track's section")
    p.add_argument("--quiet", action="store_true", help="only errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit code (2 with a one-line message on a kit error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        if args.reference_blends is not None:
            positive_int("--reference-blends", args.reference_blends)
        paths = build(args.submissions, args.out, data_dir=args.data, title=args.title,
                      rank_by=args.rank_by, images=not args.no_images, references=not args.no_references,
                      reference_blends=args.reference_blends, ensemble_dir=args.ensemble,
                      blind_dir=args.blind_submissions, blind=not args.no_blind)
    except DeblendKitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"leaderboard: {paths['html']}  ({paths['csv'].name}, {paths['md'].name} beside it)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
