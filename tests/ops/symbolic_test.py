"""The public ops on `keras.Input` tensors: functional models, saving, errors."""

import keras
import numpy as np
import pytest

from keras_stn import ops as stn_ops


def _identity_theta(batch):
    return np.tile(np.array([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]], "float32"), (batch, 1))


def _model():
    images = keras.Input((8, 7, 2))
    theta = keras.Input((6,))
    grid = stn_ops.affine_grid(theta, (5, 4))
    outputs = stn_ops.sample(images, grid, padding_mode="border")
    return keras.Model([images, theta], [outputs, grid])


def test_functional_model_equals_eager_calls(tmp_path):
    model = _model()
    assert tuple(model.outputs[0].shape) == (None, 5, 4, 2)
    assert tuple(model.outputs[1].shape) == (None, 5, 4, 2)
    images = np.random.default_rng(0).normal(size=(3, 8, 7, 2))
    images = images.astype("float32")
    theta = _identity_theta(3)
    theta[:, 2] = 0.3
    outputs, grid = model([images, theta])
    expected_grid = stn_ops.affine_grid(theta, (5, 4))
    expected = stn_ops.sample(images, expected_grid, padding_mode="border")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(outputs), keras.ops.convert_to_numpy(expected)
    )
    path = str(tmp_path / "ops.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    reloaded, _ = loaded([images, theta])
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(reloaded), keras.ops.convert_to_numpy(outputs)
    )


def test_symbolic_call_raises_the_op_own_error():
    images = keras.Input((8, 8, 1))
    grid = keras.Input((4, 4, 2))
    with pytest.raises(ValueError, match=r"`padding_mode` must be one of") as info:
        stn_ops.bilinear_sample(images, grid, padding_mode="wrap")
    assert "TensorOp" not in str(info.value)


def test_symbolic_call_checks_shapes():
    images = keras.Input((8, 8, 1))
    grid = keras.Input((4, 4, 3))
    with pytest.raises(ValueError, match=r"`grid` must have shape"):
        stn_ops.bilinear_sample(images, grid)
