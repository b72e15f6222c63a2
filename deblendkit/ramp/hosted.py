"""Hosted scoring: labels apart from inputs, every submission sandboxed, public and private boards.

The hosted layout (:func:`make_layout`), made once by the organiser from the
data files::

    LAYOUT/inputs/train.h5          the training file (blends and labels: participants have it anyway)
    LAYOUT/inputs/test_inputs.h5    the test blends without their labels (no ``isolated``, no ``truth``)
    LAYOUT/labels/test_labels.h5    the test file with its labels: read by the scorer only (mode 0700)
    LAYOUT/labels/boards.json       which test blends make the public board, which the private one

A submission sees only ``inputs/`` (and its own folder), inside the sandbox
(:mod:`deblendkit.ramp.sandbox`): it fits on the training file and predicts the
test inputs; the scorer, outside, scores those predictions against the labels.
As on Kaggle, the test set is split at random (fixed seed) into a *public*
part, whose scores the board shows during the challenge, and a *private*
part, which decides the final ranking and is shown when the organiser closes
the event (:func:`close_event`). (ramp-board's own mapping, validation
scores to its public board, would score participants on CV folds of the
training file, whose labels the submission can read: here both boards are
parts of the test set.)
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from deblendkit._fs import atomic_write_text
from deblendkit.errors import ConfigError, DeblendKitError
from deblendkit.ramp.sandbox import SandboxLimits, check_sandbox, run_in_sandbox
from deblendkit.scoring import check_finite, galaxy_table, headline_scores, summarize
from deblendkit.storage import INPUT_DATASETS, read_dataset, validate_file

__all__ = ["make_layout", "HostedResult", "score_hosted", "run_hosted", "close_event", "BOARDS_FILE"]

log = logging.getLogger(__name__)

BOARDS_FILE = "boards.json"


def _inputs_copy(test_file: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    with h5py.File(test_file, "r") as src, h5py.File(tmp, "w") as dst:
        for name, value in src.attrs.items():
            dst.attrs[name] = value
        for name in INPUT_DATASETS:
            dst.create_dataset(name, data=src[name][()], compression="gzip", compression_opts=1)
    os.replace(tmp, target)


def make_layout(*, train_file: str | os.PathLike, test_file: str | os.PathLike, out_dir: str | os.PathLike,
                public_fraction: float = 0.5, seed: int = 0) -> Path:
    """Write the hosted layout (module docstring) into ``out_dir``; returns it.

    ``public_fraction`` of the test blends (at random with ``seed``) make the public board.
    """
    if not (isinstance(public_fraction, float | int) and 0 < public_fraction < 1):
        raise ConfigError(f"public_fraction must be a number in (0, 1), got {public_fraction!r}",
                          value=public_fraction, allowed="(0, 1)")
    layout = validate_file(test_file)
    validate_file(train_file)
    out = Path(out_dir)
    inputs, labels = out / "inputs", out / "labels"
    inputs.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o755)
    os.chmod(inputs, 0o755)
    os.chmod(labels, 0o700)  # nobody but the scorer's user reads the labels
    shutil.copyfile(train_file, inputs / "train.h5")
    _inputs_copy(Path(test_file), inputs / "test_inputs.h5")
    for f in (inputs / "train.h5", inputs / "test_inputs.h5"):
        os.chmod(f, 0o644)
    shutil.copyfile(test_file, labels / "test_labels.h5")
    order = np.random.default_rng(seed).permutation(layout.n_blends)
    n_public = max(1, int(round(public_fraction * layout.n_blends)))
    boards = {"public": sorted(order[:n_public].tolist()), "private": sorted(order[n_public:].tolist()),
              "seed": seed, "public_fraction": public_fraction}
    atomic_write_text(labels / BOARDS_FILE, json.dumps(boards))
    return out


@dataclass(frozen=True)
class HostedResult:
    """One submission on the hosted board: ``scored`` with its public and private scores, or ``failed``."""

    name: str
    status: str
    public: dict = field(default_factory=dict)
    private: dict = field(default_factory=dict)
    message: str = ""


def _board_scores(data, pred: np.ndarray, rows: list[int]) -> dict:
    rows = np.asarray(rows, dtype=np.int64)
    truth = data.truth[data.truth["blend_index"].isin(rows)].copy()
    truth["blend_index"] = np.searchsorted(rows, truth["blend_index"].to_numpy())
    table = galaxy_table(np.asarray(data.isolated)[rows], pred[rows], bands=data.bands, truth=truth)
    return headline_scores(summarize(table, bands=data.bands))


def score_hosted(name: str, predictions: np.ndarray, layout_dir: str | os.PathLike) -> HostedResult:
    """Score predictions of the test inputs against the labels: the public and private boards."""
    labels = Path(layout_dir) / "labels"
    boards = json.loads((labels / BOARDS_FILE).read_text())
    check_finite(predictions, name=f"predictions of {name!r}")
    data = read_dataset(labels / "test_labels.h5")
    return HostedResult(name=name, status="scored", public=_board_scores(data, predictions, boards["public"]),
                        private=_board_scores(data, predictions, boards["private"]))


def run_hosted(kit_dir: str | os.PathLike, names, layout_dir: str | os.PathLike, *,
               limits: SandboxLimits = SandboxLimits()) -> list[HostedResult]:
    """Run each submission of ``kit_dir/submissions`` in the sandbox and score it (one failing does not stop others).

    Raises
    ------
    SandboxError
        The sandbox cannot start: nothing is run (never unsandboxed).
    """
    check_sandbox()
    layout = Path(layout_dir)
    inputs = layout / "inputs"
    with h5py.File(layout / "labels" / "test_labels.h5", "r") as f:
        shape = tuple(f["isolated"].shape)
    results = []
    for name in names:
        sub = Path(kit_dir) / "submissions" / name
        try:
            if not (sub / "deblender.py").is_file():
                raise ConfigError(f"no submission {name!r}: {sub}/deblender.py does not exist", value=name)
            pred, _ = run_in_sandbox(name, submission_dir=sub, train_file=inputs / "train.h5",
                                     inputs_file=inputs / "test_inputs.h5", expected_shape=shape, limits=limits)
            result = score_hosted(name, pred, layout)
        except DeblendKitError as exc:  # failed, killed, bad or NaN predictions: scored as a failure
            result = HostedResult(name=name, status="failed", message=str(exc))
        log.info("%s: %s %s", name, result.status, result.public.get("deblend", result.message))
        results.append(result)
    return results


def close_event(results, *, score: str = "deblend") -> list[tuple[int, str, float, float]]:
    """The final ranking: scored submissions by their private ``score`` (best first), with the public one.

    Returns ``[(rank, name, private, public), ...]``; failed submissions are left out.
    """
    scored = [r for r in results if r.status == "scored"]
    scored.sort(key=lambda r: (-r.private.get(score, -np.inf), r.name))
    return [(i + 1, r.name, r.private.get(score, np.nan), r.public.get(score, np.nan)) for i, r in enumerate(scored)]
