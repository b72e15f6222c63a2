"""The ``prepare_data.py`` command line: make the challenge's data files.

Writes ``train.h5``, ``test.h5`` and the small ``train_mini.h5``, ``test_mini.h5``
(read by ``ramp-test --quick-test``) into ``--output-dir``. Options given on the
command line override the config file (``--config``, JSON or TOML, any
:class:`~deblendkit.config.SimConfig` option), which overrides the defaults.
Errors are reported in one line, exit code 2, no traceback.

Scale and faults: ``--scheduler ADDRESS`` runs the chunks on a Dask cluster
(``--scheduler local`` starts a local one of ``--n-jobs`` processes) and gives
the same data as the local pool for the same seed. Every chunk is kept as a
checksummed file under ``<output-dir>/_chunks`` until its split is assembled,
so a run that is killed leaves no partial ``.h5`` file and the same command
run again resumes from the complete chunks (``--no-resume`` starts afresh).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time

import numpy as np

from deblendkit.config import SimConfig, load_config, scaled_disk_size_zero
from deblendkit.errors import ConfigError, DataFileError, DeblendKitError, OutputExistsError
from deblendkit.generation import SplitResult, StopSignal, dask_client, generate_split

__all__ = ["main", "build_parser", "DEFAULT_SIZES", "SPLIT_FILES"]

log = logging.getLogger("deblendkit.cli.prepare_data")

#: Default number of blends per split: large enough to train the U-Net baseline,
#: small enough for a full ramp-test under 6 GB (see benchmarks/README.md).
DEFAULT_SIZES = {"train": 1600, "test": 400, "train_mini": 16, "test_mini": 8}
SPLIT_FILES = {"train": "train.h5", "test": "test.h5", "train_mini": "train_mini.h5", "test_mini": "test_mini.h5"}


def build_parser() -> argparse.ArgumentParser:
    """The ``prepare_data.py`` argument parser (every option, with its default)."""
    p = argparse.ArgumentParser(
        prog="prepare_data.py",
        description="Simulate blended multi-band galaxy scenes with GalSim and write the "
        "challenge's train/test HDF5 files (see data/README.md for the format).",
    )
    p.add_argument("--n-train", type=int, default=DEFAULT_SIZES["train"],
                   help="blends in train.h5 (default %(default)s)")
    p.add_argument("--n-test", type=int, default=DEFAULT_SIZES["test"], help="blends in test.h5 (default %(default)s)")
    p.add_argument("--n-mini", type=int, default=DEFAULT_SIZES["train_mini"],
                   help="blends in train_mini.h5 (test_mini.h5 gets half; default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default %(default)s)")
    p.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    p.add_argument("--chunk-size", type=int, default=16, help="blends per task (default %(default)s)")
    p.add_argument("--output-dir", default="data", help="where the files go (default %(default)s)")
    p.add_argument("--config", help="JSON or TOML file of SimConfig options")
    p.add_argument("--survey", help="surveycodex survey name (default LSST)")
    p.add_argument("--bands", help="comma-separated bands (default: all of the survey)")
    p.add_argument("--stamp-size", type=int, help="stamp side in pixels (default 48)")
    p.add_argument("--max-galaxies", type=int, help="K_max, galaxies per blend at most (default 6)")
    p.add_argument("--mode", choices=["blend", "field"], help="scene mode (default blend)")
    p.add_argument("--population", choices=["realistic", "smooth"],
                   help="source population (default realistic: knots, offset bulges, stars; smooth: bulge + disk)")
    p.add_argument("--psf-model", choices=["kolmogorov", "moffat"], help="PSF family (default kolmogorov)")
    p.add_argument("--mag-range", type=float, nargs=2, metavar=("BRIGHT", "FAINT"),
                   help="magnitude range of the sources in the magnitude band (default 19 25.3)")
    p.add_argument("--size-scale", type=float,
                   help="multiply the galaxies' median sizes by this factor (default 1; 2 = twice as large)")
    p.add_argument("--min-galaxies", type=int, help="sources per blend at least (default 2)")
    p.add_argument("--exposure-fraction", type=float,
                   help="depth: fraction of the survey's full exposure (default 1; 0.1 = 10%% of it)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--splits", default="train,test,train_mini,test_mini",
                   help="which files to write (default: all four)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the chunks on a Dask cluster: a scheduler address (tcp://host:8786) or "
                   "'local' for a local cluster of --n-jobs processes; the output directory must be "
                   "on a filesystem the workers share")
    p.add_argument("--work-dir", help="where the chunk files go until assembly (default OUTPUT_DIR/_chunks)")
    p.add_argument("--no-resume", action="store_true",
                   help="ignore (and delete) complete chunks left by an interrupted run")
    p.add_argument("--keep-chunks", action="store_true", help="keep the chunk files after assembly")
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Defaults < config file < command-line options."""
    base = load_config(args.config) if args.config else SimConfig()
    changes = {}
    if args.survey is not None:
        changes["survey"] = args.survey
        if args.bands is None and base.bands is not None:
            changes["bands"] = None
    if args.bands is not None:
        changes["bands"] = tuple(b.strip() for b in args.bands.split(",") if b.strip())
    if args.stamp_size is not None:
        changes["stamp_size"] = args.stamp_size
    if args.max_galaxies is not None:
        changes["max_galaxies"] = args.max_galaxies
        if base.min_galaxies > args.max_galaxies >= 2:
            # Only follow a valid K_max: an invalid one is reported under its own name.
            changes["min_galaxies"] = 2
    for name in ("mode", "population", "psf_model", "min_galaxies", "exposure_fraction"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.mag_range is not None:
        changes["mag_range"] = tuple(args.mag_range)
    if args.size_scale is not None:
        changes["disk_size_zero"] = scaled_disk_size_zero(base, args.size_scale)
    return base.replace(**changes) if changes else base


def _sizes(args: argparse.Namespace) -> dict[str, int]:
    """Blends per requested split, after checking the size and count options."""
    sizes = {"train": args.n_train, "test": args.n_test, "train_mini": args.n_mini,
             "test_mini": max(1, args.n_mini // 2)}
    for name, flag in (("train", "--n-train"), ("test", "--n-test"), ("train_mini", "--n-mini")):
        if sizes[name] < 1:
            raise ConfigError(f"{flag} must be >= 1, got {sizes[name]}", value=sizes[name], allowed=">= 1")
    wanted = [s.strip() for s in args.splits.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SPLIT_FILES]
    if unknown or not wanted:
        raise ConfigError(f"--splits has unknown split(s) {unknown}; allowed: {list(SPLIT_FILES)}",
                          value=args.splits, allowed=tuple(SPLIT_FILES))
    for name in ("n_jobs", "chunk_size"):
        value = getattr(args, name)
        if value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}", value=value, allowed=">= 1")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}", value=args.seed, allowed=">= 0")
    return {s: sizes[s] for s in wanted}


def check_outputs(output_dir: str, splits, *, overwrite: bool) -> dict[str, str]:
    """Create ``output_dir`` if needed and refuse existing files before any work starts."""
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as exc:
        raise DataFileError(f"cannot create output directory {output_dir!r}: {exc.strerror}") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise DataFileError(f"output directory {output_dir!r} is not writable")
    paths = {s: os.path.join(output_dir, SPLIT_FILES[s]) for s in splits}
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{', '.join(existing)} already exist(s); pass --overwrite to replace, or choose another --output-dir"
        )
    return paths


def histogram_text(values: np.ndarray, edges=(0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0), width: int = 40) -> str:
    """A text histogram of blendedness values."""
    counts, _ = np.histogram(values, bins=edges)
    top = max(int(counts.max()), 1)
    lines = []
    for lo, hi, n in zip(edges[:-1], edges[1:], counts):
        lines.append(f"  [{lo:4.2f}, {hi:4.2f})  {n:6d}  {'#' * int(round(width * n / top))}")
    return "\n".join(lines)


def _make_data(args: argparse.Namespace, stop: StopSignal) -> tuple[SimConfig, list[SplitResult], float]:
    """Check the options, then generate every requested split; return the config, results and seconds."""
    config = config_from_args(args)
    sizes = _sizes(args)
    paths = check_outputs(args.output_dir, sizes, overwrite=args.overwrite)
    t0 = time.perf_counter()
    results = []
    options = dict(
        seed=args.seed, n_jobs=args.n_jobs, chunk_size=args.chunk_size, overwrite=args.overwrite,
        progress=not args.quiet, work_dir=args.work_dir, resume=not args.no_resume,
        keep_chunks=args.keep_chunks, stop=stop,
    )
    with (dask_client(args.scheduler, n_workers=args.n_jobs) if args.scheduler
          else contextlib.nullcontext()) as client:
        for split, n in sizes.items():
            results.append(generate_split(
                config, path=paths[split], split=split, n_blends=n, scheduler=client, **options,
            ))
    return config, results, time.perf_counter() - t0


def _print_summary(config: SimConfig, seed: int, results: list[SplitResult], total: float) -> None:
    """The end-of-run summary on stdout: files, blendedness histogram, totals."""
    print(f"\nSimulated {config.survey} bands {''.join(config.simulated_bands)}, "
          f"{config.stamp_size}x{config.stamp_size} pixels, up to {config.max_galaxies} galaxies, seed {seed}")
    for r in results:
        print(f"  {r.path:<28} {r.n_blends:6d} blends {r.n_galaxies:7d} galaxies "
              f"{r.seconds:7.1f} s {r.nbytes / 1e6:8.1f} MB")
    allb = np.concatenate([r.blendedness for r in results])
    print(f"Blendedness of all {len(allb)} galaxies (1 - <own,own>/<own,all>):")
    print(histogram_text(allb))
    print(f"Total: {sum(r.n_blends for r in results)} blends in {total:.1f} s, "
          f"{sum(r.nbytes for r in results) / 1e6:.1f} MB")


def main(argv: list[str] | None = None) -> int:
    """Run the command line (``argv`` without the program name; default ``sys.argv[1:]``); return the exit code.

    Exit codes: 0 done, 2 an error of the kit (one line on stderr), 130 interrupted
    (SIGINT, or SIGTERM: a batch system's time limit cleans up like Ctrl-C; the
    handlers are installed only when called as the program, ``argv`` None).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    stop = StopSignal()
    with stop.installed() if argv is None else contextlib.nullcontext():
        try:
            config, results, total = _make_data(args, stop)
        except DeblendKitError as exc:
            print(f"prepare_data.py: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            where = args.work_dir or os.path.join(args.output_dir, "_chunks")
            print("prepare_data.py: interrupted; no partial .h5 file was left; complete chunks are kept "
                  f"in {where}: run the same command again to resume", file=sys.stderr)
            return 130
    _print_summary(config, args.seed, results, total)
    return 0


if __name__ == "__main__":  # python -m deblendkit.cli.prepare_data
    sys.exit(main())
