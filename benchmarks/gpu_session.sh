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
#   bash benchmarks/gpu_session.sh --smoke    # a minute-long check on CPU
#
# The long schedule: 20,000 steps of batch 256 per network (86 epochs of
# the 60,000 training digits), Adam with cosine decay, as the issue asks;
# `--steps N` changes it.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
steps=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --steps) steps="$2"; shift ;;
    *) echo "unknown option: $1 (expected --smoke or --steps N)" >&2; exit 2 ;;
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
if [ ! -f "$mnist/train-images-idx3-ubyte.gz" ]; then
  echo "MNIST's four original files are not in .gpu/mnist or $mnist" >&2
  exit 2
fi

python3 - <<'EOF' 2>&1 | tee "$log"
import jax, keras
print("keras", keras.__version__, "backend", keras.backend.backend(),
      "jax", jax.__version__, "devices", jax.devices())
EOF

epochs=$(( (steps * 256 + 59999) / 60000 ))
if [ "$smoke" = 1 ]; then
  sampler=(--workloads mnist --repeats 2 --warmup 1 --batch-size 8 --no-memory)
  volume=(--size 8 --repeats 2 --warmup 1)
  overhead=(--workloads mnist --quick)
  training=(--epochs 1 --train-examples 512 --batch-size 64)
else
  sampler=()
  volume=()
  overhead=()
  training=(--epochs "$epochs" --batch-size 256)
fi

run() {
  echo "== $*" | tee -a "$log"
  "$@" 2>&1 | tee -a "$log"
}

run python3 benchmarks/sampler_benchmark.py "${sampler[@]}" --json "$out/sampler.json"
run python3 benchmarks/volume_benchmark.py "${volume[@]}" --json "$out/volume.json"
run python3 benchmarks/overhead_benchmark.py "${overhead[@]}" --json "$out/overhead.json"
run python3 -m keras_stn table --data rts --models cnn st-cnn \
  --transforms affine --data-source pydataset --manual-dir "$mnist" \
  --out-dir "$out/rts" --verbose 2 --overwrite "${training[@]}"
echo "== done: $out" | tee -a "$log"
