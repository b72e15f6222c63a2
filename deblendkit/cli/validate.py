"""``deblend-validate`` / ``python -m deblendkit.cli.validate``: do the simulated blends look like the sky?

Prints, for a data file and/or a freshly simulated big field (``--sky``), the
statistics of :mod:`deblendkit.report.realism` (and, for a file, the asymmetry, star
share and star colours of :mod:`deblendkit.report.morphology`) next to their published values
with the tolerance and PASS / FAIL / INFO, and writes the plots as PNG files
(``--plots DIR``). Exit code 0 when nothing fails, 1 when a line fails, 2 on
an error (one line on stderr, no traceback).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from deblendkit.config import SimConfig, load_config, scaled_disk_size_zero
from deblendkit.errors import ConfigError, DataFileError, DeblendKitError
from deblendkit.report.morphology import structure_checks
from deblendkit.report.realism import Sample, format_report, make_plots, run_checks, sample_from_file, sample_from_sky
from deblendkit.sim.sky import simulate_sky

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    p = argparse.ArgumentParser(
        prog="python -m deblendkit.cli.validate",
        description="Compare a data file's (and/or a simulated big field's) galaxy counts, sizes and "
        "blend fraction with published survey values; PASS/FAIL per line, PNG plots with --plots.",
    )
    p.add_argument("file", nargs="?", help="a data file (HDF5, see data/README.md)")
    p.add_argument("--sky", action="store_true", help="also simulate and check a big field (field mode's sky)")
    p.add_argument("--area", type=float, default=180.0,
                   help="area of the big field, arcmin^2 (default 180 = 0.05 deg^2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the big field (default 0)")
    p.add_argument("--config", help="JSON or TOML SimConfig file for the big field (default: the defaults)")
    p.add_argument("--faint-limit", type=float, help="override field_faint_limit of the big field")
    p.add_argument("--size-scale", type=float, help="multiply the big field's median sizes by this factor")
    p.add_argument("--plots", help="directory for the PNG plots")
    return p


def _sky_config(args: argparse.Namespace) -> SimConfig:
    """The big field's config: ``--config`` (or the defaults) with ``--faint-limit`` and ``--size-scale``."""
    config = load_config(args.config) if args.config else SimConfig()
    changes = {}
    if args.faint_limit is not None:
        changes["field_faint_limit"] = args.faint_limit
    if args.size_scale is not None:
        changes["disk_size_zero"] = scaled_disk_size_zero(config, args.size_scale)
    return config.replace(**changes) if changes else config


def _samples(args: argparse.Namespace) -> list[tuple[Sample, str | None]]:
    """The samples to check, each with its data file (None for the big field)."""
    if args.file is None and not args.sky:
        raise ConfigError("give a data FILE, or --sky to simulate a big field (or both)")
    samples = []
    if args.file is not None:
        if not os.path.exists(args.file):
            raise DataFileError(f"{args.file} does not exist", value=args.file)
        samples.append((sample_from_file(args.file), args.file))
    if args.sky:
        samples.append((sample_from_sky(simulate_sky(_sky_config(args), area_arcmin2=args.area, seed=args.seed)),
                        None))
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit code: 0 all pass, 1 a line fails, 2 an error."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    status = 0
    try:
        for s, path in _samples(args):
            checks = run_checks(s) + (structure_checks(path) if path is not None else [])
            print(format_report(s, checks))
            if any(c.status == "FAIL" for c in checks):
                status = 1
            if args.plots:
                for p in make_plots(s, args.plots):
                    print(f"   wrote {p}")
    except DeblendKitError as exc:
        print(f"validate: error: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
