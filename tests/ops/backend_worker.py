"""Computes the ops' values and gradients on one Keras backend.

A script, never collected by pytest: `backend_parity_test.py` runs it in a
subprocess per backend (the Keras backend is fixed when Keras is imported)
and compares what it writes with the TensorFlow backend's results, which
the test computes with the same `run_case`. Usage:

    KERAS_BACKEND=jax python tests/ops/backend_worker.py IN.npz OUT.npz

On JAX the cases run under `jax.jit` with x64 on (float64 needs it), the
compiled path Keras' JAX training takes; on PyTorch they run eagerly, as
Keras' PyTorch training does by default.
"""

import json
import sys

import numpy as np

KERNELS = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")
FAMILIES = (
    "translation",
    "rigid",
    "similarity",
    "attention",
    "affine",
    "projective",
    "tps",
)
GRID_SIZE = (6, 5)


def cases():
    """The specs of every case, each a dict with a unique `name`.

    Every kernel x padding mode x align_corners (float64); the sampling
    grid of every transform family, through the bilinear sampler, in
    float64 and float32; and anti-aliased sampling.
    """
    specs = []
    for kernel in KERNELS:
        for padding_mode in PADDING_MODES:
            for align_corners in (False, True):
                specs.append(
                    {
                        "kind": "sample",
                        "kernel": kernel,
                        "padding_mode": padding_mode,
                        "align_corners": align_corners,
                        "antialias": False,
                        "dtype": "float64",
                    }
                )
    for family in FAMILIES:
        for dtype in ("float64", "float32"):
            specs.append({"kind": "family", "family": family, "dtype": dtype})
    for kernel in ("bilinear", "bicubic"):
        specs.append(
            {
                "kind": "sample",
                "kernel": kernel,
                "padding_mode": "reflection",
                "align_corners": False,
                "antialias": 2,
                "dtype": "float64",
            }
        )
    for spec in specs:
        if spec["kind"] == "family":
            spec["name"] = f"{spec['family']}-{spec['dtype']}"
        else:
            spec["name"] = "-".join(
                [spec["kernel"], spec["padding_mode"]]
                + (["align_corners"] if spec["align_corners"] else [])
                + (
                    [f"antialias{spec['antialias']}"]
                    if spec["antialias"]
                    else []
                )
                + [spec["dtype"]]
            )
    return specs


def inputs(seed=0):
    """The NumPy inputs every backend gets: images, a grid with points
    outside the image, an upstream gradient and, per family, parameters
    near its identity."""
    from keras_stn.ops import transforms

    gen = np.random.default_rng(seed)
    data = {
        "images": gen.normal(size=(2, 7, 8, 3)),
        "grid": gen.uniform(-1.3, 1.3, size=(2, *GRID_SIZE, 2)),
        "upstream": gen.normal(size=(2, *GRID_SIZE, 3)),
    }
    for family in FAMILIES:
        identity = transforms.get(family).identity()
        data[f"theta_{family}"] = identity + 0.1 * gen.normal(
            size=(2, identity.size)
        )
    return data


def run_case(spec, data, compile_fn=None):
    """Values and gradients of one case on the current Keras backend.

    Args:
        spec: one of `cases()`.
        data: the dict of `inputs()`.
        compile_fn: None, or a function that compiles `fn` (`jax.jit`).
    Returns:
        A dict of NumPy arrays: `out`, `d_images` and `d_grid` (samplers)
        or `d_theta` (families), and `dtype`, the output's dtype name.
    """
    import keras

    from keras_stn import ops as stn_ops
    from tests import test_case

    dtype = spec["dtype"]
    images = data["images"].astype(dtype)
    upstream = data["upstream"].astype(dtype)
    if spec["kind"] == "sample":

        def fn(i, g):
            return stn_ops.sample(
                i,
                g,
                spec["kernel"],
                spec["padding_mode"],
                spec["align_corners"],
                antialias=spec["antialias"],
            )

        second, names = data["grid"].astype(dtype), ("d_images", "d_grid")
    else:

        def fn(i, t):
            grid = stn_ops.grid_for(spec["family"], t, GRID_SIZE)
            return stn_ops.bilinear_sample(i, grid)

        second = data[f"theta_{spec['family']}"].astype(dtype)
        names = ("d_images", "d_theta")
    if compile_fn is not None:
        fn = compile_fn(fn)
    out, grads = test_case.gradients(fn, images, second, upstream=upstream)
    out_dtype = keras.backend.standardize_dtype(out.dtype)
    return {"out": out, **dict(zip(names, grads)), "dtype": np.str_(out_dtype)}


def main(in_path, out_path):
    import keras

    backend = keras.backend.backend()
    compile_fn = None
    if backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        compile_fn = jax.jit
    data = dict(np.load(in_path))
    results = {"backend": np.str_(backend)}
    for spec in cases():
        for field, value in run_case(spec, data, compile_fn).items():
            results[f"{spec['name']}/{field}"] = value
    np.savez(out_path, **results)
    print(json.dumps({"backend": backend, "cases": len(cases())}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
