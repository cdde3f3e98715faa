#!/usr/bin/env bash
# Creates .venv (if missing) and installs replica with its dependencies.
# Why not a plain `pip install -e .`: an unpinned torch would pull a multi-GB CUDA build on a
# CPU machine, and on a CUDA machine we must keep the CUDA torch that is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  if "$PYTHON" -c "import torch" 2>/dev/null; then
    # Reuse the torch already installed (e.g. a CUDA build) instead of downloading another.
    echo "setup: found torch in $PYTHON; creating $VENV with system site-packages to keep it"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  # 2.13.0 is the CPU wheel pip finds locally on CPU machines; on others it is PyPI's build.
  "$VENV/bin/pip" install --quiet "torch==2.13.0"
fi
"$VENV/bin/pip" install --quiet -e ".[dev]"
touch "$VENV/.installed"
echo "setup: done in $(( $(date +%s) - start )) s"
