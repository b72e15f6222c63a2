"""Every blind baseline passes ``ramp-test --quick-test`` from ``blind/`` on the kit's mini data."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLIND = ROOT / "blind"
NAMES = sorted(p.name for p in (BLIND / "submissions").iterdir() if (p / "detector.py").exists())


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_ramp_test_quick(name, small_data_dir, tmp_path):
    (tmp_path / "data").symlink_to(small_data_dir, target_is_directory=True)  # the mini files made by the suite
    run = subprocess.run(
        [str(Path(sys.executable).with_name("ramp-test")), "--submission", name, "--quick-test",
         "--ramp-kit-dir", str(BLIND), "--ramp-data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=BLIND, env={**os.environ, "NO_COLOR": "1", "DEBLEND_DETECT_BUDGET_S": "20"},  # unet_detect's fit: 20 s at most
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Bagged scores" in run.stdout and "unrecognised" in run.stdout


def test_every_baseline_is_collected():
    assert {"sep_detect", "sep_forward", "sep_tuned", "unet_detect"} <= set(NAMES)
