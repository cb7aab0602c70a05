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
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c "import mvdecor, torch, embreex" 2>/dev/null; then
    exit 0
fi
echo "[setup] installing torch==2.13.0 (CPU wheel) and mvdecor into $VENV"
"$PY" -m pip install --quiet --upgrade pip
"$PY" -m pip install --quiet "torch==2.13.0"
"$PY" -m pip install --quiet -c constraints.txt -e ".[dev]"
echo "$want" > "$stamp"
