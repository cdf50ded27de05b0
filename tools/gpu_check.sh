#!/usr/bin/env bash
# The GPU check (tools/gpu_check.py) on a lent GPU machine: PyTorch, transformers and accelerate are
# there already (another torch than ours: it is not reinstalled); the suite's other dependencies come
# as wheels in .whl/ (tools/gpu_wheels.sh fetches them here), nothing from the hub or the network.
#   device run: bash tools/gpu_check.sh      (carry: .whl)      -> $OUT/gpu_check.json, $OUT/log
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "gpu_check: the wheels in .whl/ did not install" >&2; exit 2; }
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 RA3_RUNS_DIR=/tmp/ra3-runs RA3_DATA_DIR=/tmp/ra3-data
out="${OUT:-/tmp/gpu-check}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
timeout 470 python3 tools/gpu_check.py --out "$out" 2>&1 | tee "$out/log"
