"""The report's command lines run as ``python -m deblendkit.cli.leaderboard`` / ``...cli.validate``."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module,argv,message", [
    ("deblendkit.cli.validate", [], "validate: error: give a data FILE, or --sky to simulate a big field (or both)\n"),
    ("deblendkit.cli.leaderboard", ["--submissions", "no_such_dir", "--no-references"],
     "error: submissions directory 'no_such_dir' does not exist or is not a directory\n"),
])
def test_python_dash_m_forms(module, argv, message, tmp_path):
    run = subprocess.run([sys.executable, "-m", module, *argv], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and run.stderr == message and run.stdout == ""
    assert importlib.import_module(module).build_parser().format_usage().startswith(f"usage: python -m {module} ")
