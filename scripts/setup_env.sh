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
# The studio's browser test drives Debian's chromium + chromedriver (tests/test_studio_browser.py).
# Installed here only as root and only when missing; a failure warns and the test skips with why.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium + chromium-driver (apt-get) for the studio's browser test"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
      echo "setup: warning: could not install chromium; the browser test will be skipped" >&2
    fi
  else
    echo "setup: note: chromium/chromedriver missing and not root (or no apt-get); the browser test will be skipped" >&2
  fi
fi
touch "$VENV/.installed"
echo "setup: done in $(( $(date +%s) - start )) s"
