#!/usr/bin/env bash
# Create .venv (if missing) and install mvdecor into it, idempotently.
#
# PyTorch comes first, pinned (torch==2.13.0: on these machines the local CPU
# wheel), then everything else under constraints.txt, which pins torch so that
# no dependency can pull the multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${MVDECOR_VENV:-.venv}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# Reinstall only when the dependency declarations changed.
stamp="$VENV/.mvdecor-install-stamp"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c "import mvdecor, torch, embreex" 2>/dev/null; }; then
    echo "[setup] installing torch==2.13.0 (CPU wheel) and mvdecor into $VENV"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet "torch==2.13.0"
    "$PY" -m pip install --quiet -c constraints.txt -e ".[dev]"
    echo "$want" > "$stamp"
fi

# A headless browser for tests/viz/test_report.py, which opens the HTML report
# from file:// and checks that its 3D view draws. Installed only when missing,
# and only where we may (root with apt-get); elsewhere the test is skipped,
# unless MVDECOR_REQUIRE_BROWSER=1 (scripts/test.sh sets it) makes it fail.
if ! command -v chromium >/dev/null 2>&1 && [ -z "${MVDECOR_CHROMIUM:-}" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing chromium (headless browser for the HTML report test)"
        export DEBIAN_FRONTEND=noninteractive
        # Try the current package lists first; refresh them only if that fails.
        if ! apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
            apt-get update -qq >/dev/null 2>&1 || true
            apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 ||
                echo "[setup] warning: 'apt-get install chromium' failed; the browser test of the HTML report cannot run" >&2
        fi
    else
        echo "[setup] warning: chromium not found and not installable here (needs root and apt-get);" \
            "install it (or set MVDECOR_CHROMIUM=/path/to/chromium) to run the browser test of the HTML report" >&2
    fi
fi
