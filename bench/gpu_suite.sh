#!/usr/bin/env bash
# The issue-14 measurements on a GPU box. Parts, several per call, each call under 10 minutes:
#
#   here, no GPU needed:
#     bash bench/gpu_suite.sh stage      # onnxruntime-gpu (CUDA 13) + the wheels the GPU image lacks into
#                                        # .device-stage/, and the 1-epoch recipe bundles into bundles/gpu-1ep/
#   on the GPU machine (`run`; BENCHMARKS.md "The GPU runs" gives the exact calls):
#     bash bench/gpu_suite.sh install    # unpack what `stage` sent (needs /root/ortparts/p.0-2 from earlier calls)
#     bash bench/gpu_suite.sh diffusion  # DDIM-50 CFG, b1/16/64
#     bash bench/gpu_suite.sh oneshot    # cvae, cgan, cflow, b1/256
#     bash bench/gpu_suite.sh text       # charrnn, chartransformer, b1/128
#     bash bench/gpu_suite.sh pytest     # the README's test command
#     bash bench/gpu_suite.sh prepare    # only if `stage` did not send bundles/gpu-1ep: train + export there
#
# Every table names the device each row ran on; torch eager and torch.compile (reduce-overhead, CUDA
# graphs) run on the same GPU and are the baseline. Results and the exact commands go to
# bench/results/gpu/ (RESULTS=... to change); where $OUT is set (the device tool) they are also packed
# into $OUT/gpu-results.tgz after every bench, so a call that runs out of time still returns what it
# finished (the tool returns at most 8 files).
#
# Not run on a GPU yet: no session so far had one lent while this script existed (BENCHMARKS.md says so).
# Checked here by running `stage`, `prepare` and the CPU-runnable backends in an environment built
# like the GPU image (python3 without genctl installed, genctl on PYTHONPATH).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${RESULTS:-bench/results/gpu}
bundles=${BUNDLES:-bundles/gpu-1ep}
PY=${PYTHON:-python3}
# The GPU image has no network and genctl is not pip-installed there: the source checkout is the package.
paths() {  # /tmp/ortsite (onnxruntime-gpu) before the image's onnxruntime, then /tmp/site's wheels, then the checkout
  local site
  for site in /tmp/site /tmp/ortsite; do
    if [ -d "$site" ]; then case ":${PYTHONPATH:-}:" in *":$site:"*) ;; *) PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" ;; esac; fi
  done
  case ":${PYTHONPATH:-}:" in *":$PWD:"*) ;; *) PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" ;; esac
  export PYTHONPATH
}
paths
genctl() { "$PY" -m genctl "$@"; }

header() {  # what ran where, once per part
  mkdir -p "$out"
  { echo "# $(date -u +%FT%TZ) $*"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi";
    "$PY" -c "import torch, onnxruntime as o; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| onnxruntime', o.__version__, o.get_available_providers())"; } >> "$out/$1.txt"
}

pack() {  # everything measured so far, in one file the device tool brings back
  [ -n "${OUT:-}" ] && [ -d "$out" ] && tar -czf "$OUT/gpu-results.tgz" "$out" || true
}

bench() {  # bench NAME BUNDLE ARGS...: one genctl bench run, its command line kept with the table
  local name=$1; shift
  header "$name"
  echo "\$ genctl bench $*" >> "$out/$name.txt"
  if ! genctl bench "$@" --json "$out/$name.json" --plot "$out/$name.png" 2>&1 | tee -a "$out/$name.txt"; then
    echo "FAILED: genctl bench $* (see $out/$name.txt)" | tee -a "$out/failures.txt"; failures=$((failures + 1))
  fi
  pack
}

ckpt() {  # ckpt FAMILY DATASET: the recipe architecture, 1 epoch (timings depend on the architecture only)
  local ck=runs/gpu-1ep/$1-$2 bd=$bundles/$1-$2
  mkdir -p runs/gpu-1ep "$bundles"
  [ -d "$ck" ] || genctl train "$1" --dataset "$2" --epochs 1 --out "$ck"
  [ -d "$bd" ] || genctl export "$ck" --out "$bd"
  if ! genctl inspect "$bd" --json | grep -q '"fp16"'; then
    genctl build "$bd" --target onnxruntime --precision fp16 | tee -a "$bundles/build-fp16.txt" \
      || echo "$1: fp16 variant refused by its gate (see above)" | tee -a "$bundles/build-fp16.txt"
  fi
}

# Wheels genctl needs that the GPU image lacks (its package list: /work/.library/device/KINDS.md), for
# its python 3.12; install-ort-gpu.sh installs every wheel in .device-stage/tools into /tmp/site.
extra_wheels=(fastapi==0.165.0 starlette==1.10.0 pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0
              typing-inspection==0.4.5 typing-extensions==4.16.0 uvicorn==0.54.0 opentelemetry-api==1.45.2)

# BACKENDS=... replaces the lists (a dry run of the mechanics on a CPU box: BACKENDS=torch,onnxruntime).
gpu_backends=${BACKENDS:-torch+cuda,torch-compile+cuda,onnxruntime,onnxruntime+noiobinding,onnxruntime+cudagraphs,onnxruntime+cudagraphs:fp16}
text_backends=${BACKENDS:-torch+cuda,onnxruntime+cpu,onnxruntime,onnxruntime+noiobinding,onnxruntime+graphpick,onnxruntime+graphpick+cudagraphs}
part() {
  case "$1" in
    stage)
      [ -d ../shared/device ] || { echo "stage: ../shared/device/stage-ort-gpu.sh not found (run from the project checkout)" >&2; exit 2; }
      bash ../shared/device/stage-ort-gpu.sh
      "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .device-stage/tools "${extra_wheels[@]}"
      part prepare
      du -sh .device-stage/* "$bundles" ;;
    install)
      if [ -d /tmp/ortsite/onnxruntime ]; then echo "onnxruntime-gpu already unpacked in /tmp/ortsite"
      else bash .device-stage/tools/install-ort-gpu.sh; fi
      paths  # the parts after install in this call import what it unpacked
      echo "PYTHONPATH=$PYTHONPATH"
      genctl doctor ;;
    prepare)
      for fam in cvae cgan cflow diffusion; do ckpt "$fam" mnist; done
      for fam in charrnn chartransformer; do ckpt "$fam" names; done ;;
    diffusion)
      bench diffusion "$bundles/diffusion-mnist" --backends "$gpu_backends" \
        --batch-sizes 1,16,64 --steps 50 --guidance-scale 3 --iters 10 --warmup 2 ;;
    oneshot)
      for fam in cvae cgan cflow; do
        bench "$fam" "$bundles/$fam-mnist" --backends "$gpu_backends" --batch-sizes 1,256
      done ;;
    text)  # GPU against GPU, and the machine's CPU cores (onnxruntime+cpu) for the "faster than the CPU" target
      for fam in charrnn chartransformer; do
        bench "$fam" "$bundles/$fam-names" --batch-sizes 1,128 --max-new-tokens 12 \
          --backends "$text_backends"
      done ;;
    pytest)
      header pytest
      local rc=0
      "$PY" -m pytest -q -p no:cacheprovider > "$out/pytest.log" 2>&1 || rc=$?
      { tail -n 40 "$out/pytest.log"; echo "pytest exit $rc"; } | tee -a "$out/pytest.txt"
      [ "$rc" = 0 ] || { echo "FAILED: pytest (exit $rc, $out/pytest.log)" >> "$out/failures.txt"; failures=$((failures + 1)); }
      pack ;;
    *) echo "usage: bash bench/gpu_suite.sh stage | install | prepare | diffusion | oneshot | text | pytest  (several parts allowed)" >&2
       exit 2 ;;
  esac
}

failures=0
[ $# -gt 0 ] || part usage
for p in "$@"; do part "$p"; done
[ "$failures" = 0 ] || { echo "$failures part(s) failed: $out/failures.txt" >&2; exit 1; }
