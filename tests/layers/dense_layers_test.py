"""DenseSpatialTransformer and VelocityIntegration: values against the ops,
serialization, a training step, and bad arguments."""

import keras
import numpy as np
import pytest

import keras_stn
from keras_stn.ops import displacement
from tests import test_case


def _field(gen, shape, scale):
    return (scale * gen.normal(size=shape)).astype("float32")


@pytest.mark.parametrize(
    "spatial,kwargs",
    [
        ((7, 6), {}),
        ((7, 6), {"indexing": "xy", "padding_mode": "zeros"}),
        ((4, 5, 3), {"kernel": "nearest"}),
    ],
)
def test_dense_transformer_is_the_warp_op(spatial, kwargs):
    gen = test_case.rng(0)
    images = gen.normal(size=(2, *spatial, 3)).astype("float32")
    field = _field(gen, (2, *spatial, len(spatial)), 1.5)
    layer = keras_stn.layers.DenseSpatialTransformer(**kwargs)
    np.testing.assert_array_equal(
        test_case.to_numpy(layer([images, field])),
        test_case.to_numpy(displacement.warp(images, field, **kwargs)),
    )


def test_velocity_integration_is_the_op():
    gen = test_case.rng(1)
    velocity = _field(gen, (2, 6, 7, 2), 0.8)
    layer = keras_stn.layers.VelocityIntegration(steps=4)
    np.testing.assert_array_equal(
        test_case.to_numpy(layer(velocity)),
        test_case.to_numpy(displacement.integrate_velocity(velocity, 4)),
    )


def _registration_model():
    moving = keras.Input((8, 8, 1))
    fixed = keras.Input((8, 8, 1))
    both = keras.layers.Concatenate()([moving, fixed])
    velocity = keras.layers.Conv2D(
        2, 3, padding="same", kernel_initializer="zeros", name="flow"
    )(both)
    field = keras_stn.layers.VelocityIntegration(steps=3)(velocity)
    warped = keras_stn.layers.DenseSpatialTransformer()([moving, field])
    return keras.Model([moving, fixed], warped)


def test_round_trip_and_training_step(tmp_path):
    model = _registration_model()
    assert tuple(model.output.shape) == (None, 8, 8, 1)
    gen = test_case.rng(2)
    moving = gen.random((4, 8, 8, 1)).astype("float32")
    fixed = np.roll(moving, 1, axis=2)
    # A zero flow at the start: the warped image is the moving one.
    np.testing.assert_allclose(
        test_case.to_numpy(model([moving, fixed])), moving, atol=1e-6
    )
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    before = test_case.to_numpy(model.get_layer("flow").kernel)
    model.train_on_batch([moving, fixed], fixed)
    after = test_case.to_numpy(model.get_layer("flow").kernel)
    assert np.abs(after - before).max() > 0
    path = str(tmp_path / "registration.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        test_case.to_numpy(loaded([moving, fixed])),
        test_case.to_numpy(model([moving, fixed])),
    )
    for name in ("kernel", "padding_mode", "indexing"):
        assert name in model.layers[-1].get_config()


@pytest.mark.parametrize(
    "cls,kwargs,match",
    [
        ("DenseSpatialTransformer", {"kernel": "bicubic"}, "`kernel`"),
        ("DenseSpatialTransformer", {"padding_mode": "wrap"}, "`padding_mode`"),
        ("DenseSpatialTransformer", {"indexing": "yx"}, "`indexing`"),
        ("VelocityIntegration", {"steps": -1}, "`steps`"),
        ("VelocityIntegration", {"steps": 2.5}, "`steps`"),
        ("VelocityIntegration", {"indexing": "ji"}, "`indexing`"),
    ],
)
def test_bad_arguments_are_named(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(keras_stn.layers, cls)(**kwargs)


def test_mismatched_shapes_are_named():
    layer = keras_stn.layers.DenseSpatialTransformer()
    with pytest.raises(ValueError, match=r"displacement.shape"):
        layer([np.zeros((1, 8, 8, 1), "float32"), np.zeros((1, 8, 7, 2), "float32")])
    with pytest.raises(ValueError, match=r"\[images, displacement\]"):
        layer.build((1, 8, 8, 1))
    with pytest.raises(ValueError, match=r"velocity.shape"):
        keras_stn.layers.VelocityIntegration()(np.zeros((1, 8, 8, 3), "float32"))


def test_spatial_transformer_on_volumes_starts_at_identity(tmp_path):
    """The 12-parameter `affine3d` family: an identity-initialised head
    returns the volume, output sizes resample, and the layer trains and
    round-trips."""
    localization = keras.Sequential(
        [keras.layers.Flatten(), keras.layers.Dense(4, name="features")]
    )
    layer = keras_stn.SpatialTransformer(
        localization=localization,
        transform="affine3d",
        return_theta=True,
        return_grid=True,
    )
    volumes = test_case.rng(5).random((2, 4, 5, 6, 2)).astype("float32")
    outputs, theta, grid = layer(volumes)
    assert tuple(theta.shape) == (2, 12) and tuple(grid.shape) == (2, 4, 5, 6, 3)
    np.testing.assert_allclose(test_case.to_numpy(outputs), volumes, atol=1e-6)
    inputs = keras.Input((4, 5, 6, 2))
    model = keras.Model(
        inputs,
        keras_stn.SpatialTransformer(
            localization=keras.Sequential(
                [keras.layers.Flatten(), keras.layers.Dense(3)]
            ),
            transform="affine3d",
            output_size=(2, 3, 3),
        )(inputs),
    )
    assert tuple(model.output.shape) == (None, 2, 3, 3, 2)
    model.compile(optimizer="sgd", loss="mse")
    model.train_on_batch(volumes, np.zeros((2, 2, 3, 3, 2), "float32"))
    path = str(tmp_path / "volumes.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        test_case.to_numpy(loaded(volumes)), test_case.to_numpy(model(volumes))
    )


def test_volume_transformers_need_a_localization_and_a_3d_size():
    with pytest.raises(ValueError, match="`localization` must be given"):
        keras_stn.SpatialTransformer(transform="affine3d")
    layer = keras_stn.SpatialTransformer(
        localization=keras.layers.Flatten(),
        transform="affine3d",
        output_size=(4, 4),
    )
    with pytest.raises(ValueError, match="`output_size` must have 3 entries"):
        layer.build((2, 4, 4, 4, 1))
