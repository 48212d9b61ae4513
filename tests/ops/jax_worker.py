"""Runs the ops under `KERAS_BACKEND=jax` and saves values and gradients.

Invoked by `backend_test.py` in a subprocess (the backend is fixed at
import), never collected by pytest. Usage: `python jax_worker.py IN OUT`.
"""

import os
import sys

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

from keras_stn import ops as stn_ops  # noqa: E402


def main(in_path, out_path):
    assert keras.backend.backend() == "jax"
    data = dict(np.load(in_path))
    images, grid, theta, upstream = (
        data["images"],
        data["grid"],
        data["theta"],
        data["upstream"],
    )
    results = {}
    for kernel in ("bilinear", "nearest", "bicubic"):
        for padding_mode in ("zeros", "border", "reflection"):

            def loss(i, g, kernel=kernel, padding_mode=padding_mode):
                out = stn_ops.sample(i, g, kernel, padding_mode)
                return (out * upstream).sum(), out

            key = f"{kernel}_{padding_mode}"
            step = jax.jit(
                jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
            )
            (_, out), (d_images, d_grid) = step(images, grid)
            results[key] = np.asarray(out)
            results[key + "_d_images"] = np.asarray(d_images)
            results[key + "_d_grid"] = np.asarray(d_grid)
    for family in ("affine", "projective", "tps", "similarity"):
        params = data[f"theta_{family}"]

        def grid_loss(t, family=family):
            grid_out = stn_ops.grid_for(family, t, (6, 5))
            out = stn_ops.bilinear_sample(images, grid_out)
            return (out * upstream).sum()

        value, d_theta = jax.jit(jax.value_and_grad(grid_loss))(params)
        results[f"{family}_loss"] = np.asarray(value)
        results[f"{family}_d_theta"] = np.asarray(d_theta)
    results["antialias"] = np.asarray(stn_ops.sample(images, grid, antialias=2))
    del theta
    np.savez(out_path, **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
