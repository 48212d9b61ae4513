"""`keras_stn.config`: the switches, their validation and their effect."""

import keras
import pytest

import keras_stn
from keras_stn.ops import backend


@pytest.fixture(autouse=True)
def _restore():
    yield
    keras_stn.config.set_xla_samplers(None)


def test_default_follows_the_environment(monkeypatch):
    keras_stn.config.set_xla_samplers(None)
    monkeypatch.setenv(keras_stn.config.XLA_SAMPLERS_ENV, "0")
    assert keras_stn.config.xla_samplers() is False
    monkeypatch.delenv(keras_stn.config.XLA_SAMPLERS_ENV)
    assert keras_stn.config.xla_samplers() is True


def test_function_overrides_the_environment(monkeypatch):
    monkeypatch.setenv(keras_stn.config.XLA_SAMPLERS_ENV, "0")
    keras_stn.config.set_xla_samplers(True)
    assert keras_stn.config.xla_samplers() is True


@pytest.mark.parametrize("value", ["False", 0, 1, "yes"])
def test_only_booleans(value):
    with pytest.raises(ValueError, match=r"`enabled` must be True or False"):
        keras_stn.config.set_xla_samplers(value)


def test_switch_decides_whether_samplers_compile_themselves():
    def fn(images, grid):
        return images

    keras_stn.config.set_xla_samplers(False)
    assert backend.xla_compiled(("config_test", 0), fn) is fn
    keras_stn.config.set_xla_samplers(True)
    compiled = backend.xla_compiled(("config_test", 1), fn)
    if keras.backend.backend() == "tensorflow":
        assert compiled is not fn
    else:
        # Other backends compile whole steps themselves.
        assert compiled is fn


@pytest.mark.parametrize(
    "value,expected",
    [("0", False), ("false", False), ("FALSE", False), ("False", False),
     ("1", True), ("true", True), ("True", True), ("", True)],
)
def test_xla_environment_switch_takes_true_false_1_0(
    monkeypatch, value, expected
):
    keras_stn.config.set_xla_samplers(None)
    monkeypatch.setenv(keras_stn.config.XLA_SAMPLERS_ENV, value)
    assert keras_stn.config.xla_samplers() is expected


@pytest.mark.parametrize(
    "value,expected",
    [("1", True), ("TRUE", True), ("true", True), ("0", False),
     ("false", False)],
)
def test_deterministic_environment_switch_takes_true_false_1_0(
    monkeypatch, value, expected
):
    keras_stn.config.set_deterministic(None)
    monkeypatch.setenv(keras_stn.config.DETERMINISTIC_ENV, value)
    assert keras_stn.config.deterministic() is expected


@pytest.mark.parametrize(
    "variable,reader",
    [
        ("XLA_SAMPLERS_ENV", "xla_samplers"),
        ("DETERMINISTIC_ENV", "deterministic"),
        ("NATIVE_KERNELS_ENV", "native_kernels"),
    ],
)
@pytest.mark.parametrize("value", ["yes", "2", "off", "treu"])
def test_environment_switches_refuse_other_values(
    monkeypatch, variable, reader, value
):
    # Silently ignoring them (as "false" once was) hides a typo.
    name = getattr(keras_stn.config, variable)
    keras_stn.config.set_deterministic(None)
    keras_stn.config.set_xla_samplers(None)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=rf"{name} must be 1, 0, true or"):
        getattr(keras_stn.config, reader)()


def test_native_kernels_switch(monkeypatch):
    monkeypatch.delenv(keras_stn.config.NATIVE_KERNELS_ENV, raising=False)
    assert keras_stn.config.native_kernels() is True
    keras_stn.config.set_native_kernels(False)
    try:
        assert keras_stn.config.native_kernels() is False
        assert backend.native_sampler(
            "bilinear", 2, "zeros", False, None, False
        ) is None
    finally:
        keras_stn.config.set_native_kernels(None)
    monkeypatch.setenv(keras_stn.config.NATIVE_KERNELS_ENV, "false")
    assert keras_stn.config.native_kernels() is False
