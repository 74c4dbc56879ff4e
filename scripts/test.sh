#!/usr/bin/env bash
# Installs what the tests need (Python packages, Debian's chromium for the browser tests)
# and runs the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
    echo "installing Debian's chromium for the browser tests"
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null \
      || echo "chromium could not be installed: the browser tests will be skipped"
  else
    echo "no apt-get here: the browser tests will be skipped"
  fi
fi

python -m pip install -q -r requirements-dev.txt
python -m pytest "$@"
