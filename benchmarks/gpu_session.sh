#!/usr/bin/env bash
# One GPU session in one go (issue 13): the sampler, volume and overhead
# benchmarks and the README main job's two networks on RTS with a long
# schedule, under Keras-JAX, with no TensorFlow and no network.
#
# On the lent GPU machine (JAX, PyTorch and CUDA; no TensorFlow, no
# network), from the repository root, with these carried beside the tree:
#   .whl/   keras, namex and optree wheels (see the device tool's README);
#   .gpu/mnist/   the four original MNIST files (copy ../shared/data/mnist).
# Results go to $OUT (or out/gpu): one JSON per benchmark, the runs'
# results.json / results.md / pictures, and log.txt.
#
#   bash benchmarks/gpu_session.sh            # the whole session
#   bash benchmarks/gpu_session.sh --benchmarks-only   # no training
#   bash benchmarks/gpu_session.sh --smoke    # a minute-long check on CPU
#
# The sampler benchmark runs the gather layouts, the deterministic image
# gradient and the peers on every GPU workload, then the default and the
# deterministic variants again under XLA's own deterministic flag
# (`--xla_gpu_deterministic_ops=true`) for comparison (issue 15). Each
# stage has a time limit, so that a slow one leaves the others their time.
#
# The long schedule: 20,000 steps of batch 256 per network (86 epochs of
# the 60,000 training digits), Adam with cosine decay, as the issue asks;
# `--steps N` changes it.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
training=1
steps=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --benchmarks-only) training=0 ;;
    --steps) steps="$2"; shift ;;
    *)
      echo "unknown option: $1 (expected --smoke, --benchmarks-only or" \
        "--steps N)" >&2
      exit 2
      ;;
  esac
  shift
done

out="${OUT:-out/gpu}"
mkdir -p "$out"
log="$out/log.txt"
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

epochs=$(( (steps * 256 + 59999) / 60000 ))
variants=stn-jit,stn-jit-framed,stn-jit-clipped,stn-jit-det,jax-mc,jax-mc-exact,torch
variants="$variants,stn-jit:theta,torch:theta"
if [ "$smoke" = 1 ]; then
  sampler=(--workloads mnist --repeats 2 --warmup 1 --batch-size 8 --no-memory)
  xla_det=(--workloads mnist --repeats 2 --warmup 1 --batch-size 8)
  volume=(--size 8 --repeats 2 --warmup 1)
  overhead=(--workloads mnist --quick)
  train=(--epochs 1 --train-examples 512 --batch-size 64)
else
  sampler=(--no-memory)
  xla_det=(--workloads feat,cub-b128)
  volume=()
  overhead=()
  train=(--epochs "$epochs" --batch-size 256)
fi

# `run LIMIT_S COMMAND...`: runs and logs a stage, stopped after LIMIT_S.
run() {
  local limit="$1"
  shift
  echo "== $* (limit ${limit} s)" | tee -a "$log"
  timeout "$limit" "$@" 2>&1 | tee -a "$log" || echo "== stage ended: $?" \
    | tee -a "$log"
}

run 300 python3 benchmarks/sampler_benchmark.py "${sampler[@]}" \
  --variants "$variants" --json "$out/sampler.json"
XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_deterministic_ops=true" \
  run 90 python3 benchmarks/sampler_benchmark.py "${xla_det[@]}" \
  --no-memory --variants stn-jit,stn-jit-det --json "$out/sampler_xla_det.json"
run 120 python3 benchmarks/volume_benchmark.py "${volume[@]}" \
  --json "$out/volume.json"
run 120 python3 benchmarks/overhead_benchmark.py "${overhead[@]}" \
  --json "$out/overhead.json"
if [ "$training" = 1 ]; then
  run 3600 python3 -m keras_stn table --data rts --models cnn st-cnn \
    --transforms affine --data-source pydataset --manual-dir "$mnist" \
    --out-dir "$out/rts" --verbose 2 --overwrite "${train[@]}"
fi
echo "== done: $out" | tee -a "$log"
