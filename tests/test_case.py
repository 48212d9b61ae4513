"""Shared test helpers: dtype-keyed tolerances, Jacobian and oracle checks."""

import numpy as np
import pytest
import tensorflow as tf

# Absolute tolerances for values of order 1, keyed by the compute dtype.
TOLERANCES = {
    "float64": 1e-7,
    "float32": 1e-5,
    "float16": 1e-3,
    "bfloat16": 1e-2,
}


def tolerance(dtype):
    return TOLERANCES[tf.as_dtype(dtype).name]


def assert_close(actual, expected, atol, rtol=0.0, msg=""):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape, msg)
    np.testing.assert_allclose(
        actual, expected, atol=atol, rtol=rtol, err_msg=msg
    )


def gradients(fn, *inputs, upstream=None):
    """Returns `(output, [d <output, upstream> / d input...])` by tape."""
    inputs = [tf.convert_to_tensor(x) for x in inputs]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        output = fn(*inputs)
        if upstream is None:
            upstream = np.random.default_rng(7).normal(size=output.shape)
        loss = tf.reduce_sum(output * tf.cast(upstream, output.dtype))
    return output, tape.gradient(loss, inputs)


def assert_jacobian_close(fn, inputs, delta=1e-6, atol=1e-6):
    """Compares the theoretical Jacobian of `fn` (the custom gradient) with
    float64 central finite differences of step `delta`."""
    inputs = [tf.constant(np.asarray(x, np.float64)) for x in inputs]
    theoretical, numerical = tf.test.compute_gradient(fn, inputs, delta=delta)
    for t, n in zip(theoretical, numerical):
        assert_close(t, n, atol=atol)


def requires_torch():
    return pytest.importorskip(
        "torch", reason="PyTorch is an optional peer: pip install torch"
    )


def rng(seed=0):
    return np.random.default_rng(seed)


def off_kink_grid(
    generator, shape, size, low=-0.9, high=0.9, margin=0.02, align_corners=False
):
    """Random grid points whose pixel coordinates stay `margin` away from
    integers (the bilinear kernel's kinks), for finite differences."""
    height, width = size
    grid = generator.uniform(low, high, size=shape)

    def to_index(c, n):
        if align_corners:
            return (c + 1) / 2 * (n - 1)
        return ((c + 1) * n - 1) / 2

    def from_index(i, n):
        if align_corners:
            return i / (n - 1) * 2 - 1
        return (2 * i + 1) / n - 1

    for axis, n in ((0, width), (1, height)):
        index = to_index(grid[..., axis], n)
        frac = index - np.floor(index)
        frac = np.clip(frac, margin, 1 - margin)
        grid[..., axis] = from_index(np.floor(index) + frac, n)
    return grid
