"""The console scripts of pyproject.toml: each names a main() and its python -m form runs."""
from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_the_scripts_are_the_commands_of_the_cli_package():
    assert sorted(SCRIPTS) == ["deblend-ensemble", "deblend-leaderboard", "deblend-prepare", "deblend-run",
                               "deblend-score", "deblend-validate"]
    assert all(target.startswith("deblendkit.cli.") and target.endswith(":main") for target in SCRIPTS.values())


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_script_has_a_main_and_answers_help(script):
    module, func = SCRIPTS[script].split(":")
    assert callable(getattr(importlib.import_module(module), func))
    run = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.lstrip().startswith("usage:")
    installed = shutil.which(script, path=str(Path(sys.executable).parent))
    if installed is not None:  # installed by pip install -e . (setup_env.sh): the same command
        same = subprocess.run([installed, "--help"], capture_output=True, text=True, timeout=120)
        assert same.returncode == 0 and same.stdout.lstrip().startswith("usage:")


def _quickstart_data_check() -> str:
    """The Python check quickstart.sh runs before deciding to (re)make the default data."""
    text = (ROOT / "quickstart.sh").read_text()
    start = text.index("<<'PY'\n") + len("<<'PY'\n")
    return text[start: text.index("\nPY\n", start)]


def test_quickstart_data_check_keeps_good_data_and_names_missing_files(tmp_path, small_data_dir):
    """quickstart.sh's check exits 0 on readable data and 1, naming the file, on missing data.

    (A broken import in it would exit 1 too and remake the data on every run:
    the traceback must not be what makes it fail.)
    """
    check = _quickstart_data_check()
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test", "train_mini", "test_mini"):
        shutil.copy(small_data_dir / ("train.h5" if "train" in split else "test.h5"), data / f"{split}.h5")
    good = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert good.returncode == 0, good.stderr
    (data / "test_mini.h5").unlink()
    missing = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert "test_mini.h5" in missing.stderr and "making the default data" in missing.stderr
