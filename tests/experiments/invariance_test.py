"""Invariance sweeps: the distortions are the ones named, curves are right."""

import keras
import numpy as np
import pytest

from keras_stn.experiments import invariance
from tests import test_case

pytestmark = pytest.mark.tensorflow_only


def _digits():
    digits = np.zeros((2, 28, 28, 1), "float32")
    digits[0, 4:10, 6:20] = 1.0  # a bar in the upper half
    digits[1] = test_case.rng(0).random((28, 28, 1))
    return digits


def test_neutral_values_centre_the_digit_unchanged():
    digits = _digits()
    for sweep, value in [("rotation", 0.0), ("scale", 1.0), ("translation", 0)]:
        canvas = invariance.distort(digits, sweep, value).numpy()
        # 28 px centred on 42: 7 px of margin, exact pixel copies.
        test_case.assert_close(canvas[:, 7:35, 7:35], digits, 1e-5)
        assert np.abs(canvas[:, :7]).max() < 1e-5
        assert np.abs(canvas[:, 35:]).max() < 1e-5


def test_half_turn_reverses_and_translation_shifts():
    digits = _digits()
    turned = invariance.distort(digits, "rotation", 180.0).numpy()
    test_case.assert_close(turned[:, 7:35, 7:35], digits[:, ::-1, ::-1], 1e-5)
    moved = invariance.distort(digits, "translation", 3.0).numpy()
    test_case.assert_close(moved[:, 10:38, 10:38], digits, 1e-5)


def test_scale_halves_the_bar():
    canvas = invariance.distort(_digits()[:1], "scale", 0.5).numpy()[0, ..., 0]
    rows = np.nonzero(canvas.max(axis=1) > 0.5)[0]
    columns = np.nonzero(canvas.max(axis=0) > 0.5)[0]
    # The bar spans 14 columns at scale 1, so 7 at scale 0.5.
    assert columns.max() - columns.min() + 1 == 7
    assert rows.max() < 21  # still in the upper half


def test_accuracy_curves_count_correct_predictions():
    # A "model" that answers 1 when the canvas' centre row is dark.
    inputs = keras.Input((42, 42, 1))
    centre = keras.layers.Lambda(lambda x: x[:, 21, :, 0])(inputs)
    dark = keras.layers.Lambda(
        lambda r: keras.ops.cast(keras.ops.max(r, axis=-1) < 0.5, "float32")
    )(centre)
    outputs = keras.layers.Lambda(
        lambda d: keras.ops.stack([1 - d, d], axis=-1)
    )(dark)
    model = keras.Model(inputs, outputs)
    digits = _digits()[:1]
    curves = invariance.accuracy_curves(
        {"m": model}, digits, np.array([1]), sweeps=["rotation"]
    )
    curve = curves["rotation"]
    assert curve["values"][0] == 0.0 and curve["trained"] == [0.0, 45.0]
    accuracy = dict(zip(curve["values"], curve["accuracy"]["m"]))
    # The bar crosses the centre row once turned by 90 degrees.
    assert accuracy[0.0] == 1.0 and accuracy[90.0] == 0.0


def test_unknown_sweep_names_the_valid_ones():
    with pytest.raises(ValueError, match="rotation, scale, translation"):
        invariance.distort(_digits(), "shear", 1.0)
