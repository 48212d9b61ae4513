"""Per-variable learning-rate multipliers: exact under Adam and SGD, on
every backend, through schedules, `fit` and `.keras` files."""

import keras
import numpy as np
import pytest

import keras_stn
from keras_stn import optimizers


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="trunk")(inputs)
    outputs = keras.layers.Dense(2, name="top")(hidden)
    return keras.Model(inputs, outputs)


def _data():
    gen = np.random.default_rng(3)
    return (
        gen.normal(size=(16, 4)).astype("float32"),
        gen.normal(size=(16, 2)).astype("float32"),
    )


def _train(model, optimizer, steps=3):
    x, y = _data()
    model.compile(optimizer=optimizer, loss="mse")
    for _ in range(steps):
        model.train_on_batch(x, y)
    return {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}


@pytest.mark.parametrize(
    "make",
    [
        lambda lr: keras.optimizers.Adam(lr),
        lambda lr: keras.optimizers.SGD(lr, momentum=0.9),
    ],
    ids=["adam", "sgd"],
)
def test_update_equals_a_scaled_learning_rate(make):
    """The trunk trained at 0.1x equals the trunk of a model whose whole
    learning rate is 0.1x (the top layer sees the same gradients only at
    the first step, so it is compared at one step)."""
    start = {v.path: keras.ops.convert_to_numpy(v) for v in _model().weights}
    multiplied = _train(
        _model(), optimizers.with_lr_multipliers(make(0.01), {"^trunk/": 0.1}),
        steps=1,
    )
    small = _train(_model(), make(0.001), steps=1)
    large = _train(_model(), make(0.01), steps=1)
    for path in multiplied:
        expected = small[path] if path.startswith("trunk/") else large[path]
        np.testing.assert_allclose(multiplied[path], expected, rtol=0, atol=1e-7)
        assert not np.allclose(multiplied[path], start[path])


def test_adam_without_multipliers_is_adam():
    plain = _train(_model(), keras.optimizers.Adam(0.01))
    same = _train(_model(), optimizers.with_lr_multipliers(
        keras.optimizers.Adam(0.01), {}))
    # On PyTorch Keras runs its own Adam as a fused multi-tensor update and
    # the subclass through Adam's `update_step`: the same arithmetic in
    # another order, so equal to float32 rounding (a few ulps) there and
    # bit for bit elsewhere.
    rtol = 1e-6 if keras.backend.backend() == "torch" else 0.0
    for path in plain:
        np.testing.assert_allclose(plain[path], same[path], rtol=rtol, atol=0)


def test_gradient_scaling_would_not_do_under_adam():
    """Why this exists: under Adam a 0.1x gradient moves a variable about
    as far as the full one, while a 0.1x learning rate moves it 0.1x."""
    start = {v.path: keras.ops.convert_to_numpy(v) for v in _model().weights}
    multiplied = _train(
        _model(),
        optimizers.with_lr_multipliers(keras.optimizers.Adam(0.01),
                                       {"^trunk/": 0.1}),
        steps=1,
    )
    plain = _train(_model(), keras.optimizers.Adam(0.01), steps=1)
    moved = np.abs(multiplied["trunk/kernel"] - start["trunk/kernel"])
    moved_plain = np.abs(plain["trunk/kernel"] - start["trunk/kernel"])
    np.testing.assert_allclose(moved, 0.1 * moved_plain, rtol=1e-4, atol=1e-9)


def test_schedule_is_multiplied_too():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, 1, 0.5)
    multiplied = _train(
        _model(),
        optimizers.with_lr_multipliers(keras.optimizers.SGD(schedule),
                                       {"trunk": 0.25}),
    )
    small = _train(
        _model(),
        keras.optimizers.SGD(
            keras.optimizers.schedules.ExponentialDecay(0.0025, 1, 0.5)
        ),
        steps=1,
    )
    assert multiplied  # ran through a schedule
    single = _train(
        _model(),
        optimizers.with_lr_multipliers(keras.optimizers.SGD(
            keras.optimizers.schedules.ExponentialDecay(0.01, 1, 0.5)),
            {"trunk": 0.25}),
        steps=1,
    )
    np.testing.assert_allclose(
        single["trunk/kernel"], small["trunk/kernel"], rtol=0, atol=1e-7
    )


def test_saved_with_a_compiled_model(tmp_path):
    model = _model()
    optimizer = optimizers.with_lr_multipliers(
        keras.optimizers.Adam(0.01), {"^trunk/": 0.1}
    )
    _train(model, optimizer, steps=1)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.optimizer).__name__ == "MultipliedAdam"
    assert loaded.optimizer.multipliers == {"^trunk/": 0.1}


def test_localization_multipliers_name_every_transformer_variable():
    model = keras_stn.models.st_cnn(input_shape=(28, 28, 1))
    mapping = optimizers.localization_multipliers(model, 0.1)
    transformer = [
        layer for layer in model.layers
        if isinstance(layer, keras_stn.SpatialTransformer)
    ][0]
    expected = {v.path for v in transformer.trainable_variables}
    optimizer = optimizers.with_lr_multipliers(
        keras.optimizers.SGD(0.01), mapping
    )
    scaled = {
        v.path for v in model.trainable_variables
        if optimizer.lr_multiplier(v) == 0.1
    }
    assert scaled == expected
    assert len(scaled) < len(model.trainable_variables)


@pytest.mark.parametrize(
    "multipliers,match",
    [
        ([("a", 1.0)], "must be a dict"),
        ({"a": 0.0}, r"multipliers\['a'\]"),
        ({"a": float("nan")}, r"multipliers\['a'\]"),
        ({"(": 1.0}, "regular expressions"),
    ],
)
def test_bad_multipliers_are_named(multipliers, match):
    with pytest.raises(ValueError, match=match):
        optimizers.with_lr_multipliers(keras.optimizers.SGD(), multipliers)


def test_bad_optimizer_and_model_are_named():
    with pytest.raises(ValueError, match="`optimizer` must be"):
        optimizers.with_lr_multipliers("adam", {})
    with pytest.raises(ValueError, match="must contain a SpatialTransformer"):
        optimizers.localization_multipliers(_model(), 0.1)
