#!/usr/bin/env bash
# Reproduce BENCHMARKS.md: train every family's recipe, export, build the int8 variant, bench, eval.
#   bash bench/run_suite.sh                 # all families
#   bash bench/run_suite.sh cvae diffusion  # some
# Checkpoints and bundles are reused when present (delete runs/ to retrain). Results: bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
families=("$@")
[ ${#families[@]} -gt 0 ] || families=(cvae cgan cflow diffusion charrnn chartransformer)
backends=${BACKENDS:-torch,torch-compile,onnxruntime,onnxruntime:int8}
results=bench/results
mkdir -p "$results" runs bundles

for fam in "${families[@]}"; do
  case "$fam" in
    charrnn|chartransformer) ds=names; sizes=1,8,32; extra=(--max-new-tokens 12); evalargs=(-n 800) ;;
    diffusion) ds=mnist; sizes=1,16; extra=(--steps 50 --guidance-scale 3 --iters 5 --warmup 1); evalargs=(-n 500 --guidance-scales 0,1,3,5) ;;
    *) ds=mnist; sizes=1,16,64; extra=(); evalargs=(-n 1000) ;;
  esac
  ck=runs/$fam-$ds; bd=bundles/$fam-$ds
  [ -d "$ck" ] || { /usr/bin/time -f "$fam train wall %e s" genctl train "$fam" --dataset "$ds" --out "$ck" 2>&1 | tail -2 | tee "$results/$fam.train.txt"; }
  [ -d "$bd" ] || genctl export "$ck" --out "$bd"
  fam_backends=$backends
  if ! genctl build "$bd" --target onnxruntime --precision int8 2>&1 | tee "$results/$fam.build-int8.txt"; then
    echo "$fam: int8 variant refused by the quality gate (see above); benched without it"
    fam_backends=${backends//,onnxruntime:int8/}
  fi
  genctl bench "$bd" --backends "$fam_backends" --batch-sizes "$sizes" "${extra[@]}" --json "$results/$fam.bench.json" --plot "$results/$fam.bench.png" | tee "$results/$fam.bench.txt"
  genctl eval "$bd" --backend onnxruntime "${evalargs[@]}" --json "$results/$fam.eval.json" | tee "$results/$fam.eval.txt"
  if genctl inspect "$bd" --json | grep -q '"int8"'; then
    genctl eval "$bd" --backend onnxruntime --precision int8 "${evalargs[@]}" --json "$results/$fam.eval-int8.json" | tee "$results/$fam.eval-int8.txt" || true
  fi
done
# Plots of every family's results, the guidance sweep and the summary across families (BENCHMARKS.md shows them).
python bench/plot_results.py
