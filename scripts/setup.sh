#!/usr/bin/env bash
# Create .venv (if missing) and install uqdiff with the CPU torch wheel.
# Usage: scripts/setup.sh [extra...]   e.g. scripts/setup.sh test terrain
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# torch first, pinned: an unpinned torch pulls several GB of CUDA packages.
# GPU users: install your own torch build (>= 2.1) before running this.
python -c "import torch" 2>/dev/null || python -m pip install --quiet "torch==2.13.0"
extras=""
if [ "$#" -gt 0 ]; then extras="[$(IFS=,; echo "$*")]"; fi
python -m pip install --quiet -e ".${extras}"
# The pretrained terrain model, with the terrain extra (onnxruntime); --no-deps because its Linux
# dependency is the 250 MB onnxruntime-gpu.
case " $* " in
  *" terrain "*) python -c "import terrain_diffusion" 2>/dev/null \
    || python -m pip install --quiet --no-deps "adaptive-terrain-diffusion==0.4.2" ;;
esac
