import numpy as np
import pytest
import tensorflow as tf

from keras_stn.experiments.data import distortions
from keras_stn.experiments.data import mnist
from keras_stn.experiments.data import two_digit
from tests.experiments.data import helpers

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.large]

# float32 rounding of the grid: sampling points are pixel centres +-1e-6.
TOLERANCE = 1e-5


def _check_pairs(labels_of_pair, params, mnist_dirs, split_range):
    source = mnist.load_split("test", **mnist_dirs)
    pair = params["pair_index"]
    np.testing.assert_array_equal(pair[:, 0], params["index"])
    assert (pair[:, 0] != pair[:, 1]).all()
    assert pair.min() >= split_range[0] and pair.max() < split_range[1]
    np.testing.assert_array_equal(labels_of_pair, source.labels[pair])
    return source


def test_mnist_addition(mnist_dirs):
    images, labels, params = helpers.first(
        two_digit.mnist_addition(
            "test", batch_size=64, with_params=True, **mnist_dirs
        )
    )
    assert images.shape == (64, 42, 42, 2) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    assert labels.dtype == np.int64 and labels.shape == (64,)
    _check_pairs(params["digit_labels"], params, mnist_dirs, (0, 10000))
    np.testing.assert_array_equal(labels, params["digit_labels"].sum(-1))
    assert labels.min() >= 0 and labels.max() <= 18
    assert params["angle"].shape == (64, 2)
    assert np.abs(params["angle"]).max() <= 45
    assert params["scale"].min() >= 0.7 and params["scale"].max() <= 1.2
    # Channel k is digit k under its own recorded RTS parameters.
    rts = distortions.RotationScaleTranslation()
    for k in range(2):
        source = helpers.digits(mnist_dirs, "test", params["pair_index"][:, k])
        expected = rts.warp(
            tf.constant(source[..., None], tf.float32),
            {
                "angle": params["angle"][:, k],
                "scale": params["scale"][:, k],
                "position": params["position"][:, k],
            },
        )
        np.testing.assert_allclose(
            images[..., k], expected[..., 0], atol=TOLERANCE
        )
    assert not np.allclose(params["angle"][:, 0], params["angle"][:, 1])


def test_mnist_addition_at_identity_strength(mnist_dirs):
    images, _, params = helpers.first(
        two_digit.mnist_addition(
            "test[:500]",
            batch_size=16,
            with_params=True,
            angle_range=(0, 0),
            scale_range=(1, 1),
            canvas_size=28,
            **mnist_dirs,
        )
    )
    for k in range(2):
        source = helpers.digits(mnist_dirs, "test", params["pair_index"][:, k])
        np.testing.assert_allclose(images[..., k], source, atol=TOLERANCE)
    assert params["pair_index"].max() < 500


def test_two_digit_canvas(mnist_dirs):
    images, labels, params = helpers.first(
        two_digit.two_digit_canvas(
            "test", batch_size=64, with_params=True, **mnist_dirs
        )
    )
    assert images.shape == (64, 84, 84, 1) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    assert labels.shape == (64, 2) and labels.dtype == np.int64
    _check_pairs(labels, params, mnist_dirs, (0, 10000))
    boxes, top_left = params["boxes"], params["top_left"]
    assert boxes.shape == (64, 2, 4)
    np.testing.assert_allclose(boxes[..., 2] - boxes[..., 0], 28 / 84, 1e-6)
    np.testing.assert_allclose(boxes[..., 3] - boxes[..., 1], 28 / 84, 1e-6)
    np.testing.assert_allclose(boxes[..., 0] * 84, top_left[..., 1], 1e-6)
    np.testing.assert_allclose(boxes[..., 1] * 84, top_left[..., 0], 1e-6)
    assert boxes.min() >= 0 and boxes.max() <= 1
    # Disjoint: the boxes' intersection over union is 0.
    low = np.maximum(boxes[:, 0, :2], boxes[:, 1, :2])
    high = np.minimum(boxes[:, 0, 2:], boxes[:, 1, 2:])
    assert (np.prod(np.clip(high - low, 0, None), axis=-1) == 0).all()
    for b in range(64):
        outside = np.ones((84, 84), bool)
        for k in range(2):
            x, y = top_left[b, k]
            source = helpers.digits(
                mnist_dirs, "test", params["pair_index"][b : b + 1, k]
            )
            np.testing.assert_allclose(
                images[b, y : y + 28, x : x + 28, 0], source[0], atol=TOLERANCE
            )
            outside[y : y + 28, x : x + 28] = False
        assert np.abs(images[b, ..., 0][outside]).max() <= TOLERANCE
    # The second digit sits anywhere around the first: all four sides.
    dx = top_left[:, 1, 0] - top_left[:, 0, 0]
    dy = top_left[:, 1, 1] - top_left[:, 0, 1]
    assert (dx >= 28).any() and (dx <= -28).any()
    assert (dy >= 28).any() and (dy <= -28).any()


def test_two_digit_sets_are_deterministic_for_evaluation(mnist_dirs):
    for make in (two_digit.mnist_addition, two_digit.two_digit_canvas):
        first = helpers.first(make("test", batch_size=16, **mnist_dirs))
        again = helpers.first(make("test", batch_size=16, **mnist_dirs))
        np.testing.assert_array_equal(first[0], again[0])
        np.testing.assert_array_equal(first[1], again[1])


@pytest.mark.parametrize(
    "make, arguments, message",
    [
        (two_digit.two_digit_canvas, {"canvas_size": 82}, "`canvas_size`"),
        (two_digit.mnist_addition, {"canvas_size": 30}, "`canvas_size`"),
        (two_digit.mnist_addition, {"batch_size": -1}, "`batch_size`"),
        (two_digit.two_digit_canvas, {"split": "test[:1]"}, "`split`"),
    ],
)
def test_bad_arguments_are_named(make, arguments, message, mnist_dirs):
    with pytest.raises(ValueError, match=message):
        make(**{**mnist_dirs, **arguments})
