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
