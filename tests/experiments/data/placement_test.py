import math

import numpy as np
import pytest
import tensorflow as tf

from keras_stn.experiments.data import placement

pytestmark = pytest.mark.tensorflow_only


def _image(seed=0, size=28):
    rng = np.random.default_rng(seed)
    return rng.random((1, size, size, 1)).astype("float32")


def test_similarity_theta_hand_computed():
    # 90 degrees, scale 2, 7 px right, digit 28 on canvas 42:
    # zoom 42 / 56, shift -2 / 56 R(-90) (7, 0) = -2 / 56 (0, -7).
    theta = placement.similarity_theta([90.0], [2.0], [[7.0, 0.0]], 28, 42)
    np.testing.assert_allclose(
        theta[0], [0.75, -math.pi / 2, 0.0, 0.25], atol=1e-6
    )


def test_identity_on_an_equal_canvas_returns_the_image():
    image = _image()
    out = placement.warp_similarity(image, [0.0], [1.0], [[0.0, 0.0]], 28)
    np.testing.assert_allclose(out, image, atol=1e-5)


@pytest.mark.parametrize("angle, turns", [(90.0, -1), (-90.0, 1), (180.0, 2)])
def test_positive_angles_turn_clockwise_as_displayed(angle, turns):
    image = _image(1)
    out = placement.warp_similarity(image, [angle], [1.0], [[0.0, 0.0]], 28)
    np.testing.assert_allclose(out[0], np.rot90(image[0], k=turns), atol=1e-5)


def test_a_pixel_lands_where_the_forward_map_sends_it():
    # Digit pixel (x=20, y=14) has its centre at (6.5, 0.5) from the digit
    # centre; turned 90 degrees clockwise it is at (-0.5, 6.5); shifted by
    # (3, -2) from the canvas centre (21, 21): (23.5, 25.5), pixel (23, 25).
    image = np.zeros((1, 28, 28, 1), "float32")
    image[0, 14, 20, 0] = 1.0
    out = placement.warp_similarity(image, [90.0], [1.0], [[3.0, -2.0]], 42)
    out = out.numpy()[0, ..., 0]
    assert np.unravel_index(np.argmax(out), out.shape) == (25, 23)
    assert out[25, 23] == pytest.approx(1.0, abs=1e-5)


def test_warp_similarity_matches_tensorflows_transform_op():
    """An independent oracle: TensorFlow's `ImageProjectiveTransformV3`,
    given the forward map written in pixel indices (pixel centres at
    integers, centres at `(n - 1) / 2`):
    `i_in = R(-angle) (i_out - (S - 1) / 2 - position) / scale + (D - 1) / 2`.
    """
    rng = np.random.default_rng(5)
    count, size, canvas = 16, 28, 42
    images = rng.random((count, size, size, 1)).astype("float32")
    angle = rng.uniform(-180, 180, count).astype("float32")
    scale = rng.uniform(0.6, 1.3, count).astype("float32")
    position = rng.uniform(-5, 5, (count, 2)).astype("float32")
    ours = placement.warp_similarity(images, angle, scale, position, canvas)
    radians = np.deg2rad(angle.astype(np.float64))
    cos, sin = np.cos(radians) / scale, np.sin(radians) / scale
    # R(-angle) / scale = [[cos, sin], [-sin, cos]].
    shifted = (canvas - 1) / 2 + position.astype(np.float64)
    offset_x = -(cos * shifted[:, 0] + sin * shifted[:, 1]) + (size - 1) / 2
    offset_y = -(-sin * shifted[:, 0] + cos * shifted[:, 1]) + (size - 1) / 2
    zero = np.zeros(count)
    rows = np.stack([cos, sin, offset_x, -sin, cos, offset_y, zero, zero], 1)
    expected = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=rows.astype("float32"),
        output_shape=[canvas, canvas],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    # Both compute in float32: coordinates agree to ~1e-5 px.
    np.testing.assert_allclose(ours, expected, atol=5e-5)


@pytest.mark.parametrize("top_left", [(0, 0), (32, 32), (5, 17)])
def test_place_copies_the_digit_and_zeros_the_rest(top_left):
    image = _image(2)
    out = placement.place(image, tf.constant([top_left]), 60).numpy()
    expected = np.zeros((1, 60, 60, 1), "float32")
    x, y = top_left
    expected[0, y : y + 28, x : x + 28] = image[0]
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_uniform_position_outside_is_uniform_on_the_allowed_set():
    n, low, high = 6, (1, 2), (3, 2)
    xy = placement.uniform_position_outside([4, 2], n, low, high, count=33000)
    xy = xy.numpy()
    forbidden = (
        (xy[:, 0] >= low[0])
        & (xy[:, 0] <= high[0])
        & (xy[:, 1] >= low[1])
        & (xy[:, 1] <= high[1])
    )
    assert not forbidden.any()
    assert xy.min() >= 0 and xy.max() < n
    positions, counts = np.unique(xy, axis=0, return_counts=True)
    assert len(positions) == n * n - 3
    # 1000 expected per position; 5 sigma is about +-160.
    assert counts.min() > 840 and counts.max() < 1160


@pytest.mark.parametrize(
    "low, high, allowed",
    [
        ((-5, 1), (10, 2), 4 * 6),  # full rows forbidden
        ((3, 3), (2, 2), 6 * 6),  # empty rectangle
        ((4, 0), (9, 9), 4 * 6),  # clipped at the canvas edge
    ],
)
def test_uniform_position_outside_edge_cases(low, high, allowed):
    xy = placement.uniform_position_outside([0, 9], 6, low, high, count=6000)
    xy = xy.numpy()
    inside = (
        (xy[:, 0] >= low[0])
        & (xy[:, 0] <= high[0])
        & (xy[:, 1] >= low[1])
        & (xy[:, 1] <= high[1])
    )
    assert not inside.any()
    assert xy.min() >= 0 and xy.max() < 6
    assert len(np.unique(xy, axis=0)) == allowed


def test_boxes_are_normalised_y_x_min_max():
    boxes = placement.boxes(tf.constant([[[0, 28], [56, 7]]]), 28, 84)
    np.testing.assert_allclose(
        boxes[0],
        [[28 / 84, 0, 56 / 84, 28 / 84], [7 / 84, 56 / 84, 35 / 84, 1]],
    )
