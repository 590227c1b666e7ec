#!/usr/bin/env bash
# Set up and run the main demo: MC vs antithetic vs K-antithetic vs RQMC at an equal budget.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh terrain
.venv/bin/python -m uqdiff.cli.demo "$@"
