"""Remake the U-Net's pretrained weights, ``submissions/unet/pretrained.npz``.

``Deblender(prior=None, pretrained="pretrained.npz").fit`` starts from these weights and trains them
on the data it is given; without the file it trains from scratch. This script makes
them from nothing but the kit's simulator and a seed::

    python submissions/unet/pretrain.py --data-seed 7 --n-train 3200 --epochs 6 --seed 0 --threads 2

1. simulates a training set with ``prepare_data.py`` (the default simulation, master
   seed ``--data-seed``: not the seed 0 of ``data/``, so neither the kit's training nor
   its test blends are among them), in ``--work`` (reused when already there);
2. trains ``Deblender(pretrained=None, prior=None, epochs=--epochs, seed=--seed)`` (the
   network without the forward-model prior, whose inputs need no fit) on it, with no
   time limit: the epoch limit ends training, so the same seeds and thread count give
   the same weights on CPU;
3. writes the weights (float32, with the architecture they belong to) atomically to
   ``--output``.

Extra ``SimConfig`` options for the simulated set: ``--config FILE`` (JSON or TOML).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without ``pip install -e .``
    sys.path.insert(0, str(ROOT))

from deblendkit.cli import prepare_data  # noqa: E402
from deblendkit.deblend.blendset import load_split  # noqa: E402

log = logging.getLogger("submissions.unet.pretrain")


def load_deblender_module():
    """``submissions/unet/deblender.py`` as a module (as rampwf loads it: by path)."""
    spec = importlib.util.spec_from_file_location("submission_unet_deblender", HERE / "deblender.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-seed", type=int, default=7, help="master seed of the simulated training set")
    ap.add_argument("--n-train", type=int, default=3200, help="blends simulated")
    ap.add_argument("--config", help="extra SimConfig options (JSON or TOML) for the simulated set")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights, data order and augmentation")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--work", default="/tmp/unet_pretrain", help="where the simulated set goes")
    ap.add_argument("--output", default=str(HERE / "pretrained.npz"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    work = Path(args.work) / f"seed{args.data_seed}_n{args.n_train}"
    train = work / prepare_data.SPLIT_FILES["train"]
    if not train.exists():
        sim = ["--output-dir", str(work), "--splits", "train", "--n-train", str(args.n_train),
               "--seed", str(args.data_seed), "--n-jobs", "2", "--quiet"]
        if args.config:
            sim += ["--config", args.config]
        if prepare_data.main(sim):
            return 1
    X, y = load_split(train)
    module = load_deblender_module()
    model = module.Deblender(pretrained=None, prior=None, flux_refit=None, epochs=args.epochs, seed=args.seed,
                             num_threads=args.threads, max_train_seconds=1e9, device="cpu")
    t0 = time.perf_counter()
    model.fit(X, y)
    log.info("trained %d epochs (%d steps) in %.0f s; losses %s", model.epochs_run_, model.steps_run_,
             time.perf_counter() - t0, [round(v, 4) for v in model.history_])
    model.save_weights(args.output)
    digest = hashlib.sha256(Path(args.output).read_bytes()).hexdigest()[:16]
    log.info("wrote %s (%.2f MB, sha256 %s...)", args.output, os.path.getsize(args.output) / 1e6, digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
