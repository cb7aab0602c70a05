#!/usr/bin/env bash
# Set up (if needed), lint, check formatting, and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${MVDECOR_VENV:-.venv}"
echo "[test] ruff check"
"$VENV/bin/ruff" check src tests benchmarks
echo "[test] ruff format --check"
"$VENV/bin/ruff" format --check src tests benchmarks
echo "[test] pytest"
# The browser tests of the HTML report (tests/viz/test_report.py) must run here,
# not be skipped: setup.sh installed chromium.
export MVDECOR_REQUIRE_BROWSER=1
"$VENV/bin/python" -m pytest -q "$@"
