#!/usr/bin/env bash
# The README's test command: set up .venv from requirements.txt (idempotent),
# then run every test (slow ones included). pytest's exit code 5 ("no tests
# collected") is a failure here.
set -euo pipefail
cd "$(dirname "$0")"
./setup_env.sh --with-scarlet2
.venv/bin/python -m pytest -q -ra "$@"
