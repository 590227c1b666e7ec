#!/usr/bin/env bash
# The prepared GPU run (about 8 minutes on one H200: 161 s, 207 s, 22 s and 40 s for its four parts), in order of what matters most:
#   1. benchmarks/solver_population.py: the Fashion-MNIST solver evaluation (DPS, DDS, RSD, DiffPIR
#      under capture; 20 test images, 3 tasks) on the GPU, its wall time per task beside the CPU
#      run's in benchmarks/results/inverse/solver_population.md;
#   2. benchmarks/solver_designs.py per task (8 test images, DPS and DDS): the efficiency of each design
#      against MC on per-image L1 and PSNR, which takes an hour per task on 2 CPU cores;
#   3. the CUDA-marked tests (pytest -m cuda): CPU vs CUDA streams, captured samplers on the GPU;
#   4. benchmarks/gpu_check.py: CPU vs CUDA noise for every stream design, a captured DDPM loop timed
#      against the direct call at batch 64 on the GPU, same-seed repeats and the repeat check there.
# Everything it writes goes under benchmarks/results/gpu/ (or $GPU_OUT). Without CUDA it still runs:
# the models and checks run on the CPU and the CUDA tests skip (use GPU_OUT=/tmp/... and --quick to
# keep the tree clean and the run short).
# Usage: bash benchmarks/gpu_suite.sh [--quick]     (PYTHON=python3 where there is no .venv)
# Fashion-MNIST's test split comes from $FASHION_MNIST_ROOT (default: Debian's dataset-fashion-mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
PY=${PYTHON:-.venv/bin/python}
OUT=${GPU_OUT:-benchmarks/results/gpu}
QUICK=""
if [ "${1:-}" = "--quick" ]; then QUICK="--quick"; fi
mkdir -p "$OUT"
if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  "$PY" -c "import torch; print('CUDA device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)" \
    | tee "$OUT/device.txt"
else
  echo "no CUDA device: everything runs on the CPU and the CUDA tests skip" | tee "$OUT/device.txt"
fi
failed=0
echo "== solver_population.py (Fashion-MNIST evaluation of four solvers)"
timeout 330 "$PY" benchmarks/solver_population.py $QUICK --out "$OUT" || { echo "solver_population.py failed"; failed=1; }
for task in super_resolution gaussian_blur inpainting; do
  echo "== solver_designs.py --task $task"
  timeout 120 "$PY" benchmarks/solver_designs.py $QUICK --task "$task" --images 8 --out "$OUT" \
    || { echo "solver_designs.py --task $task failed"; failed=1; }
done
echo "== CUDA tests (pytest -m cuda)"
set +e
timeout 100 "$PY" -m pytest -q -p no:cacheprovider -m cuda -rs tests/test_streams.py tests/test_capture.py \
  2>&1 | tee "$OUT/cuda_tests.txt"
status=${PIPESTATUS[0]}
set -e
# exit status 5: every selected test was deselected or skipped (no CUDA); anything else non-zero is a failure
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then echo "CUDA tests failed (exit $status)"; failed=1; fi
echo "== gpu_check.py"
timeout 100 "$PY" benchmarks/gpu_check.py $QUICK --out "$OUT" || { echo "gpu_check.py failed"; failed=1; }
exit $failed
