"""Nearest and bicubic kernels beyond PyTorch parity (sampling_test)."""

import numpy as np

from keras_stn import ops as stn_ops
from tests import test_case


def test_bicubic_jacobian_matches_finite_differences():
    gen = test_case.rng(0)
    images = gen.normal(size=(1, 4, 5, 1))
    grid = test_case.off_kink_grid(gen, (1, 2, 2, 2), (4, 5), -1.2, 1.2)
    test_case.assert_jacobian_close(
        lambda i, g: stn_ops.bicubic_sample(i, g, "border"),
        [images, grid],
        atol=1e-6,
    )


def test_nearest_passes_image_gradient_and_zero_grid_gradient():
    images = np.arange(6.0, dtype="float32").reshape(1, 2, 3, 1)
    grid = np.array([[[[-0.6, -0.4], [-0.6, -0.4], [0.7, 0.6]]]], "float32")
    out, (d_images, d_grid) = test_case.gradients(
        stn_ops.nearest_sample, images, grid, upstream=np.ones((1, 1, 3, 1))
    )
    np.testing.assert_array_equal(out[0, 0, :, 0], [0.0, 0.0, 5.0])
    expected = np.zeros((1, 2, 3, 1))
    expected[0, 0, 0, 0], expected[0, 1, 2, 0] = 2.0, 1.0
    np.testing.assert_array_equal(d_images, expected)
    np.testing.assert_array_equal(d_grid, 0.0)


def test_bicubic_weights_sum_to_one_inside():
    # The 16 cubic-convolution weights partition unity: a constant image is
    # reproduced wherever all taps are inside (A = -0.75 does not reproduce
    # linear ramps, unlike A = -0.5).
    images = np.full((1, 6, 8, 1), 3.0)
    grid = test_case.rng(1).uniform(-0.4, 0.4, size=(1, 5, 5, 2))
    out = stn_ops.bicubic_sample(images, grid)
    test_case.assert_close(out, np.full((1, 5, 5, 1), 3.0), 1e-12)
