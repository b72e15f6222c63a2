#!/usr/bin/env bash
# The README's main command: install (into .venv), make the default data set,
# then train and score the starting kit with ramp-test.
#   ./quickstart.sh                      # starting_kit on the default data
#   SUBMISSION=forward_model ./quickstart.sh
#   ./quickstart.sh --quick-test         # extra arguments go to ramp-test
set -euo pipefail
cd "$(dirname "$0")"
./setup_env.sh
# Make the default data when it is missing or unreadable by this version of the kit
# (e.g. files of an older schema): the check prints why before the data is remade.
if ! .venv/bin/python - <<'PY'
import sys
from deblendkit.errors import DataFileError
from deblendkit.storage.reader import validate_file
try:
    for split in ("train", "test", "train_mini", "test_mini"):
        validate_file(f"data/{split}.h5")
except DataFileError as exc:
    print(f"quickstart.sh: {exc}: making the default data", file=sys.stderr)
    sys.exit(1)
PY
then
  .venv/bin/python prepare_data.py --overwrite
fi
exec .venv/bin/ramp-test --submission "${SUBMISSION:-starting_kit}" "$@"
