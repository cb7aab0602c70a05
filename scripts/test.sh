#!/usr/bin/env bash
# Set up (if needed), lint, check formatting, and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${MVDECOR_VENV:-.venv}"
echo "[test] ruff check"
"$VENV/bin/ruff" check src tests benchmarks scripts
echo "[test] ruff format --check"
"$VENV/bin/ruff" format --check src tests benchmarks scripts
echo "[test] pytest"
# The training tests write checkpoints (peak about 2 GB, see BENCHMARKS.md): say how much room
# the temporary folder has, so a full disk shows up as the cause rather than as odd failures.
TMP_ROOT="${TMPDIR:-/tmp}"
FREE_MB=$(df -Pm "$TMP_ROOT" | awk 'NR == 2 {print $4}')
echo "[test] $FREE_MB MB free in $TMP_ROOT"
if [ "${FREE_MB:-0}" -lt 3000 ]; then
    echo "[test] warning: under 3 GB free in $TMP_ROOT; the training tests may fail with disk errors" >&2
fi
# The browser tests of the HTML report (tests/viz/test_report.py) must run here,
# not be skipped: setup.sh installed chromium.
export MVDECOR_REQUIRE_BROWSER=1
"$VENV/bin/python" -m pytest -q "$@"
