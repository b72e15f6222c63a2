#!/usr/bin/env bash
# The README's main command: install (into .venv), make the default data set,
# then train and score the starting kit with ramp-test.
#   ./quickstart.sh                      # starting_kit on the default data
#   SUBMISSION=forward_model ./quickstart.sh
#   ./quickstart.sh --quick-test         # extra arguments go to ramp-test
set -euo pipefail
cd "$(dirname "$0")"
./setup_env.sh
if [ ! -f data/train.h5 ] || [ ! -f data/test.h5 ] || [ ! -f data/train_mini.h5 ] || [ ! -f data/test_mini.h5 ]; then
  .venv/bin/python prepare_data.py --overwrite
fi
exec .venv/bin/ramp-test --submission "${SUBMISSION:-starting_kit}" "$@"
