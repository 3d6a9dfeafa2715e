#!/usr/bin/env bash
# The issue-14 measurements on a GPU box, in parts that each fit one 10-minute device call:
#   bash bench/gpu_suite.sh prepare            # 1-epoch recipe checkpoints, export, fp16 variants (CPU work)
#   bash bench/gpu_suite.sh diffusion          # DDIM-50 CFG, b1/16/64
#   bash bench/gpu_suite.sh oneshot            # cvae, cgan, cflow, b1/256
#   bash bench/gpu_suite.sh text               # charrnn, chartransformer, b1/128
#   bash bench/gpu_suite.sh pytest             # the README's test command, on the GPU box
# Needs onnxruntime-gpu with a usable CUDA execution provider (`genctl doctor` says so) and torch
# with CUDA. Every table names the device each row ran on; torch eager and torch.compile
# (reduce-overhead, CUDA graphs) run on the same GPU and are the baseline. Results and the exact
# commands go to bench/results/gpu/ (RESULTS=... to change).
#
# Not run yet: no session so far had a GPU lent while this script existed (BENCHMARKS.md says so).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${RESULTS:-bench/results/gpu}
mkdir -p "$out" runs bundles

header() {  # what ran where, once per part
  { echo "# $(date -u +%FT%TZ) $*"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi";
    python -c "import torch, onnxruntime as o; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| onnxruntime', o.__version__, o.get_available_providers())"; } >> "$out/$1.txt"
}

bench() {  # bench NAME BUNDLE ARGS...: one genctl bench run, its command line kept with the table
  local name=$1; shift
  header "$name"
  echo "\$ genctl bench $*" >> "$out/$name.txt"
  genctl bench "$@" --json "$out/$name.json" --plot "$out/$name.png" | tee -a "$out/$name.txt"
}

ckpt() {  # ckpt FAMILY DATASET: the recipe architecture, 1 epoch (timings depend on the architecture only)
  local ck=runs/$1-$2-1ep bd=bundles/$1-$2-1ep
  [ -d "$ck" ] || genctl train "$1" --dataset "$2" --epochs 1 --out "$ck"
  [ -d "$bd" ] || genctl export "$ck" --out "$bd"
  if ! genctl inspect "$bd" --json | grep -q '"fp16"'; then
    genctl build "$bd" --target onnxruntime --precision fp16 | tee -a "$out/build-fp16.txt" \
      || echo "$1: fp16 variant refused by its gate (see above)" | tee -a "$out/build-fp16.txt"
  fi
}

gpu_backends=torch+cuda,torch-compile+cuda,onnxruntime,onnxruntime+noiobinding,onnxruntime+cudagraphs
case "${1:-}" in
  prepare)
    for fam in cvae cgan cflow diffusion; do ckpt "$fam" mnist; done
    for fam in charrnn chartransformer; do ckpt "$fam" names; done ;;
  diffusion)
    bench diffusion bundles/diffusion-mnist-1ep --backends "$gpu_backends,onnxruntime+cudagraphs:fp16" \
      --batch-sizes 1,16,64 --steps 50 --guidance-scale 3 --iters 10 --warmup 2 ;;
  oneshot)
    for fam in cvae cgan cflow; do
      bench "$fam" "bundles/$fam-mnist-1ep" --backends "$gpu_backends,onnxruntime+cudagraphs:fp16" --batch-sizes 1,256
    done ;;
  text)  # GPU against GPU, and the machine's CPU cores (onnxruntime+cpu) for the "faster than the CPU" target
    for fam in charrnn chartransformer; do
      bench "$fam" "bundles/$fam-names-1ep" --batch-sizes 1,128 --max-new-tokens 12 \
        --backends "torch+cuda,onnxruntime+cpu,onnxruntime,onnxruntime+noiobinding,onnxruntime+graphpick,onnxruntime+graphpick+cudagraphs"
    done ;;
  pytest)
    header pytest
    python -m pytest -q 2>&1 | tail -n 30 | tee -a "$out/pytest.txt" ;;
  *) echo "usage: bash bench/gpu_suite.sh prepare|diffusion|oneshot|text|pytest" >&2; exit 2 ;;
esac
