#!/usr/bin/env bash
# Deploy the kit as an event on a local ramp-board (see rampboard/README.md):
#   rampboard/deploy.sh up [--serve | --keep-running] [options]   deploy, score the baselines, show the leaderboard
#   rampboard/deploy.sh serve                                      run an existing deployment until Ctrl-C
#   rampboard/deploy.sh down [--purge]                             stop what a deployment left running
# Makes .venv (./setup_env.sh) and .venv-rampboard (rampboard/requirements-rampboard.txt),
# and installs Debian's PostgreSQL when it is missing (as root, with apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."

./setup_env.sh

venv=.venv-rampboard
PY=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  "$PY" -m venv "$venv"
fi
stamp=$venv/.requirements.sha
want=$(sha256sum rampboard/requirements-rampboard.txt requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r rampboard/requirements-rampboard.txt
  "$venv/bin/python" -m pip install -q -e . --no-deps
  echo "$want" > "$stamp"
fi

if [ "${1:-}" = "up" ] && [ -z "${RAMPBOARD_PG_BINDIR:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing PostgreSQL (Debian's package)..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL is not installed: run 'apt-get update && apt-get install -y postgresql' as root" >&2
    echo "(or set RAMPBOARD_PG_BINDIR to the directory of initdb and pg_ctl)" >&2
    exit 1
  fi
fi

# the worker runs every submission in the kit's bubblewrap sandbox (no unsandboxed fallback)
if [ "${1:-}" = "up" ] && ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing bubblewrap (Debian's package: the submissions' sandbox)..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
  else
    echo "bubblewrap is not installed: run 'apt-get update && apt-get install -y bubblewrap' as root" >&2
    echo "(the ramp-board worker runs every submission in its sandbox, never without)" >&2
    exit 1
  fi
fi

exec "$venv/bin/python" rampboard/deploy.py "$@"
