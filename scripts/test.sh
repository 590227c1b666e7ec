#!/usr/bin/env bash
# Set up and run the default test suite (slow tests are opt-in: scripts/test.sh -m slow).
# The ray extra is installed so that the distributed tests (a real local Ray instance) run too.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
bash scripts/setup.sh test ray
# Real data for the classifier test: Debian's dataset-fashion-mnist (best effort; the test skips without it).
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "note: could not install dataset-fashion-mnist; its test will be skipped"
fi
.venv/bin/python -m pytest -q "$@"
