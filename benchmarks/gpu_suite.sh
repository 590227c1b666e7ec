#!/usr/bin/env bash
# The prepared GPU check of capture and streams (under 8 minutes on one H100/H200):
#   1. the CUDA-marked tests (pytest -m cuda): CPU vs CUDA streams, captured samplers on the GPU;
#   2. benchmarks/gpu_check.py: CPU vs CUDA noise for every stream design, a captured DDPM loop timed
#      against the direct call at batch 64 on the GPU, same-seed repeats and the repeat check there.
# Everything it writes goes under benchmarks/results/gpu/ (or $GPU_OUT). Without CUDA it still runs:
# the CUDA tests skip and gpu_check.py runs its CPU parts (use GPU_OUT=/tmp/... to keep the tree clean).
# Usage: bash benchmarks/gpu_suite.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
PY=${PYTHON:-.venv/bin/python}
OUT=${GPU_OUT:-benchmarks/results/gpu}
QUICK=""
if [ "${1:-}" = "--quick" ]; then QUICK="--quick"; fi
mkdir -p "$OUT"
if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  "$PY" -c "import torch; print('CUDA device:', torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
else
  echo "no CUDA device: the CUDA tests will skip and gpu_check.py runs on the CPU" | tee "$OUT/device.txt"
fi
echo "== CUDA tests (pytest -m cuda)"
set +e
timeout 240 "$PY" -m pytest -q -p no:cacheprovider -m cuda -rs tests/test_streams.py tests/test_capture.py \
  2>&1 | tee "$OUT/cuda_tests.txt"
status=${PIPESTATUS[0]}
set -e
# exit status 5: every selected test was deselected or skipped (no CUDA); anything else non-zero is a failure
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then echo "CUDA tests failed (exit $status)"; fi
echo "== gpu_check.py"
timeout 300 "$PY" benchmarks/gpu_check.py $QUICK --out "$OUT"
exit $(( status == 5 ? 0 : status ))
