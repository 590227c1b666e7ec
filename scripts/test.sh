#!/usr/bin/env bash
# Set up and run the default checks: the layer contract (import-linter), lint and format (ruff),
# then the test suite. Slow tests are opt-in: scripts/test.sh -m slow.
# The ray extra is installed so that the distributed tests (a real local Ray instance) run too.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
bash scripts/setup.sh test ray terrain
# Real data for the Fashion-MNIST tests: Debian's dataset-fashion-mnist. As root with apt-get this
# installs it (and says so); elsewhere those tests skip.
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing the Debian package dataset-fashion-mnist with apt-get (real data for the Fashion-MNIST tests)"
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
      || echo "note: could not install dataset-fashion-mnist; its tests will be skipped"
  else
    echo "note: dataset-fashion-mnist is not installed and this is not root with apt-get; its tests will be skipped"
  fi
fi
echo "== layers (lint-imports)"
.venv/bin/lint-imports --no-cache
echo "== lint and format (ruff)"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== tests (pytest)"
.venv/bin/python -m pytest -q "$@"
