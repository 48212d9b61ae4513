"""Every op that takes images takes volumes: one table, rank 4 and rank 5.

For each op and rank: the symbolic output shape (`keras.Input` tensors,
the op as a node of a functional model) equals the eager one, and the
gradients w.r.t. every float input flow through the backend's own
machinery: `jax.vjp(jax.jit(f))` on JAX (which fails on a custom gradient
that closes over an array), `torch.autograd.grad` on PyTorch, a
`GradientTape` on TensorFlow.
"""

import keras
import numpy as np
import pytest

from keras_stn import ops as stn_ops
from tests import test_case


def _images(rank, channels=2):
    spatial = (4, 5) if rank == 4 else (3, 4, 5)
    return test_case.rng(1).normal(size=(2, *spatial, channels)).astype(
        "float32"
    )


def _grid(rank):
    spatial = (3, 4) if rank == 4 else (2, 3, 4)
    num_axes = rank - 2
    return test_case.rng(2).uniform(
        -0.9, 0.9, size=(2, *spatial, num_axes)
    ).astype("float32")


def _theta(rank):
    eye = np.eye(2, 3) if rank == 4 else np.eye(3, 4)
    noise = test_case.rng(3).normal(0.0, 0.1, size=(2, *eye.shape))
    return (eye + noise).astype("float32")


def _field(rank):
    images = _images(rank)
    num_axes = rank - 2
    return test_case.rng(4).normal(
        0.0, 0.5, size=(*images.shape[:-1], num_axes)
    ).astype("float32")


def _out_size(rank):
    return (3, 4) if rank == 4 else (2, 3, 4)


# name -> (function of the tensors, tensor builders per rank)
CASES = {
    "sample": (
        lambda i, g: stn_ops.sample(i, g),
        (_images, _grid),
    ),
    "bilinear_sample": (
        lambda i, g: stn_ops.bilinear_sample(i, g, "border"),
        (_images, _grid),
    ),
    "nearest_sample": (
        lambda i, g: stn_ops.sample(i, g, "nearest", "reflection"),
        (_images, _grid),
    ),
    "affine_grid": (None, (_theta,)),
    "affine_grid_sampled": (None, (_images, _theta)),
    "warp": (
        lambda i, d: stn_ops.warp(i, d),
        (_images, _field),
    ),
    "integrate_velocity": (
        lambda v: stn_ops.integrate_velocity(v, steps=2),
        (_field,),
    ),
    "compose_displacements": (
        lambda a, b: stn_ops.compose_displacements(a, b),
        (_field, _field),
    ),
}


def _function(name, rank):
    function, _ = CASES[name]
    if name == "affine_grid":
        return lambda t: stn_ops.affine_grid(t, _out_size(rank))
    if name == "affine_grid_sampled":
        return lambda i, t: stn_ops.bilinear_sample(
            i, stn_ops.affine_grid(t, _out_size(rank))
        )
    return function


def _inputs(name, rank):
    return [build(rank) for build in CASES[name][1]]


@pytest.mark.parametrize("rank", [4, 5])
@pytest.mark.parametrize("name", sorted(CASES))
def test_symbolic_shape_equals_eager_shape(name, rank):
    function = _function(name, rank)
    inputs = _inputs(name, rank)
    eager = function(*inputs)
    symbolic = function(
        *(keras.Input(x.shape[1:], batch_size=None) for x in inputs)
    )
    assert tuple(symbolic.shape) == (None, *tuple(eager.shape)[1:])


@pytest.mark.parametrize("rank", [4, 5])
@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_flow_through_the_backend(name, rank):
    function = _function(name, rank)
    inputs = _inputs(name, rank)
    backend = test_case.backend()
    if backend == "jax":
        import jax

        out, pullback = jax.vjp(jax.jit(function), *inputs)
        grads = pullback(jax.numpy.ones_like(out))
    elif backend == "torch":
        import torch

        tensors = [torch.tensor(x, requires_grad=True) for x in inputs]
        out = function(*tensors)
        grads = torch.autograd.grad(out.sum(), tensors, allow_unused=True)
    else:
        import tensorflow as tf

        tensors = [tf.constant(x) for x in inputs]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            out = function(*tensors)
        grads = tape.gradient(out, tensors)
    assert len(grads) == len(inputs)
    for index, (x, grad) in enumerate(zip(inputs, grads)):
        if name == "nearest_sample" and index == 1:
            continue  # the grid's gradient is zero by definition
        assert grad is not None
        grad = keras.ops.convert_to_numpy(grad)
        assert grad.shape == x.shape
        assert np.all(np.isfinite(grad))
        assert np.any(grad != 0)
