"""Edge cases where 2-D and 3-D, and every gather layout, must agree with
each other and with PyTorch: infinite points under border padding,
non-finite edge pixels, inputs without channels."""

import numpy as np
import pytest

import keras_stn
from keras_stn import ops as stn_ops
from tests import test_case


def _to_torch(x):
    return np.moveaxis(x, -1, 1)


def _from_torch(x):
    return np.moveaxis(x, 1, -1)


def _torch_sample(images, grid, mode, padding_mode, align_corners, upstream):
    """PyTorch's `grid_sample` (4-D or 5-D): output, d images, d grid."""
    torch = test_case.requires_torch()
    ti = torch.tensor(_to_torch(images), requires_grad=True)
    tg = torch.tensor(grid, requires_grad=True)
    out = torch.nn.functional.grid_sample(
        ti, tg, mode=mode, padding_mode=padding_mode,
        align_corners=align_corners,
    )
    (out * torch.tensor(_to_torch(upstream))).sum().backward()
    d_grid = tg.grad.numpy() if tg.grad is not None else np.zeros_like(grid)
    return (
        _from_torch(out.detach().numpy()),
        _from_torch(ti.grad.numpy()),
        d_grid,
    )


def _infinite_grid_3d(dtype):
    """Batch 0: points infinite along one or more of x, y, z, and a finite
    point whose index overflows float32; batch 1: ordinary points."""
    grid = test_case.rng(21).uniform(-0.8, 0.8, size=(2, 2, 3, 4, 3))
    inf = np.inf
    grid[0, 0, 0, :4] = [
        [inf, 0.3, 0.1], [-inf, -0.2, 0.0], [0.1, inf, -0.3], [0.4, 0.2, -inf]
    ]
    grid[0, 0, 1, :4] = [
        [inf, inf, 0.2], [inf, -inf, inf], [-inf, 0.1, inf], [1e38, 0.0, -0.5]
    ]
    return grid.astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("kernel", ["bilinear", "nearest"])
def test_infinite_points_read_the_border_in_3d_as_in_torch(
    kernel, align_corners, dtype
):
    # PyTorch's 5-D grid_sample clips an infinite index to the border
    # under border padding, as its 4-D one does: the edge voxel, with a
    # zero derivative along the infinite axis.
    gen = test_case.rng(22)
    vols = gen.normal(size=(2, 3, 4, 5, 2)).astype(dtype)
    grid = _infinite_grid_3d(dtype)
    upstream = gen.normal(size=(2, 2, 3, 4, 2)).astype(dtype)
    expected = _torch_sample(
        vols, grid, kernel, "border", align_corners, upstream
    )
    assert all(np.all(np.isfinite(e)) for e in expected)
    out, (d_vols, d_grid) = test_case.gradients(
        lambda v, g: stn_ops.sample(v, g, kernel, "border", align_corners),
        vols,
        grid,
        upstream=upstream,
    )
    atol = test_case.tolerance(dtype)
    assert np.any(out[0, 0, 0, :4] != 0.0)
    test_case.assert_close(out, expected[0], atol)
    test_case.assert_close(d_vols, expected[1], atol)
    # d grid carries a factor of up to W / 2 and sums 2 channels.
    test_case.assert_close(d_grid, expected[2], 20 * atol)


@pytest.mark.parametrize("layout", ["framed", "clipped", "split"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("rank", [4, 5])
def test_a_non_finite_edge_pixel_spares_the_points_outside(
    rank, value, layout
):
    # Under zero padding a point outside the image reads no pixel: PyTorch
    # gives 0 there whatever the edge holds. Layouts that read taps at
    # clipped indices must not multiply the edge's NaN by a zero mask.
    keras_stn.config.set_gather_layout(layout)
    try:
        spatial = (4, 5) if rank == 4 else (3, 4, 5)
        images = test_case.rng(23).normal(size=(1, *spatial, 2))
        images[(0,) + (0,) * len(spatial)] = value  # a corner pixel
        num_axes = rank - 2
        far = np.full((1,) + (1,) * (num_axes - 1) + (4, num_axes), 0.0)
        # Far outside, within two pixels of the corner, and on both sides.
        far[..., 0, :] = -3.0
        far[..., 1, :] = -1.5
        far[..., 2, :] = 3.0
        far[..., 3, :] = [-3.0] + [0.0] * (num_axes - 1)
        upstream = np.ones((*far.shape[:-1], 2))
        expected = _torch_sample(
            images, far, "bilinear", "zeros", False, upstream
        )
        out, (d_images, d_grid) = test_case.gradients(
            lambda i, g: stn_ops.bilinear_sample(i, g, "zeros"),
            images,
            far,
            upstream=upstream,
        )
    finally:
        keras_stn.config.set_gather_layout("auto")
    np.testing.assert_array_equal(expected[0], 0.0)
    np.testing.assert_array_equal(out, 0.0)
    np.testing.assert_array_equal(d_grid, 0.0)
    np.testing.assert_array_equal(d_images, 0.0)


@pytest.mark.parametrize(
    "shape", [(1, 4, 5, 0), (1, 3, 4, 5, 0)], ids=["images", "volumes"]
)
@pytest.mark.parametrize("kernel", ["bilinear", "nearest"])
def test_inputs_without_channels_are_refused_by_name(shape, kernel):
    num_axes = len(shape) - 2
    grid = np.zeros((1,) + (2,) * num_axes + (num_axes,), "float32")
    with pytest.raises(ValueError, match=r"`images` must have a channel"):
        stn_ops.sample(np.zeros(shape, "float32"), grid, kernel)


def test_volumes_without_channels_are_refused_by_name():
    with pytest.raises(ValueError, match=r"`volumes` must have a channel"):
        stn_ops.trilinear_sample(
            np.zeros((1, 3, 4, 5, 0), "float32"),
            np.zeros((1, 2, 2, 2, 3), "float32"),
        )
