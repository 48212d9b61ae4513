"""`keras_stn.config`: the switches, their validation and their effect."""

import keras
import pytest

import keras_stn
from keras_stn.ops import _backend


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
    assert _backend.xla_compiled(("config_test", 0), fn) is fn
    keras_stn.config.set_xla_samplers(True)
    compiled = _backend.xla_compiled(("config_test", 1), fn)
    if keras.backend.backend() == "tensorflow":
        assert compiled is not fn
    else:
        # Other backends compile whole steps themselves.
        assert compiled is fn
