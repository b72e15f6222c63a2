#!/usr/bin/env python
"""What the hosted sandbox costs: time per blend of a submission inside vs outside it, as a ratio.

Both runs do the same work in a fresh process: ``python -m deblendkit.ramp.sandbox_driver``
(fit on the training file, predict the test inputs, send the predictions on stdout),
once plainly and once in the sandbox of :mod:`deblendkit.ramp.sandbox`; rounds are
interleaved and the median is printed. The layout is made from ``--train`` and
``--test`` in a temporary folder.

    python benchmarks/bench_sandbox.py --submissions starting_kit forward_model --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deblendkit.ramp.hosted import make_layout
from deblendkit.ramp.sandbox import SandboxLimits, run_in_sandbox

ROOT = Path(__file__).resolve().parents[1]


def plain(sub: Path, inputs: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "deblendkit.ramp.sandbox_driver", str(sub), str(inputs / "train.h5"),
                    str(inputs / "test_inputs.h5")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def boxed(name: str, sub: Path, inputs: Path, shape) -> float:
    t0 = time.perf_counter()
    run_in_sandbox(name, submission_dir=sub, train_file=inputs / "train.h5", inputs_file=inputs / "test_inputs.h5",
                   expected_shape=shape, limits=SandboxLimits())
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--submissions", nargs="+", default=["starting_kit", "forward_model"])
    p.add_argument("--train", default=str(ROOT / "data" / "train_mini.h5"))
    p.add_argument("--test", default=str(ROOT / "data" / "test.h5"))
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        layout = make_layout(train_file=args.train, test_file=args.test, out_dir=tmp)
        inputs = layout / "inputs"
        with h5py.File(layout / "labels" / "test_labels.h5", "r") as f:
            shape = f["isolated"].shape
        print(f"fit on {args.train}, predict {shape[0]} blends of {args.test}; {args.rounds} interleaved rounds")
        for name in args.submissions:
            sub = ROOT / "submissions" / name
            outside, inside = [], []
            for _ in range(args.rounds):
                outside.append(plain(sub, inputs))
                inside.append(boxed(name, sub, inputs, shape))
            o, i = statistics.median(outside), statistics.median(inside)
            print(f"{name:<16} outside {o / shape[0]:.4f} s/blend  inside {i / shape[0]:.4f} s/blend  "
                  f"inside/outside {i / o:.3f}  "
                  f"(rounds {min(inside) / max(outside):.3f}-{max(inside) / min(outside):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
