#!/usr/bin/env bash
# The README's test command: set up .venv from requirements.txt (idempotent),
# check the code with ruff, then run every test (slow ones included). pytest's exit code 5 ("no tests
# collected") is a failure here.
set -euo pipefail
cd "$(dirname "$0")"
./setup_env.sh --with-scarlet2
# Lint first (imports sorted, pyflakes, numpydoc docstrings of the public API; pyproject.toml [tool.ruff]).
.venv/bin/ruff check --quiet .
.venv/bin/python -m pytest -q -ra "$@"
