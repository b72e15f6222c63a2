"""``deblend-ensemble``: the greedy ensemble of submissions and their contributivities.

Run each member with its fold predictions saved, then the ensemble::

    DEBLEND_SAVE_Y_PRED=1 ramp-test --submission starting_kit --save-output
    DEBLEND_SAVE_Y_PRED=1 ramp-test --submission forward_model --save-output
    deblend-ensemble starting_kit forward_model          # or: python -m deblendkit.cli.ensemble ...

It writes into ``--out`` (default ``ensemble/``) ``ensemble.json`` (per fold: the
picks and the scores of the ensemble and of each member alone; each member's
contributivity; the validation and bagged test scores of the ensemble and of
the best single member, every secondary score) and ``galaxies_test.csv.gz``
(the per-galaxy test scores of both, column ``member``), which the static
leaderboard shows as its ensemble row. ``--quick-test`` uses the ``_mini`` data
files, as after ``ramp-test --quick-test``.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from deblendkit._fs import atomic_write_bytes, atomic_write_text
from deblendkit.errors import DeblendKitError
from deblendkit.ramp.ensemble_outputs import EnsembleOutcome, ensemble_from_outputs
from deblendkit.report.ensemble import ENSEMBLE_FILE, ENSEMBLE_NAME, ENSEMBLE_TABLE_FILE
from deblendkit.scoring.ensemble import MAX_ENSEMBLE_SIZE
from deblendkit.scoring.table import galaxy_table, summarize
from deblendkit.storage import read_dataset

__all__ = ["main", "write_outcome"]

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deblend-ensemble", description=__doc__.split("\n\n")[0])
    p.add_argument("members", nargs="+", help="submission names (folders of --submissions)")
    p.add_argument("--submissions", default="submissions", help="folder of submissions (default %(default)s)")
    p.add_argument("--data", default="data", help="data folder ramp-test used (default %(default)s)")
    p.add_argument("--out", default="ensemble", help="output folder (default %(default)s)")
    p.add_argument("--quick-test", action="store_true", help="the _mini data files, as ramp-test --quick-test")
    p.add_argument("--max-size", type=int, default=MAX_ENSEMBLE_SIZE, help="most picks per fold (default 80)")
    return p


def _table(y_pred, data) -> pd.DataFrame:
    return galaxy_table(data.isolated, y_pred, bands=data.bands, truth=data.truth)


def write_outcome(outcome: EnsembleOutcome, *, test_file: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Score the bagged test predictions and write ``ensemble.json`` and the galaxy table into ``out``."""
    data = read_dataset(test_file, in_memory=False)
    tables = {ENSEMBLE_NAME: _table(outcome.test_predictions, data),
              outcome.best_single: _table(outcome.best_single_test_predictions, data)}
    meta = {
        "members": list(outcome.members),
        "contributivity": outcome.contributivity,
        "best_single": outcome.best_single,
        "valid": {"ensemble": outcome.valid_score, "best_single": outcome.best_single_valid_score},
        "test": {name: summarize(t, bands=data.bands) for name, t in tables.items()},
        "folds": [{"picks": list(s.picks), "score": s.score, "history": list(s.history),
                   "single_scores": dict(s.single_scores)} for s in outcome.folds],
        "test_file": os.path.abspath(test_file),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.concat([t.assign(member=name) for name, t in tables.items()], ignore_index=True)
    buffer = io.BytesIO()
    table.to_csv(buffer, index=False, compression={"method": "gzip", "mtime": 0})
    atomic_write_bytes(out / ENSEMBLE_TABLE_FILE, buffer.getvalue())
    atomic_write_text(out / ENSEMBLE_FILE, json.dumps(meta, indent=1, default=float))
    return meta


def _print(meta: dict) -> None:
    best = meta["best_single"]
    print(f"{'':<24}{'valid':>8}{'test':>8}{'flux scatter r':>16}")
    print(f"{'ensemble':<24}{meta['valid']['ensemble']:>8.4f}{meta['test']['ensemble']['deblend']:>8.4f}"
          f"{meta['test']['ensemble']['flux_scatter_r']:>16.4f}")
    print(f"{'best single: ' + best:<24}{meta['valid']['best_single']:>8.4f}{meta['test'][best]['deblend']:>8.4f}"
          f"{meta['test'][best]['flux_scatter_r']:>16.4f}")
    print("contributivity: " + ", ".join(f"{k} {v:.3f}" for k, v in meta["contributivity"].items()))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (0 ok, 1 an error of the kit, with its message on stderr)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    suffix = "_mini" if args.quick_test else ""
    train = os.path.join(args.data, f"train{suffix}.h5")
    test = os.path.join(args.data, f"test{suffix}.h5")
    if args.quick_test:
        os.environ["RAMP_TEST_MODE"] = "1"  # the CV folds of ramp-test --quick-test
    try:
        outcome = ensemble_from_outputs(args.submissions, args.members, train_file=train, test_file=test,
                                        max_size=args.max_size)
        meta = write_outcome(outcome, test_file=test, out=args.out)
    except DeblendKitError as exc:
        print(f"deblend-ensemble: {exc}", file=sys.stderr)
        return 1
    _print(meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
