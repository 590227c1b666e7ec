#!/usr/bin/env bash
# Set up and run the default test suite (slow tests are opt-in: scripts/test.sh -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
bash scripts/setup.sh test
.venv/bin/python -m pytest -q "$@"
