"""Shape checks that still hold when a traced graph leaves dimensions open.

`tf.function` with `None` dims gives the ops tensors whose sizes are not
known when they are traced, so the static checks cannot see a wrong size:
an affine theta `(3, 4)` would reshape into a grid of batch 2, a grid
ending in 3 would be read as if it ended in 2, and different batch sizes
would fail later in an unrelated reshape. The ops check those sizes when
the graph runs (`keras_stn.ops.backend.tensorflow_ops.assert_dims`), naming the argument
and its expected form. JAX and PyTorch trace with concrete shapes, where
the static checks see everything (`sampling_test`, `grids_test`).
"""

import numpy as np
import pytest

from keras_stn import ops as stn_ops
from tests import test_case

pytestmark = pytest.mark.tensorflow_only
tf = pytest.importorskip(
    "tensorflow", reason="TensorFlow is optional: pip install '.[tensorflow]'"
)


def _traced(fn, *ranks, jit_compile=False):
    """`fn` as a `tf.function` whose inputs have every dimension open."""
    return tf.function(
        fn,
        input_signature=[tf.TensorSpec((None,) * r, tf.float32) for r in ranks],
        jit_compile=jit_compile,
    )


def _zeros(*shape):
    return np.zeros(shape, "float32")


def test_affine_theta_of_the_wrong_size_is_refused_when_run():
    affine = _traced(lambda t: stn_ops.affine_grid(t, (3, 4)), 2)
    # Twelve numbers would otherwise make two (2, 3) matrices.
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"`theta` must have shape \(B, 2, 3\) or \(B, 6\)\. "
        r"Received: theta.shape=",
    ):
        affine(_zeros(3, 4))
    theta = np.tile([[1.0, 0.0, 0.1, 0.0, 1.0, -0.2]], (3, 1)).astype("f4")
    test_case.assert_close(
        affine(theta), stn_ops.affine_grid(theta, (3, 4)), 0.0
    )


def test_matrix_theta_with_open_dims_is_accepted_and_checked():
    # (None, None, None) is no reason to refuse a theta when traced.
    projective = _traced(lambda t: stn_ops.projective_grid(t, (2, 3)), 3)
    theta = np.tile(np.eye(3, dtype="float32"), (2, 1, 1))
    test_case.assert_close(
        projective(theta), stn_ops.identity_grid((2, 3), 2), 1e-6
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"`theta` must have shape \(B, 3, 3\) or \(B, 8\)",
    ):
        projective(_zeros(2, 2, 3))


@pytest.mark.parametrize(
    "family,size", [("similarity", 5), ("translation", 3), ("tps", 30)]
)
def test_family_theta_of_the_wrong_size_is_refused_when_run(family, size):
    grid = _traced(lambda t: stn_ops.grid_for(family, t, (3, 3)), 2)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"`theta` must have shape \(B, "
    ):
        grid(_zeros(2, size))


def test_tps_theta_of_the_wrong_size_is_refused_when_run():
    tps = _traced(lambda t: stn_ops.tps_grid(t, (3, 3)), 3)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"`theta` must have shape \(B, 16, 2\) or \(B, 32\) for 16",
    ):
        tps(_zeros(2, 15, 2))


def test_grid_not_ending_in_two_is_refused_when_run():
    sample = _traced(stn_ops.bilinear_sample, 4, 4)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"`grid` must have shape \(B, H_out, W_out, 2\)\. "
        r"Received: grid.shape=",
    ):
        sample(_zeros(2, 5, 5, 1), _zeros(2, 3, 3, 3))


@pytest.mark.parametrize("kernel", ["bilinear", "nearest", "bicubic"])
def test_batch_sizes_that_differ_are_refused_when_run(kernel):
    sample = _traced(lambda i, g: stn_ops.sample(i, g, kernel), 4, 4)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"`images` and `grid` must have the same batch size",
    ):
        sample(_zeros(2, 5, 5, 1), _zeros(3, 3, 3, 2))
    # One side static, the other open: still checked.
    half_open = tf.function(
        lambda i, g: stn_ops.sample(i, g, kernel),
        input_signature=[
            tf.TensorSpec((2, 5, 5, 1), tf.float32),
            tf.TensorSpec((None, 3, 3, 2), tf.float32),
        ],
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"same batch size"
    ):
        half_open(_zeros(2, 5, 5, 1), _zeros(3, 3, 3, 2))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_right_shapes_compute_what_static_shapes_do(jit_compile):
    # Under XLA, which has no assertions, the checks drop out and the
    # graph still compiles.
    gen = test_case.rng(0)
    images = gen.normal(size=(2, 6, 5, 3)).astype("float32")
    theta = np.tile([[1.0, 0.1, 0.0, -0.1, 0.9, 0.05]], (2, 1)).astype("f4")

    def warp(i, t):
        return stn_ops.sample(i, stn_ops.affine_grid(t, (4, 4)), "bicubic")

    traced = _traced(warp, 4, 2, jit_compile=jit_compile)
    test_case.assert_close(traced(images, theta), warp(images, theta), 1e-5)
