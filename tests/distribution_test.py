"""Data-parallel training with `keras.distribution` (JAX backend).

The layers are plain Keras layers: under `keras.distribution.DataParallel`
their variables are replicated and the batch is split over the devices. Two
virtual CPU devices (`--xla_force_host_platform_device_count=2`) stand in
for two accelerators; one training step must give the weights one device
gives.
The run is a subprocess because XLA reads the device count when JAX
starts.
"""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One SGD step of a small ST network on one device, then on two, from the
# same weights and batch; prints the largest weight difference as JSON.
_SCRIPT = r"""
import json
import jax
import keras
import numpy as np
import keras_stn

assert len(jax.devices("cpu")) == 2, jax.devices()


def build():
    model = keras.Sequential([
        keras.Input((16, 16, 1)),
        keras_stn.SpatialTransformer(transform="affine", output_size=(8, 8)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


rng = np.random.default_rng(0)
images = rng.random((8, 16, 16, 1), dtype="float32")
labels = rng.integers(0, 3, size=8)

keras.utils.set_random_seed(0)
single = build()
# A random start: the localization head starts at the identity with a
# zero kernel, whose first step would not exercise the theta path.
start = [rng.normal(0, 0.1, w.shape).astype("float32")
         for w in single.get_weights()]
single.set_weights(start)
single.train_on_batch(images, labels)

keras.distribution.set_distribution(
    keras.distribution.DataParallel(devices=jax.devices("cpu"))
)
parallel = build()
parallel.set_weights(start)
parallel.train_on_batch(images, labels)
kernel = parallel.layers[-1].kernel.value
changed = max(
    float(np.max(np.abs(a - b)))
    for a, b in zip(single.get_weights(), start)
)
difference = max(
    float(np.max(np.abs(a - b)))
    for a, b in zip(single.get_weights(), parallel.get_weights())
)
print(json.dumps({
    "difference": difference,
    "changed": changed,
    "replicated_on": len(kernel.sharding.device_set),
}))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs JAX")
@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="runs once, in the JAX-backend run (a JAX subprocess either way)",
)
def test_data_parallel_step_equals_one_device():
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
    )
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["replicated_on"] == 2, result
    # The step moved the weights (so the comparison says something) ...
    assert result["changed"] > 1e-3, result
    # ... and two devices moved them as one does: the gradients are summed
    # in another order across the two halves of the batch (measured: 3e-8),
    # so a few float32 roundings of weights of size ~0.1.
    assert result["difference"] <= 1e-6, result
