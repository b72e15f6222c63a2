#!/usr/bin/env bash
# Create .venv and install the pinned requirements and the kit (editable).
# --with-scarlet2 also installs requirements-scarlet2.txt (scarlet2 + JAX, ~300 MB),
# which only the scarlet2 submission needs; ./run_tests.sh asks for it.
# Also installs the Debian packages the browser and ramp-board tests need
# (chromium, postgresql, bubblewrap) when they are missing and apt-get is usable (root).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
with_scarlet2=0
for arg in "$@"; do
  case "$arg" in
    --with-scarlet2) with_scarlet2=1 ;;
    *) echo "setup_env.sh: unknown option $arg (allowed: --with-scarlet2)" >&2; exit 2 ;;
  esac
done

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)  # the hosted leaderboard's sandbox
if [ ${#need_apt[@]} -gt 0 ] && [ "${DEBLEND_SKIP_APT:-0}" != 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup_env.sh: installing Debian packages: ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup_env.sh: not root or no apt-get: ${need_apt[*]} not installed; the tests needing them will skip" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q -e . --no-deps
  echo "$want" > "$stamp"
fi
if [ "$with_scarlet2" = 1 ]; then
  stamp2=.venv/.requirements-scarlet2.sha
  want2=$(cat requirements.txt requirements-scarlet2.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp2" 2>/dev/null)" != "$want2" ]; then
    .venv/bin/python -m pip install -q -r requirements.txt -r requirements-scarlet2.txt
    echo "$want2" > "$stamp2"
  fi
fi
