"""DepthwiseGradConv2D: Conv2D's values and gradients, computed faster."""

import keras
import numpy as np
import pytest

from keras_stn import layers
from keras_stn.layers import depthwise_grad_conv2d
from tests import test_case

tf = pytest.importorskip(
    "tensorflow", reason="TensorFlow is optional: pip install '.[tensorflow]'"
)

# The fast input gradient is TensorFlow's; elsewhere the layer is Conv2D.
pytestmark = pytest.mark.tensorflow_only


def _pair(filters, kernel_size, padding, channels, dtype="float32"):
    fast = layers.DepthwiseGradConv2D(
        filters, kernel_size, padding=padding, dtype=dtype
    )
    plain = keras.layers.Conv2D(
        filters, kernel_size, padding=padding, dtype=dtype
    )
    shape = (None, 11, 12, channels)
    fast.build(shape)
    plain.build(shape)
    rng = test_case.rng(0)
    for source, target in zip(plain.weights, fast.weights):
        value = rng.standard_normal(source.shape).astype(dtype)
        source.assign(value)
        target.assign(value)
    return fast, plain


def _value_and_grads(layer, images, upstream):
    with tf.GradientTape() as tape:
        tape.watch(images)
        outputs = layer(images)
        loss = tf.reduce_sum(outputs * upstream)
    d_images, d_kernel, d_bias = tape.gradient(
        loss, [images, layer.kernel, layer.bias]
    )
    return outputs, d_images, d_kernel, d_bias


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-12)])
@pytest.mark.parametrize(
    "kernel_size,padding,channels",
    [
        (9, "same", 1),
        (3, "same", 3),
        ((4, 5), "same", 2),  # even kernels pad more after than before
        ((5, 2), "valid", 1),
        (3, "valid", 4),
    ],
)
def test_values_and_gradients_equal_conv2d(
    kernel_size, padding, channels, dtype, tol
):
    fast, plain = _pair(6, kernel_size, padding, channels, dtype)
    images = tf.constant(
        test_case.rng(1).standard_normal((3, 11, 12, channels)), dtype
    )
    upstream = tf.constant(
        test_case.rng(2).standard_normal(plain(images).shape), dtype
    )
    for got, want in zip(
        _value_and_grads(fast, images, upstream),
        _value_and_grads(plain, images, upstream),
    ):
        scale = float(tf.reduce_max(tf.abs(want)))
        test_case.assert_close(got, want, tol * max(scale, 1.0))


def test_finite_differences_float64():
    fast, _ = _pair(2, 3, "same", 1, "float64")
    images = test_case.rng(3).standard_normal((1, 5, 4, 1))
    test_case.assert_jacobian_close(fast, [images], delta=1e-6, atol=1e-8)


def test_second_derivatives_equal_conv2d():
    fast, plain = _pair(4, 3, "same", 1, "float64")
    images = tf.constant(test_case.rng(4).standard_normal((2, 6, 6, 1)))

    def curvature(layer):
        with tf.GradientTape() as outer:
            outer.watch(images)
            with tf.GradientTape() as inner:
                inner.watch(images)
                loss = tf.reduce_sum(tf.tanh(layer(images)))
            grad = inner.gradient(loss, images)
            norm = tf.reduce_sum(grad**2)
        return outer.gradient(norm, [images, layer.kernel])

    for got, want in zip(curvature(fast), curvature(plain)):
        test_case.assert_close(got, want, 1e-10)


def test_xla_matches_conv2d_and_other_cases_fall_back():
    # The layer no longer detects XLA (that took a private TensorFlow API):
    # under whole-step XLA it keeps Conv2D's values and gradients, and
    # `fast_input_gradient=False` hands the gradient back to Conv2D.
    fast, plain = _pair(3, 3, "same", 2)
    images = tf.constant(test_case.rng(5).standard_normal((2, 11, 12, 2)))
    images = tf.cast(images, "float32")
    upstream = tf.ones((2, 11, 12, 3))
    compiled = tf.function(
        lambda x: _value_and_grads(fast, x, upstream), jit_compile=True
    )
    for got, want in zip(
        compiled(images), _value_and_grads(plain, images, upstream)
    ):
        test_case.assert_close(got, want, 1e-4)
    opted_out = layers.DepthwiseGradConv2D(3, 3, fast_input_gradient=False)
    assert not opted_out._fast(images)
    strided = layers.DepthwiseGradConv2D(3, 3, strides=2)
    wide = layers.DepthwiseGradConv2D(3, 3)
    assert not strided._fast(images)
    assert not wide._fast(
        tf.zeros((1, 8, 8, depthwise_grad_conv2d.MAX_FAST_CHANNELS + 1))
    )
    assert wide._fast(images)


def test_serializes_as_itself(tmp_path):
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), layers.DepthwiseGradConv2D(2, 3)]
    )
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[0], layers.DepthwiseGradConv2D)
    images = np.ones((1, 8, 8, 1), "float32")
    np.testing.assert_array_equal(loaded(images), model(images))
