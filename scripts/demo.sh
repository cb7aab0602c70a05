#!/usr/bin/env bash
# Set up (if needed) and run the end-to-end demo on built-in shapes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${MVDECOR_VENV:-.venv}"
"$VENV/bin/mvdecor" demo "$@"
