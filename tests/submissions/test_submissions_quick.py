"""Every submission in ``submissions/`` passes ``ramp-test --quick-test`` (the CI gate of the baselines)."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUBMISSIONS = sorted(p.name for p in (ROOT / "submissions").iterdir() if (p / "deblender.py").exists())


def test_the_four_baselines_are_there():
    assert set(SUBMISSIONS) >= {"starting_kit", "forward_model", "unet", "scarlet2"}


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBMISSIONS)
def test_ramp_test_quick(name, small_data_dir, tmp_path):
    # find_spec, not importorskip: importing JAX here would make later forks in this process unsafe
    if name == "scarlet2" and os.environ.get("CI") != "true" and importlib.util.find_spec("scarlet2") is None:
        pytest.skip("scarlet2 is not installed (pip install -r requirements-scarlet2.txt)")
    kit = tmp_path / "kit"
    (kit / "submissions").mkdir(parents=True)
    shutil.copy(ROOT / "problem.py", kit / "problem.py")
    shutil.copytree(ROOT / "submissions" / name, kit / "submissions" / name,
                    ignore=shutil.ignore_patterns("training_output", "__pycache__"))
    (kit / "data").symlink_to(small_data_dir, target_is_directory=True)
    env = {**os.environ, "NO_COLOR": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAMP_TEST_MODE", None)
    run = subprocess.run([str(Path(sys.executable).with_name("ramp-test")), "--submission", name, "--quick-test"],
                         cwd=kit, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, f"ramp-test {name}: rc {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    plain = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)
    bagged = plain.split("Bagged scores", 1)[1]
    test_line = next(line for line in bagged.splitlines() if line.strip().startswith("test"))
    score = float(test_line.split()[1])
    assert 0.0 <= score <= 1.0
