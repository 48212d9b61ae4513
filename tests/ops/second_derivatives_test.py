"""Second derivatives of the bilinear sampler on every backend, against
PyTorch's own double backward of `grid_sample` (the semantics' owner)."""

import keras
import pytest

from keras_stn import ops as stn_ops
from tests import test_case


def _backend_second(images, grid, u, v, padding_mode, align_corners):
    backend = keras.backend.backend()

    def sample(i, g):
        return stn_ops.bilinear_sample(i, g, padding_mode, align_corners)

    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def first(i, g):
            return jax.grad(lambda g: jnp.sum(sample(i, g) * u))(g)

        def objective(i, g):
            return jnp.sum(first(i, g) * v)

        return jax.grad(objective, argnums=(0, 1))(images, grid)
    if backend == "torch":
        import torch

        i = torch.tensor(images, requires_grad=True)
        g = torch.tensor(grid, requires_grad=True)
        out = sample(i, g)
        (d_grid,) = torch.autograd.grad(
            (out * torch.tensor(u)).sum(), g, create_graph=True
        )
        return torch.autograd.grad((d_grid * torch.tensor(v)).sum(), (i, g))
    import tensorflow as tf

    i, g = tf.constant(images), tf.constant(grid)
    with tf.GradientTape() as outer:
        outer.watch([i, g])
        with tf.GradientTape() as inner:
            inner.watch(g)
            out = sample(i, g)
            loss = tf.reduce_sum(out * u)
        d_grid = inner.gradient(loss, g)
        objective = tf.reduce_sum(d_grid * v)
    return outer.gradient(objective, [i, g])


def _torch_second(images, grid, u, v, padding_mode, align_corners):
    torch = test_case.requires_torch()
    i = torch.tensor(images.transpose(0, 3, 1, 2), requires_grad=True)
    g = torch.tensor(grid, requires_grad=True)
    out = torch.nn.functional.grid_sample(
        i, g, "bilinear", padding_mode, align_corners
    )
    (d_grid,) = torch.autograd.grad(
        (out * torch.tensor(u.transpose(0, 3, 1, 2))).sum(), g,
        create_graph=True,
    )
    d_images, d_grid2 = torch.autograd.grad(
        (d_grid * torch.tensor(v)).sum(), (i, g)
    )
    return d_images.numpy().transpose(0, 2, 3, 1), d_grid2.numpy()


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_second_derivatives_match_torch(padding_mode, align_corners):
    test_case.requires_torch()
    gen = test_case.rng(11)
    images = gen.normal(size=(2, 5, 6, 2))
    grid = test_case.off_kink_grid(
        gen, (2, 3, 4, 2), (5, 6), -1.2, 1.2, align_corners=align_corners
    )
    u = gen.normal(size=(2, 3, 4, 2))
    v = gen.normal(size=(2, 3, 4, 2))
    expected = _torch_second(images, grid, u, v, padding_mode, align_corners)
    actual = _backend_second(images, grid, u, v, padding_mode, align_corners)
    # float64 throughout: rounding only.
    for a, e in zip(actual, expected):
        test_case.assert_close(test_case.to_numpy(a), e, atol=1e-9)
