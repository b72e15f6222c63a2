"""``deblend-run`` / ``python -m deblendkit.cli.run``: run several submissions, or host them sandboxed.

Local (the participant's or organiser's machine, unsandboxed)::

    deblend-run [--mode subprocess|inprocess] [--quick-test] [--timeout S] [--time-budget S]
                [--json status.json] [NAME ...]

exits 0 when every submission is ok, 1 when some failed (all are run); see
:mod:`deblendkit.ramp.runner`.

Hosted (:mod:`deblendkit.ramp.hosted`; every submission in the sandbox,
labels out of reach)::

    deblend-run --make-layout LAYOUT [--data data]        # inputs/, labels/ and the two boards
    deblend-run --hosted LAYOUT [NAME ...]                # scores on the public board
    deblend-run --hosted LAYOUT --close [NAME ...]        # the final ranking, on the private board

The hosted mode refuses to run anything (exit 2) when the sandbox cannot start.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict

from deblendkit.errors import DeblendKitError
from deblendkit.ramp.hosted import close_event, make_layout, run_hosted
from deblendkit.ramp.runner import MODES, format_results, list_submissions, run_submissions

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    p = argparse.ArgumentParser(prog="python -m deblendkit.cli.run",
                                description="Run several submissions; a failing one does not stop the others.")
    p.add_argument("names", nargs="*", help="submissions (default: all in submissions/)")
    p.add_argument("--kit-dir", default=".", help="the kit directory (default %(default)s)")
    p.add_argument("--mode", choices=MODES, default="subprocess", help="default %(default)s")
    p.add_argument("--quick-test", action="store_true", help="use the _mini data files")
    p.add_argument("--timeout", type=float, help="wall-clock seconds per submission (subprocess mode)")
    p.add_argument("--time-budget", type=float, help="seconds per step (DEBLEND_TIME_BUDGET_S)")
    p.add_argument("--json", help="write the statuses to this JSON file")
    p.add_argument("--make-layout", metavar="LAYOUT", help="write the hosted layout from --data and stop")
    p.add_argument("--data", default="data", help="data folder of --make-layout (default %(default)s)")
    p.add_argument("--hosted", metavar="LAYOUT", help="run the submissions sandboxed on this hosted layout")
    p.add_argument("--close", action="store_true", help="with --hosted: print the final (private) ranking")
    return p


def _hosted(args) -> int:
    names = args.names or list_submissions(args.kit_dir)
    results = run_hosted(args.kit_dir, names, args.hosted)
    if args.close:
        print("final ranking (private board)")
        for rank, name, private, public in close_event(results):
            print(f"{rank:>3}  {name:<24} private {private:.4f}   public {public:.4f}")
    else:
        print("public board")
        for r in sorted(results, key=lambda r: -r.public.get("deblend", -1.0)):
            shown = f"{r.public['deblend']:.4f}" if r.status == "scored" else f"failed: {r.message}"
            print(f"  {r.name:<24} {shown}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(r) for r in results], fh, indent=1)
    return 0 if all(r.status == "scored" for r in results) else 1


def main(argv=None) -> int:
    """Run the command; returns the exit code (2 with one line on stderr on a kit error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        if args.make_layout:
            out = make_layout(train_file=os.path.join(args.data, "train.h5"),
                              test_file=os.path.join(args.data, "test.h5"), out_dir=args.make_layout)
            print(f"hosted layout written to {out}")
            return 0
        if args.hosted:
            return _hosted(args)
        results = run_submissions(args.names or None, kit_dir=args.kit_dir, mode=args.mode,
                                  quick_test=args.quick_test, timeout_s=args.timeout,
                                  time_budget_s=args.time_budget)
    except DeblendKitError as exc:
        print(f"deblendkit.cli.run: error: {exc}", file=sys.stderr)
        return 2
    print(format_results(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(r) for r in results], fh, indent=1)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
