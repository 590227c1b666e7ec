#!/usr/bin/env bash
# The command-line example outputs in benchmarks/results/cli_example/ (about 1 min on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1
# uqdiff refuses to write a run into a folder that holds another run's results: this script
# re-records them, so it clears its own folders first.
rm -rf benchmarks/results/cli_example/terrain benchmarks/results/cli_example/fashion
$PY -m uqdiff compare --model terrain -O difficulty=50 --budget 64 --batch-size 16 \
    --out benchmarks/results/cli_example/terrain "$@"
$PY -m uqdiff compare --model fashion -O class_label=7 -O steps=20 --statistics mean contrast centroid pixel_map \
    --budget 64 --batch-size 16 --out benchmarks/results/cli_example/fashion "$@"
