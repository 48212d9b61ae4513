"""Supersampling removes the aliasing of a downsampling transform."""

import numpy as np
import pytest

from keras_stn import ops as stn_ops
from tests import test_case


def _zone_plate(n):
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    r2 = (x - n / 2) ** 2 + (y - n / 2) ** 2
    return (0.5 + 0.5 * np.cos(np.pi * r2 / n))[None, ..., None]


def _checkerboard(n, cell=1):
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return ((x // cell + y // cell) % 2).astype("float64")[None, ..., None]


def _area_average(images, factor):
    b, h, w, c = images.shape
    blocks = images.reshape(b, h // factor, factor, w // factor, factor, c)
    return blocks.mean(axis=(2, 4))


@pytest.mark.parametrize("pattern", ["checkerboard", "zone_plate"])
def test_antialias_matches_area_average_where_bilinear_aliases(pattern):
    # Cells of 3 pixels: a 1- or 2-pixel board happens to average right.
    images = (
        _checkerboard(64, cell=3)
        if pattern == "checkerboard"
        else _zone_plate(64)
    ).astype("float32")
    # A 4x zoom-out through an affine theta (identity, shrunk to 16x16).
    theta = np.array([[1, 0, 0, 0, 1, 0]], "float32")
    grid = stn_ops.affine_grid(theta, (16, 16))
    reference = _area_average(images, 4)
    plain = stn_ops.sample(images, grid)
    smooth = stn_ops.sample(images, grid, antialias=4)
    plain_error = np.abs(test_case.to_numpy(plain) - reference).mean()
    smooth_error = np.abs(test_case.to_numpy(smooth) - reference).mean()
    # Measured mean absolute errors (image range [0, 1]): plain bilinear
    # 0.177 (checkerboard) and 0.116 (zone plate); 4x4 supersampling is the
    # box filter itself: 0.0 and 1.7e-8.
    assert plain_error > 0.1, plain_error
    assert smooth_error < 1e-5, smooth_error


def test_antialias_with_rotation_beats_bilinear():
    images = _zone_plate(96).astype("float32")
    theta = np.array([[0.9, 0.0, 0.0]], "float32")  # rigid: angle 0.9 rad
    grid = stn_ops.grid_for("rigid", theta, (24, 24))
    dense = stn_ops.sample(images, stn_ops.grid_for("rigid", theta, (192, 192)))
    reference = _area_average(test_case.to_numpy(dense), 8)
    plain = np.abs(
        test_case.to_numpy(stn_ops.sample(images, grid)) - reference
    ).mean()
    smooth = np.abs(
        test_case.to_numpy(stn_ops.sample(images, grid, antialias=True))
        - reference
    ).mean()
    assert smooth < plain / 4, (smooth, plain)


def test_antialiased_sampling_is_differentiable():
    images = _zone_plate(32).astype("float32")
    theta = np.array([[1.0, 0.1, 0.0, -0.1, 1.0, 0.05]], "float32")
    _, (d_images, d_theta) = test_case.gradients(
        lambda i, t: stn_ops.sample(
            i, stn_ops.affine_grid(t, (8, 8)), antialias=4
        ),
        images,
        theta,
    )
    assert np.all(np.isfinite(d_theta)) and np.abs(d_theta).max() > 0
    assert np.abs(d_images).max() > 0


def test_supersample_grid_of_identity_is_the_finer_identity():
    grid = stn_ops.identity_grid((4, 6))
    fine = stn_ops.supersample_grid(grid, 3)
    test_case.assert_close(fine, stn_ops.identity_grid((12, 18)), 1e-6)


def test_supersample_factor_must_be_positive_int():
    with pytest.raises(ValueError, match=r"`factor` must be a positive int"):
        stn_ops.supersample_grid(stn_ops.identity_grid((2, 2)), 0)


def test_automatic_factor_needs_static_sizes():
    from keras_stn.ops import antialias

    assert antialias.antialias_factor(True, (64, 64), (16, 16)) == 4
    assert antialias.antialias_factor(True, (20, 20), (20, 20)) == 2
    assert antialias.antialias_factor(3, (None, None), (4, 4)) == 3
    with pytest.raises(ValueError, match=r"`antialias=True` needs static"):
        antialias.antialias_factor(True, (None, 8), (4, 4))
