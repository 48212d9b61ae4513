"""Layer-level reliability: a non-finite sample stays in its row, booleans
are booleans, a channels-first Keras fails loudly, multipliers are finite."""

import math

import keras
import numpy as np
import pytest

import keras_stn

BACKEND = keras.backend.backend()


def _images(shape=(3, 16, 16, 1), seed=0):
    return np.random.default_rng(seed).random(shape).astype("float32")


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _layer(cls=keras_stn.SpatialTransformer, **kwargs):
    localization = keras.Sequential(
        [
            keras.layers.Conv2D(2, 3, activation="tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="tanh"),
        ]
    )
    layer = cls(localization=localization, output_size=(8, 8), **kwargs)
    layer(_images())
    rng = np.random.default_rng(1)
    # Heads away from the identity, so the trunk gets a gradient too.
    for head in layer.heads:
        head.kernel.assign(0.1 * rng.normal(size=head.kernel.shape))
    return layer


def _gradients(layer, images, upstream, jit):
    """d sum(outputs * upstream) / d each trainable weight, as NumPy."""
    images = images.astype("float32")
    upstream = upstream.astype("float32")
    variables = layer.trainable_variables
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def grads(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x) * upstream)
            return tape.gradient(loss, variables)

        if jit:
            grads = tf.function(grads, jit_compile=True)
        return [g.numpy() for g in grads(tf.constant(images))]
    if BACKEND == "jax":
        import jax

        fixed = [v.value for v in layer.non_trainable_variables]

        def loss(trainable, x):
            outputs, _ = layer.stateless_call(trainable, fixed, x)
            return (outputs * upstream).sum()

        grads = jax.grad(loss)
        if jit:
            grads = jax.jit(grads)
        values = [v.value for v in variables]
        return [np.asarray(g) for g in grads(values, images)]
    if BACKEND == "torch":
        import torch

        if jit:
            pytest.skip("torch has no jit-compiled path here")
        loss = (layer(torch.tensor(images)) * torch.tensor(upstream)).sum()
        grads = torch.autograd.grad(loss, [v.value for v in variables])
        return [g.detach().cpu().numpy() for g in grads]
    pytest.skip(f"no gradient helper for backend {BACKEND}")


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize(
    "cls", [keras_stn.SpatialTransformer, keras_stn.ParallelSpatialTransformers]
)
def test_a_non_finite_sample_leaves_the_others_gradients_alone(cls, bad, jit):
    parallel = cls is keras_stn.ParallelSpatialTransformers
    layer = _layer(cls, merge="concat") if parallel else _layer(cls)
    images = _images()
    images[1, 3, 4, 0] = bad
    upstream = np.random.default_rng(2).normal(size=(3, 8, 8, len(layer.heads)))
    keep = [0, 2]
    with_bad = _gradients(layer, images, upstream, jit)
    without = _gradients(layer, images[keep], upstream[keep], jit)
    assert len(with_bad) == len(layer.trainable_variables) > 2
    for got, expected in zip(with_bad, without):
        assert np.all(np.isfinite(got))
        assert np.abs(expected).max() > 0
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_non_finite_sample_is_sampled_with_the_theta_of_zeros():
    layer = _layer(return_theta=True)
    images = _images()
    clean_outputs, clean_theta = layer(images)
    images[1, 3, 4, 0] = math.nan
    outputs, theta = (_numpy(x) for x in layer(images))
    keep = [0, 2]
    np.testing.assert_array_equal(outputs[keep], _numpy(clean_outputs)[keep])
    np.testing.assert_array_equal(theta[keep], _numpy(clean_theta)[keep])
    # The bad sample: its theta is the localization's for a zero image,
    # and its output what sampling its own input with that theta gives.
    (_, zero_theta) = layer(np.zeros_like(images[1:2]))
    np.testing.assert_allclose(theta[1:2], _numpy(zero_theta), rtol=1e-6)
    expected, _ = layer.warp(images[1:2], theta[1:2])
    expected = _numpy(expected)
    assert np.isnan(expected).any() and np.isfinite(expected).any()
    np.testing.assert_array_equal(np.isnan(outputs[1:2]), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(
        outputs[1:2][finite], expected[finite], rtol=1e-6
    )


# Booleans are booleans ------------------------------------------------------


def _constructors():
    return {
        "SpatialTransformer": keras_stn.SpatialTransformer,
        "ParallelSpatialTransformers": keras_stn.ParallelSpatialTransformers,
        "BilinearSampler": keras_stn.BilinearSampler,
        "GridGenerator": lambda **kw: keras_stn.GridGenerator((4, 4), **kw),
    }


@pytest.mark.parametrize("value", ["False", "True", 0, 1, None, np.bool_(0)])
@pytest.mark.parametrize("name", sorted(_constructors()))
def test_align_corners_must_be_a_bool(name, value):
    with pytest.raises(ValueError, match="`align_corners` must be True or"):
        _constructors()[name](align_corners=value)


@pytest.mark.parametrize("argument", ["return_theta", "return_grid"])
@pytest.mark.parametrize("value", ["False", 1, None])
def test_return_flags_must_be_bools(argument, value):
    for cls in (
        keras_stn.SpatialTransformer,
        keras_stn.ParallelSpatialTransformers,
    ):
        with pytest.raises(ValueError, match=f"`{argument}` must be True or"):
            cls(**{argument: value})


@pytest.mark.parametrize("value", ["False", None, -1, 1.5])
@pytest.mark.parametrize(
    "cls", [keras_stn.SpatialTransformer, keras_stn.BilinearSampler]
)
def test_antialias_must_be_a_bool_or_a_factor(cls, value):
    with pytest.raises(ValueError, match="`antialias` must be a bool or a"):
        cls(antialias=value)


def test_bools_and_factors_are_kept():
    layer = keras_stn.SpatialTransformer(align_corners=True, antialias=2)
    assert layer.align_corners is True and layer.antialias == 2
    config = layer.get_config()
    assert config["align_corners"] is True and config["antialias"] == 2


# Channels-first Keras -------------------------------------------------------


@pytest.mark.parametrize(
    "cls", [keras_stn.SpatialTransformer, keras_stn.ParallelSpatialTransformers]
)
def test_explicit_channels_last_ignores_a_channels_first_default(cls):
    """The default localization takes the layer's `data_format`, not the
    global one (it used to read the global one, so the layer refused to
    build under `"channels_first"`)."""
    previous = keras.config.image_data_format()
    try:
        keras.config.set_image_data_format("channels_first")
        layer = cls(output_size=(8, 8), data_format="channels_last")
        outputs = keras.tree.flatten(layer(np.zeros((2, 16, 16, 1), "f4")))
        assert {tuple(y.shape) for y in outputs} == {(2, 8, 8, 1)}
        formats = {
            sub.data_format
            for sub in layer.localization.layers
            if hasattr(sub, "data_format")
        }
        assert formats == {"channels_last"}
    finally:
        keras.config.set_image_data_format(previous)


# Finite multipliers ---------------------------------------------------------


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, 0.0, -1.0, True, "1"]
)
@pytest.mark.parametrize(
    "cls",
    [
        keras_stn.SpatialTransformer,
        keras_stn.ParallelSpatialTransformers,
        keras_stn.LocalizationHead,
    ],
)
def test_lr_multiplier_must_be_finite_and_positive(cls, value):
    with pytest.raises(
        ValueError, match=r"`lr_multiplier` must be a finite number > 0"
    ):
        cls(lr_multiplier=value)


def test_lr_multiplier_is_kept_as_a_float():
    layer = keras_stn.SpatialTransformer(lr_multiplier=2)
    assert layer.lr_multiplier == 2.0
    assert isinstance(layer.get_config()["lr_multiplier"], float)
    assert all(head.lr_multiplier == 2.0 for head in layer.heads)
