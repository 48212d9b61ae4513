"""The ops under the JAX backend equal the TensorFlow ones, gradients too.

The JAX side runs in a subprocess (`jax_worker.py`) because the Keras
backend is fixed at import; this process computes the same with TensorFlow.
Skipped, with the reason, when JAX is not installed (`pip install .[jax]`).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_stn import ops as stn_ops
from keras_stn.ops import transforms
from tests import test_case

pytest.importorskip("jax", reason="JAX is optional: pip install '.[jax]'")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    gen = test_case.rng(0)
    data = {
        "images": gen.normal(size=(2, 7, 8, 3)),
        "grid": gen.uniform(-1.3, 1.3, size=(2, 6, 5, 2)),
        "upstream": gen.normal(size=(2, 6, 5, 3)),
        "theta": np.zeros(1),
    }
    for family in ("affine", "projective", "tps", "similarity"):
        identity = transforms.get(family).identity()
        data[f"theta_{family}"] = identity + 0.1 * gen.normal(
            size=(2, identity.size)
        )
    folder = tmp_path_factory.mktemp("jax")
    in_path, out_path = folder / "in.npz", folder / "out.npz"
    np.savez(in_path, **data)
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    worker = os.path.join(os.path.dirname(__file__), "jax_worker.py")
    run = subprocess.run(
        [sys.executable, worker, str(in_path), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return data, dict(np.load(out_path))


@pytest.mark.parametrize("kernel", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_samplers_match_tensorflow(cases, kernel, padding_mode):
    data, jax_results = cases
    out, (d_images, d_grid) = test_case.gradients(
        lambda i, g: stn_ops.sample(i, g, kernel, padding_mode),
        data["images"],
        data["grid"],
        upstream=data["upstream"],
    )
    key = f"{kernel}_{padding_mode}"
    test_case.assert_close(jax_results[key], out, 1e-12)
    test_case.assert_close(jax_results[key + "_d_images"], d_images, 1e-12)
    test_case.assert_close(jax_results[key + "_d_grid"], d_grid, 1e-11)


@pytest.mark.parametrize(
    "family", ["affine", "projective", "tps", "similarity"]
)
def test_grid_gradients_match_tensorflow(cases, family):
    data, jax_results = cases
    import tensorflow as tf

    theta = tf.constant(data[f"theta_{family}"])
    with tf.GradientTape() as tape:
        tape.watch(theta)
        grid = stn_ops.grid_for(family, theta, (6, 5))
        out = stn_ops.bilinear_sample(data["images"], grid)
        loss = tf.reduce_sum(out * data["upstream"])
    test_case.assert_close(jax_results[f"{family}_loss"], loss, 1e-10)
    test_case.assert_close(
        jax_results[f"{family}_d_theta"], tape.gradient(loss, theta), 1e-10
    )


def test_antialias_matches_tensorflow(cases):
    data, jax_results = cases
    out = stn_ops.sample(data["images"], data["grid"], antialias=2)
    test_case.assert_close(jax_results["antialias"], out, 1e-12)
