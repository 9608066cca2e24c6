#!/usr/bin/env bash
# The GPU checks, as one prepared run on a CUDA machine with no network (the `device` tool's H100/H200):
# the CUDA-only tests, the kernel benchmark and the GPU presets at full size with random weights.
#   bash scripts/gpu_checks.sh OUTDIR [WHEELS]
# WHEELS: a folder of wheels for what the machine's Python lacks (diffusers, xatlas, pygltflib and their needs).
# Each step has its own time limit so that one slow step cannot take the others' time; logs go to OUTDIR.
set -u
out=${1:?output folder}; wheels=${2:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [ -n "$wheels" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$wheels"/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
# The repository root is the package: make it importable as `dreamsmith`.
mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/dreamsmith && export PYTHONPATH=/tmp/pkg:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)" \
  | tee -a "$out/gpu.txt"
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "== $name: rc $? in $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
  tail -n 25 "$out/$name.log"
}
step tests 140 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_cuda_parity.py \
  tests/core/test_generate.py -k "cuda or parity" -x
step presets_std_sd 120 python3 scripts/bench_presets.py --preset standard --device cuda --steps 10 --pairing sd
step presets_high_sd 120 python3 scripts/bench_presets.py --preset high --device cuda --steps 6 --pairing sd
step bench_kernels 80 python3 scripts/bench.py --device cuda --sizes draft,standard --repeats 3
step presets_std_if 80 python3 scripts/bench_presets.py --preset standard --device cuda --steps 6 --pairing if+sd
cat "$out/summary.txt"
