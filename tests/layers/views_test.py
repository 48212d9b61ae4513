"""The transformers' public inspection API: `warp`, `views` and
`recording_inputs`, on every backend."""

import keras
import numpy as np
import pytest

import keras_stn
from keras_stn.ops import transforms


def _images(shape=(3, 16, 16, 2), seed=0):
    return np.random.default_rng(seed).random(shape).astype("float32")


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _localization():
    return keras.Sequential(
        [keras.layers.Flatten(), keras.layers.Dense(4, activation="tanh")]
    )


def _randomize_heads(layer, seed=1):
    """Heads whose theta depends on the features (not the identity)."""
    rng = np.random.default_rng(seed)
    for head in layer.heads:
        head.kernel.assign(0.05 * rng.normal(size=head.kernel.shape))


def test_warp_is_the_grid_generator_and_sampler():
    layer = keras_stn.SpatialTransformer(
        transform="attention",
        output_size=(8, 8),
        kernel="bicubic",
        padding_mode="border",
        align_corners=True,
    )
    images = _images()
    theta = np.array([[0.5, 0.5, 0.0]] * 3, "float32")
    outputs, grid = layer.warp(images, theta)
    expected_grid = transforms.grid_for("attention", theta, (8, 8), True)
    expected = keras_stn.ops.sample(
        images,
        expected_grid,
        kernel="bicubic",
        padding_mode="border",
        align_corners=True,
    )
    np.testing.assert_array_equal(_numpy(grid), _numpy(expected_grid))
    np.testing.assert_array_equal(_numpy(outputs), _numpy(expected))
    # The identity on a power-of-two size returns the input bit for bit.
    identity = transforms.get("affine").identity()[None].repeat(3, axis=0)
    same, _ = keras_stn.SpatialTransformer().warp(images, identity)
    np.testing.assert_array_equal(_numpy(same), images)


def test_views_are_what_call_returns():
    layer = keras_stn.SpatialTransformer(
        _localization(),
        transform="affine",
        output_size=(8, 8),
        return_theta=True,
        return_grid=True,
    )
    images = _images()
    views = layer.views(images)  # builds the layer
    assert layer.built
    _randomize_heads(layer)
    views = layer.views(images)
    outputs, theta, grid = layer(images)
    assert sorted(views) == ["grids", "outputs", "theta"]
    assert all(len(tensors) == 1 for tensors in views.values())
    assert tuple(views["theta"][0].shape) == (3, 6)
    assert tuple(views["grids"][0].shape) == (3, 8, 8, 2)
    assert tuple(views["outputs"][0].shape) == (3, 8, 8, 2)
    np.testing.assert_array_equal(_numpy(views["theta"][0]), _numpy(theta))
    np.testing.assert_array_equal(_numpy(views["grids"][0]), _numpy(grid))
    np.testing.assert_array_equal(_numpy(views["outputs"][0]), _numpy(outputs))
    assert np.ptp(_numpy(theta), axis=0).max() > 0  # per-sample thetas


@pytest.mark.parametrize("merge", ["list", "concat"])
def test_parallel_views_are_each_head_unmerged(merge):
    layer = keras_stn.ParallelSpatialTransformers(
        3,
        _localization(),
        output_size=(8, 8),
        merge=merge,
        return_theta=True,
        return_grid=True,
    )
    images = _images()
    layer(images)
    _randomize_heads(layer)
    outputs, theta, grid = layer(images)
    views = layer.views(images)
    assert all(len(tensors) == 3 for tensors in views.values())
    if merge == "concat":
        outputs = np.split(_numpy(outputs), 3, axis=-1)
    for head in range(3):
        np.testing.assert_array_equal(
            _numpy(views["outputs"][head]), _numpy(outputs[head])
        )
        np.testing.assert_array_equal(
            _numpy(views["theta"][head]), _numpy(theta)[:, head]
        )
        np.testing.assert_array_equal(
            _numpy(views["grids"][head]), _numpy(grid)[:, head]
        )
    # The heads differ, so the views are per head, not one head repeated.
    assert np.abs(_numpy(theta)[:, 0] - _numpy(theta)[:, 1]).max() > 0


def test_recording_inputs_inside_a_subclassed_model():
    transformer = keras_stn.SpatialTransformer(_localization())

    class Inner(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def call(self, x):
            return self.transformer(x + 1.0)

    class Outer(keras.Model):
        def __init__(self):
            super().__init__()
            self.inner = Inner()

        def call(self, x):
            return self.inner(3.0 * x)

    model = Outer()
    images = _images()
    model(images)  # not recorded: no context active
    with transformer.recording_inputs() as outer:
        with transformer.recording_inputs() as inner:
            model(images)
        model(2.0 * images)
    model(images)
    assert len(inner) == 1 and len(outer) == 2
    np.testing.assert_allclose(_numpy(inner[0]), 3 * images + 1, rtol=1e-6)
    np.testing.assert_allclose(_numpy(outer[0]), 3 * images + 1, rtol=1e-6)
    np.testing.assert_allclose(_numpy(outer[1]), 6 * images + 1, rtol=1e-6)


def test_recording_stops_when_the_context_fails():
    layer = keras_stn.SpatialTransformer(_localization())
    images = _images()
    with pytest.raises(RuntimeError, match="stop"):
        with layer.recording_inputs() as received:
            layer(images)
            raise RuntimeError("stop")
    layer(images)
    assert len(received) == 1


def test_views_cast_to_the_compute_dtype():
    layer = keras_stn.SpatialTransformer(
        _localization(), output_size=(8, 8), dtype="float64"
    )
    views = layer.views(_images())
    for tensors in views.values():
        assert keras.backend.standardize_dtype(tensors[0].dtype) == "float64"
