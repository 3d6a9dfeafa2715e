#!/usr/bin/env bash
# The GPU measurements (issues 14 and 26) in 12 minutes of GPU-machine time: two calls of the device
# tool, everything staged here first.
#
#   here, with network, no GPU needed (about 12 minutes on 2 cores):
#     bash bench/gpu_suite.sh stage
#       -> .device-stage/p0, .device-stage/p1: one xz archive in two parts, each under the 64 MiB a call
#          carries (with the working tree): onnxruntime-gpu with only its sm_90 kernels
#          (bench/prune_fatbin.py), the wheels the GPU image lacks, and the recipe bundles of
#          bundles/gpu-1ep (1 epoch; timings depend on the architecture only). It prints the calls.
#   on the GPU machine (the device tool's `run`; BENCHMARKS.md "The GPU runs" has the exact calls):
#     call 1, carry .device-stage/p0:  bash bench/gpu_suite.sh receive
#     call 2, carry .device-stage/p1:  bash bench/gpu_suite.sh receive install all      (timeout_s 600)
#   `all` = diffusion, text, oneshot (most important first), with the README's test command running
#   beside them on the other half of the CPU cores (its GPU-marked tests run after the tables, alone
#   on the GPU). Every part has a time slot and the whole call a deadline (DEADLINE, 540 s), so it
#   ends inside the tool's 10 minutes; a part cut by its slot or the deadline says so in
#   failures.txt and can go again alone in a later call (`bash bench/gpu_suite.sh text`, ...).
#
# Every table names the device each row ran on; torch eager and torch.compile (reduce-overhead, CUDA
# graphs) run on the same GPU and are the baseline. Results and the exact commands go to
# bench/results/gpu/ (RESULTS=... to change); where $OUT is set (the device tool) they are packed into
# $OUT/gpu-results.tgz after every table, so a call that runs out of time still returns what it
# finished.
#
# Not run on a GPU yet: no session so far had one lent while this script existed (BENCHMARKS.md says
# so). Checked here by running every part in an environment built like the GPU image (python 3.12
# with the image's packages, genctl on PYTHONPATH, not installed) with the CPU backends.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${RESULTS:-bench/results/gpu}
bundles=${BUNDLES:-bundles/gpu-1ep}
stage=.device-stage
landing=${LANDING:-/root/genctl-stage}  # where `receive` keeps the parts between calls (the machine stays warm)
PY=${PYTHON:-python3}
PYVER=${PYVER:-3.12}                    # the GPU image's python (KINDS.md), for the staged wheels
ORT_VERSION=${ORT_VERSION:-1.31.1}       # onnxruntime-gpu's CUDA 13 build, matching the image's CUDA 13
KEEP_SM=${KEEP_SM:-90}                   # H100 / H200
start=$SECONDS
deadline=${DEADLINE:-540}

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

left() { echo $((deadline - (SECONDS - start))); }
fail() { mkdir -p "$out"; echo "$*" | tee -a "$out/failures.txt" >&2; failures=$((failures + 1)); }

bounded() {  # bounded SLOT CMD...: CMD with at most SLOT seconds and never past the deadline; 124 = cut
  local slot=$1 l; shift
  l=$(left)
  [ "$l" -lt "$slot" ] && slot=$l
  if [ "$slot" -lt 20 ]; then echo "skipped, $((SECONDS - start)) s into the call: $*" >&2; return 124; fi
  timeout --signal=INT --kill-after=20 "$slot" "$@"
}

header() {  # what ran where, once per table
  mkdir -p "$out"
  { echo "# $(date -u +%FT%TZ) $*"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi";
    "$PY" -c "import torch, onnxruntime as o; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| onnxruntime', o.__version__, o.get_available_providers())"; } >> "$out/$1.txt"
}

pack() {  # everything measured so far, in one file the device tool brings back
  [ -n "${OUT:-}" ] && [ -d "$out" ] && tar -czf "$OUT/gpu-results.tgz" "$out" || true
}

# The benches run on the first half of the cores, the tests (when beside them) on the second half.
ncpu=$(nproc)
bench_cpus=0-$(( ncpu > 1 ? ncpu / 2 - 1 : 0 ))
test_cpus=$(( ncpu > 1 ? ncpu / 2 : 0 ))-$((ncpu - 1))

bench() {  # bench SLOT NAME BUNDLE ARGS...: one genctl bench run, its command line kept with the table
  local slot=$1 name=$2 rc=0; shift 2
  header "$name"
  echo "\$ genctl bench $*" >> "$out/$name.txt"
  set +e
  bounded "$slot" taskset -c "$bench_cpus" "$PY" -m genctl bench "$@" --json "$out/$name.json" --plot "$out/$name.png" 2>&1 \
    | tee -a "$out/$name.txt"
  rc=${PIPESTATUS[0]}
  set -e
  case $rc in
    0) ;;
    124|130) fail "CUT: genctl bench $* (slot $slot s or the call's deadline; run this part again alone)" ;;
    *) fail "FAILED: genctl bench $* (exit $rc, see $out/$name.txt)" ;;
  esac
  pack
}

ckpt() {  # ckpt FAMILY DATASET [NAME HPARAMS_JSON]: the recipe architecture, 1 epoch, exported, fp16 variant built
  local name=${3:-$1-$2} hp=${4:-} ck bd
  [ -n "$hp" ] || hp='{}'
  ck=runs/gpu-1ep/$name bd=$bundles/$name
  mkdir -p runs/gpu-1ep "$bundles"
  [ -d "$ck" ] || "$PY" -c "import json, sys; from genctl.training.train import train
train(sys.argv[1], sys.argv[2], sys.argv[3], epochs=1, hparams=json.loads(sys.argv[4]) or None)" "$1" "$2" "$ck" "$hp"
  [ -d "$bd" ] || genctl export "$ck" --out "$bd"
  if ! genctl inspect "$bd" --json | grep -q '"fp16"'; then
    genctl build "$bd" --target onnxruntime --precision fp16 | tee -a "$bundles/build-fp16.txt" \
      || echo "$name: fp16 variant refused by its gate (see above)" | tee -a "$bundles/build-fp16.txt"
  fi
}

# Wheels genctl needs that the GPU image lacks (its package list: /work/.library/device/KINDS.md).
extra_wheels=(fastapi==0.165.0 starlette==1.10.0 pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0
              typing-inspection==0.4.5 typing-extensions==4.16.0 uvicorn==0.54.0 opentelemetry-api==1.45.2
              faker mlxtend)
pyargs=(--no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

# BACKENDS=... replaces the lists (the mechanics on a CPU box: BACKENDS=torch,onnxruntime).
gpu_backends=${BACKENDS:-torch+cuda,torch-compile+cuda,onnxruntime,onnxruntime+noiobinding,onnxruntime+cudagraphs,onnxruntime+cudagraphs:fp16}
text_backends=${BACKENDS:-torch+cuda,onnxruntime+cpu,onnxruntime,onnxruntime+noiobinding,onnxruntime+graphpick,onnxruntime+graphpick+cudagraphs}

tests_pid=
tests_start() {  # the README's test command without the GPU-marked tests, beside the tables, on the other cores
  header pytest
  echo "\$ taskset -c $test_cpus python -m pytest -q -m 'not gpu' (beside the tables)" >> "$out/pytest.txt"
  OMP_NUM_THREADS=2 bounded "$(left)" taskset -c "$test_cpus" "$PY" -m pytest -q -p no:cacheprovider -m "not gpu" \
    > "$out/pytest.log" 2>&1 &
  tests_pid=$!
}
tests_finish() {  # wait for them, then the GPU-marked tests alone on the GPU
  local rc=0 rcg=0
  [ -n "$tests_pid" ] && { wait "$tests_pid" || rc=$?; }
  { tail -n 30 "$out/pytest.log"; echo "pytest -m 'not gpu': exit $rc"; } | tee -a "$out/pytest.txt"
  case $rc in 0) ;; 124|137) fail "CUT: pytest -m 'not gpu' by the call's deadline ($out/pytest.log has what ran)" ;;
    *) fail "FAILED: pytest -m 'not gpu' (exit $rc; $out/pytest.log)" ;; esac
  echo "\$ python -m pytest -q -m gpu" >> "$out/pytest.txt"
  bounded 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu > "$out/pytest-gpu.log" 2>&1 || rcg=$?
  { tail -n 30 "$out/pytest-gpu.log"; echo "pytest -m gpu: exit $rcg"; } | tee -a "$out/pytest.txt"
  case $rcg in 0) ;; 124|137) fail "CUT: pytest -m gpu by its slot or the deadline ($out/pytest-gpu.log)" ;;
    *) fail "FAILED: pytest -m gpu (exit $rcg; $out/pytest-gpu.log)" ;; esac
  pack
}

part() {
  case "$1" in
    stage)
      command -v xz > /dev/null || { echo "stage: needs xz (apt-get install xz-utils)" >&2; exit 2; }
      part prepare
      local tmp=$stage/tmp payload=$stage/tmp/payload
      grep -qx "/$stage/" .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo "/$stage/" >> .git/info/exclude; }
      rm -rf "$stage" && mkdir -p "$payload/wheels" "$payload/ort"
      "$PY" -m pip download -q "${pyargs[@]}" -d "$tmp" "onnxruntime-gpu==$ORT_VERSION"
      "$PY" -m pip download -q "${pyargs[@]}" -d "$payload/wheels" "${extra_wheels[@]}"
      ( cd "$payload/ort" && unzip -q ../../onnxruntime_gpu-*.whl 'onnxruntime/*' \
        && rm -f onnxruntime/capi/libonnxruntime_providers_tensorrt.so onnxruntime/capi/libonnxruntime.so.* )
      # (TensorRT cannot be installed on these machines; libonnxruntime.so is the C API, which python does not load)
      "$PY" bench/prune_fatbin.py "$payload/ort/onnxruntime/capi/libonnxruntime_providers_cuda.so" --keep "$KEEP_SM"
      mkdir -p "$payload/bundles" && cp -r "$bundles" "$payload/bundles/"
      tar -C "$payload" -cf - . | xz -9 -T0 > "$tmp/payload.tar.xz"
      # A call carries the working tree and its carried paths, 64 MiB in all: each part leaves room for the tree.
      local tree room
      tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1)
      room=$(( 64 * 1024 * 1024 - tree - 4 * 1024 * 1024 ))
      split -b "$room" -d -a 1 "$tmp/payload.tar.xz" "$tmp/chunk."
      local i=0 f
      for f in "$tmp"/chunk.*; do mkdir -p "$stage/p$i"; mv "$f" "$stage/p$i/"; i=$((i + 1)); done
      rm -rf "$tmp"
      du -sh "$stage"/p*
      echo "tree ${tree} bytes; $i part(s). On the GPU machine, back to back (it stays warm 30 s after a call):"
      local last=$((i - 1))
      for ((f = 0; f < last; f++)); do echo "  run(carry=[\"$stage/p$f\"], command=\"bash bench/gpu_suite.sh receive\")"; done
      echo "  run(carry=[\"$stage/p$last\"], command=\"bash bench/gpu_suite.sh receive install all\", timeout_s=600)" ;;
    receive)  # keep this call's part(s) where the next call finds them
      mkdir -p "$landing"
      cp "$stage"/p*/chunk.* "$landing"/
      ls -la "$landing" ;;
    install)  # join the parts, unpack onnxruntime-gpu into /tmp/ortsite, the wheels into /tmp/site, the bundles
      if [ ! -d /tmp/ortsite/onnxruntime ]; then
        cat "$landing"/chunk.* | "$PY" -c "import sys, tarfile; tarfile.open(fileobj=sys.stdin.buffer, mode='r|xz').extractall(sys.argv[1])" "$landing/x"
        mkdir -p /tmp/ortsite && mv "$landing/x/ort/onnxruntime" /tmp/ortsite/
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$landing"/x/wheels/*.whl
        mkdir -p "$(dirname "$bundles")" && cp -r "$landing/x/bundles/$(basename "$bundles")" "$(dirname "$bundles")/"
      fi
      paths  # the parts after install in this call import what it unpacked
      header install
      "$PY" bench/gpu_check.py | tee -a "$out/install.txt" || fail "FAILED: onnxruntime-gpu's CUDA check (see $out/install.txt)"
      pack ;;
    prepare)  # the recipe architectures, 1 epoch (stage runs this)
      for fam in cvae cgan cflow diffusion; do ckpt "$fam" mnist; done
      ckpt charrnn names
      ckpt chartransformer names
      ckpt chartransformer names chartransformer-fixed-names '{"fixed_cache": true}' ;;
    diffusion)  # DDIM-50 with guidance: one bench per batch size, each its own table and slot
      local b
      for b in 1 16 64; do
        bench 90 "diffusion-b$b" "$bundles/diffusion-mnist" --backends "$gpu_backends" \
          --batch-sizes "$b" --steps 50 --guidance-scale 3 --iters 8 --warmup 2
      done ;;
    text)  # GPU against GPU, and the machine's CPU cores (onnxruntime+cpu) for the "faster than the CPU" target
      local fam
      for fam in chartransformer-fixed charrnn chartransformer; do
        bench 50 "$fam" "$bundles/$fam-names" --batch-sizes 1,128 --max-new-tokens 12 --iters 10 --warmup 2 \
          --backends "$text_backends"
      done ;;
    oneshot)
      local fam
      for fam in cvae cgan cflow; do
        bench 45 "$fam" "$bundles/$fam-mnist" --backends "$gpu_backends" --batch-sizes 1,256 --iters 10 --warmup 2
      done ;;
    all)  # the tables, most important first, with the tests beside them
      tests_start
      part diffusion; part text; part oneshot
      tests_finish ;;
    pytest)  # the README's test command alone
      header pytest
      local rc=0
      bounded "$(left)" "$PY" -m pytest -q -p no:cacheprovider > "$out/pytest.log" 2>&1 || rc=$?
      { tail -n 40 "$out/pytest.log"; echo "pytest exit $rc"; } | tee -a "$out/pytest.txt"
      [ "$rc" = 0 ] || fail "FAILED: pytest (exit $rc, $out/pytest.log)"
      pack ;;
    *) echo "usage: bash bench/gpu_suite.sh stage | receive | install | all | diffusion | text | oneshot | pytest | prepare  (several parts allowed)" >&2
       exit 2 ;;
  esac
}

failures=0
[ $# -gt 0 ] || part usage
for p in "$@"; do part "$p"; done
echo "$((SECONDS - start)) s"
[ "$failures" = 0 ] || { echo "$failures part(s) failed or were cut: $out/failures.txt" >&2; exit 1; }
