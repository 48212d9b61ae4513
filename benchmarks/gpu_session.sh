#!/usr/bin/env bash
# One GPU session in one call of at most 10 minutes (issue 24, items 2 and
# 4), under Keras-JAX with no TensorFlow and no network:
#   1. the Pallas sampler's tests on the GPU (Triton, not interpret mode),
#      against the package's XLA path (tests/ops/pallas_test.py);
#   2. benchmarks/pallas_benchmark.py: item 2's targets (forward vs copy
#      bandwidth and map_coordinates, step vs PyTorch eager and
#      torch.compile, deterministic vs default, peak memory vs PyTorch);
#   3. the paper's schedule: `keras_stn train` of the RTS CNN and ST-CNN
#      (PyDataset source) for the time left, resumed across calls (the runs
#      come back as $OUT/runs.tar.gz; carry it in as .gpu/runs.tar.gz).
# Each stage has a time limit inside `--budget` seconds (default 560), so
# that a slow stage leaves the others their time and the call ends well
# inside the device's 10 minutes.
#
# Here, once, where pip and the MNIST files are (adds .whl/ and .gpu/):
#   bash benchmarks/gpu_session.sh --prepare
# then add `/.whl/` and `/.gpu/` to .git/info/exclude (the device README's
# way) and call the device's run with carry [".whl", ".gpu"] and
#   OUT=$OUT bash benchmarks/gpu_session.sh
# A later call that only continues the training (after copying runs.tar.gz
# back into .gpu/): `bash benchmarks/gpu_session.sh --training-only`.
#
#   --smoke             a few minutes' check of every stage on a CPU
#   --budget S          seconds for the whole call (default 560)
#   --benchmarks-only   no training; --training-only: only training
#   --steps N           the schedule: N steps of batch 256 (default 20000,
#                       86 epochs of the 60,000 digits, Adam, cosine decay)
#   --full              also the older sampler, volume and overhead
#                       benchmarks (issues 13 and 15; they need more than
#                       one call's time together with the rest)
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
prepare=0
benchmarks=1
training=1
full=0
steps=20000
budget=560
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --prepare) prepare=1 ;;
    --benchmarks-only) training=0 ;;
    --training-only) benchmarks=0 ;;
    --full) full=1 ;;
    --steps) steps="$2"; shift ;;
    --budget) budget="$2"; shift ;;
    *)
      echo "unknown option: $1 (expected --smoke, --prepare," \
        "--benchmarks-only, --training-only, --full, --steps N or" \
        "--budget S)" >&2
      exit 2
      ;;
  esac
  shift
done

if [ "$prepare" = 1 ]; then
  # The GPU machines have Python 3.12, JAX and PyTorch but not Keras (see
  # the device tool's KINDS.md): Keras and the two packages it needs that
  # they lack travel as wheels, the same Keras as here.
  keras_version=$(python3 -c "import keras; print(keras.__version__)")
  rm -rf .whl
  python3 -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "keras==$keras_version" namex optree
  mkdir -p .gpu/mnist
  cp -f "${MNIST_DIR:-../shared/data/mnist}"/*.gz .gpu/mnist/
  ls -l .whl .gpu/mnist
  for path in .whl .gpu; do
    git check-ignore -q "$path" || echo "add /$path/ to .git/info/exclude"
  done
  exit 0
fi

out="${OUT:-out/gpu}"
mkdir -p "$out"
log="$out/log.txt"
start=$(date +%s)
export KERAS_BACKEND=jax
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONUNBUFFERED=1

if [ -d .whl ] && ! python3 -c "import keras" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

mnist=".gpu/mnist"
[ -d "$mnist" ] || mnist="../shared/data/mnist"
if [ "$training" = 1 ] && [ ! -f "$mnist/train-images-idx3-ubyte.gz" ]; then
  echo "MNIST's four original files are not in .gpu/mnist or $mnist" >&2
  exit 2
fi

python3 - <<'EOF' 2>&1 | tee "$log"
import jax, keras
print("keras", keras.__version__, "backend", keras.backend.backend(),
      "jax", jax.__version__, "devices", jax.devices())
EOF

# `left`: seconds of the budget not yet spent.
left() { echo $(( budget - ($(date +%s) - start) )); }

# `run LIMIT_S COMMAND...`: runs and logs a stage, stopped after LIMIT_S
# (or the budget left, if less).
run() {
  local limit="$1"
  shift
  local remaining
  remaining=$(left)
  [ "$limit" -gt "$remaining" ] && limit="$remaining"
  if [ "$limit" -lt 10 ]; then
    echo "== skipped, budget spent: $*" | tee -a "$log"
    return 0
  fi
  echo "== $* (limit ${limit} s, $(left) s left)" | tee -a "$log"
  timeout -s TERM "$limit" "$@" 2>&1 | tee -a "$log" \
    || echo "== stage ended: $?" | tee -a "$log"
}

if [ "$smoke" = 1 ]; then
  pallas=(--smoke --no-memory)
  tests=(-k "hand_computed or supports")
  schedule=(--epochs 1 --train-examples 512 --batch-size 64)
else
  pallas=(--time-limit 200 --memory-workloads cub-b128)
  tests=()
  epochs=$(( (steps * 256 + 59999) / 60000 ))
  schedule=(--epochs "$epochs" --batch-size 256)
fi

if [ "$benchmarks" = 1 ]; then
  run 90 python3 -m pytest tests/ops/pallas_test.py -q -x \
    -p no:cacheprovider "${tests[@]}"
  run 280 python3 benchmarks/pallas_benchmark.py "${pallas[@]}" \
    --json "$out/pallas.json"
fi

if [ "$training" = 1 ]; then
  # The runs live outside $OUT (emptied per call) and travel as one file.
  runs=/tmp/stn-runs
  mkdir -p "$runs"
  if [ -f .gpu/runs.tar.gz ]; then
    tar -xzf .gpu/runs.tar.gz -C "$runs"
  fi
  # Each network gets half of what is left, less a margin for the archive;
  # a run stopped at its limit resumes from its last finished epoch.
  for model in cnn st-cnn; do
    share=$(( $(left) - 20 ))
    [ "$model" = cnn ] && share=$(( share / 2 ))
    run "$share" python3 -m keras_stn train --data rts --model "$model" \
      --transform affine --data-source pydataset --manual-dir "$mnist" \
      --out-dir "$runs" --resume --verbose 2 "${schedule[@]}"
  done
  tar -czf "$out/runs.tar.gz" -C "$runs" .
  ls -l "$out/runs.tar.gz" | tee -a "$log"
fi

if [ "$full" = 1 ]; then
  variants=stn-jit,stn-jit-framed,stn-jit-clipped,stn-jit-det,jax-mc
  variants="$variants,jax-mc-exact,torch,stn-jit:theta,torch:theta"
  run 300 python3 benchmarks/sampler_benchmark.py --no-memory \
    --variants "$variants" --json "$out/sampler.json"
  XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_deterministic_ops=true" \
    run 90 python3 benchmarks/sampler_benchmark.py --workloads \
    feat,cub-b128 --no-memory --variants stn-jit,stn-jit-det \
    --json "$out/sampler_xla_det.json"
  run 120 python3 benchmarks/volume_benchmark.py --json "$out/volume.json"
  run 120 python3 benchmarks/overhead_benchmark.py \
    --json "$out/overhead.json"
fi
echo "== done in $(( $(date +%s) - start )) s: $out" | tee -a "$log"
