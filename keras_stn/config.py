"""Package-wide switches, as functions (the way `keras.config` does it).

- `set_xla_samplers(enabled)` / `xla_samplers()`: whether, on the TensorFlow
  backend, the samplers run as their own XLA-compiled functions (the
  default) or with TensorFlow's kernels. Other backends compile whole steps
  themselves and ignore it. The environment variable
  `KERAS_STN_XLA_SAMPLERS=0` sets the default to off.

The switch is read when a sampler is traced: set it before building or
compiling the model it should apply to.
"""

import os

from keras_stn.utils import argument_validation

# "0" turns op-level XLA off by default; anything else leaves it on.
XLA_SAMPLERS_ENV = "KERAS_STN_XLA_SAMPLERS"

_state = {"xla_samplers": None}


def set_xla_samplers(enabled):
    """Turns op-level XLA for the samplers on or off (TensorFlow backend).

    Args:
        enabled: bool, or None to go back to the default (on, unless
            `KERAS_STN_XLA_SAMPLERS=0`).
    Raises:
        ValueError: if `enabled` is neither a bool nor None.

    Example:
    >>> import keras_stn
    >>> keras_stn.config.set_xla_samplers(False)
    >>> keras_stn.config.xla_samplers()
    False
    >>> keras_stn.config.set_xla_samplers(None)
    """
    if enabled is not None:
        argument_validation.check_bool(enabled, "enabled")
    _state["xla_samplers"] = enabled


def xla_samplers():
    """Returns whether the samplers compile themselves with XLA on TensorFlow.

    Returns:
        bool: the value given to `set_xla_samplers`, else the default (on,
        unless the environment variable `KERAS_STN_XLA_SAMPLERS` is `"0"`).
    """
    if _state["xla_samplers"] is not None:
        return _state["xla_samplers"]
    return os.environ.get(XLA_SAMPLERS_ENV) != "0"
