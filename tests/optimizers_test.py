"""Per-variable learning-rate multipliers: exact under Adam and SGD, on
every backend, through schedules, `fit` and `.keras` files.

Run as a script (`python -m tests.optimizers_test PHASE FOLDER`), it
is the worker of `test_training_goes_on_alike_after_loading_in_a_fresh_
process`, which runs it under each Keras backend in a fresh process.
"""

import importlib.util
import json
import os
import subprocess
import sys

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


def test_wrapping_again_replaces_the_multipliers(tmp_path):
    once = optimizers.with_lr_multipliers(
        keras.optimizers.SGD(1.0), {"^trunk/": 0.5}
    )
    twice = optimizers.with_lr_multipliers(once, {"^trunk/": 0.5})
    assert type(twice) is type(once)
    assert twice.multipliers == {"^trunk/": 0.5}
    other = optimizers.with_lr_multipliers(once, {"^top/": 0.25})
    assert other.multipliers == {"^top/": 0.25}
    # One step of SGD at rate 1 x 0.5 on the trunk: the trunk of plain SGD
    # at 0.5, not at 0.25 (the factor squared).
    model = _model()
    moved = _train(model, twice, steps=1)
    half = _train(_model(), keras.optimizers.SGD(0.5), steps=1)
    full = _train(_model(), keras.optimizers.SGD(1.0), steps=1)
    for path in moved:
        expected = half[path] if path.startswith("trunk/") else full[path]
        np.testing.assert_allclose(moved[path], expected, rtol=0, atol=1e-6)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path).optimizer
    assert type(loaded) is type(once)
    assert loaded.multipliers == {"^trunk/": 0.5}


def test_loss_scale_optimizer_multiplies_its_inner_optimizer(tmp_path):
    scaled = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.01), initial_scale=64.0, dynamic_growth_steps=7
    )
    multiplied = optimizers.with_lr_multipliers(scaled, {"^trunk/": 0.1})
    assert isinstance(multiplied, keras.optimizers.LossScaleOptimizer)
    assert type(multiplied.inner_optimizer).__name__ == "MultipliedSGD"
    assert multiplied.initial_scale == 64.0
    assert multiplied.dynamic_growth_steps == 7
    start = {v.path: keras.ops.convert_to_numpy(v) for v in _model().weights}
    model = _model()
    moved = _train(model, multiplied, steps=1)
    small = _train(_model(), keras.optimizers.SGD(0.001), steps=1)
    large = _train(_model(), keras.optimizers.SGD(0.01), steps=1)
    for path in moved:
        expected = small[path] if path.startswith("trunk/") else large[path]
        np.testing.assert_allclose(moved[path], expected, rtol=0, atol=1e-7)
        assert not np.allclose(moved[path], start[path])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path).optimizer
    assert type(loaded.inner_optimizer).__name__ == "MultipliedSGD"
    assert loaded.inner_optimizer.multipliers == {"^trunk/": 0.1}


# README's example, trained STEPS steps, saved, then trained STEPS more in
# the same process (uninterrupted) and, loaded, in a fresh one (resumed).
STEPS = 2
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_model(wrap):
    """README's example; `wrap="loss_scale"` puts Adam in a
    `LossScaleOptimizer` first."""
    import keras_stn

    keras.utils.set_random_seed(1)
    model = keras_stn.models.st_cnn(input_shape=(42, 42, 1))
    multipliers = keras_stn.optimizers.localization_multipliers(model, 0.1)
    inner = keras.optimizers.Adam(1e-3)
    if wrap == "loss_scale":
        inner = keras.optimizers.LossScaleOptimizer(inner)
    optimizer = keras_stn.optimizers.with_lr_multipliers(inner, multipliers)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return model


def _train_steps(model, first):
    gen = np.random.default_rng(5)
    images = gen.random((2 * STEPS, 4, 42, 42, 1)).astype("float32")
    labels = gen.integers(0, 10, (2 * STEPS, 4))
    for step in range(first, first + STEPS):
        model.train_on_batch(images[step], labels[step])


def _factors(model):
    optimizer = model.optimizer
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return [inner.lr_multiplier(v) for v in model.trainable_variables]


def _write(model, path):
    np.savez(
        path,
        *[keras.ops.convert_to_numpy(v) for v in model.weights],
        factors=np.array(_factors(model)),
    )


WRAPS = ("plain", "loss_scale")


def _worker(phase, folder):
    """Per wrap, `save`: trains, saves `<wrap>.keras`, trains on
    (`<wrap>-uninterrupted.npz`); `resume`: loads `<wrap>.keras` and trains
    on (`<wrap>-resumed.npz`)."""
    for wrap in WRAPS:
        path = os.path.join(folder, f"{wrap}.keras")
        if phase == "save":
            model = _readme_model(wrap)
            _train_steps(model, 0)
            model.save(path)
            _train_steps(model, STEPS)
            _write(model, os.path.join(folder, f"{wrap}-uninterrupted.npz"))
        else:
            model = keras.saving.load_model(path)
            _train_steps(model, STEPS)
            _write(model, os.path.join(folder, f"{wrap}-resumed.npz"))
    print(json.dumps({"backend": keras.backend.backend(), "phase": phase}))


def test_loaded_model_keeps_its_factors(tmp_path):
    """The loaded trunk's variable paths lose their `localization/`
    prefix; its factors, kept in the optimizer's state, do not."""
    model = _readme_model("plain")
    _train_steps(model, 0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert _factors(loaded) == _factors(model)
    assert _factors(model).count(np.float32(0.1)) == 8
    _train_steps(model, STEPS)
    _train_steps(loaded, STEPS)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )


@pytest.mark.large
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_training_goes_on_alike_after_loading_in_a_fresh_process(
    backend, tmp_path
):
    """The factors live in the optimizer's saved state, so a fresh process
    that loads the model (whose trunk's variable paths lose their
    `localization/` prefix) trains on with them: equal to the run that
    was never interrupted. With a plain optimizer and with a
    `LossScaleOptimizer` around it."""
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    if backend != keras.backend.backend():
        # CI runs the suite once per backend: each runs its own worker.
        pytest.skip(f"runs in the {backend} suite")
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    for phase in ("save", "resume"):
        run = subprocess.run(
            [sys.executable, "-m", "tests.optimizers_test", phase,
             str(tmp_path)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )
        assert run.returncode == 0, run.stderr[-4000:]
    for wrap in WRAPS:
        uninterrupted = dict(np.load(tmp_path / f"{wrap}-uninterrupted.npz"))
        resumed = dict(np.load(tmp_path / f"{wrap}-resumed.npz"))
        # The transformer's 8 variables: trunk (2 convolutions, 1 dense
        # layer) and head, a kernel and a bias each.
        factors = uninterrupted.pop("factors")
        assert np.count_nonzero(factors == np.float32(0.1)) == 8, wrap
        np.testing.assert_array_equal(resumed.pop("factors"), factors)
        assert uninterrupted.keys() == resumed.keys()
        for key in uninterrupted:
            # The same arithmetic in the same order on a CPU: the same
            # bits.
            np.testing.assert_array_equal(
                resumed[key], uninterrupted[key], err_msg=f"{wrap} {key}"
            )


if __name__ == "__main__":
    _worker(*sys.argv[1:])
