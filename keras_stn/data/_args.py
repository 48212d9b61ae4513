"""Argument checks shared by the data pipelines: one message form everywhere.

Every error names the argument, the expected form and the received value.
"""

import numbers

import keras

from keras_stn.ops import _checks

# The package-wide int checks, under the names the pipelines call.
check_positive_int = _checks.check_positive_int
check_non_negative_int = _checks.check_non_negative_int


def check_tensorflow_backend(function_name):
    """Raises a RuntimeError unless Keras runs on TensorFlow.

    The distortions call `keras_stn.ops`, which are written with `keras.ops`;
    inside a `tf.data` pipeline those must produce TensorFlow tensors.
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"`{function_name}` builds its distortions with keras_stn.ops "
            "inside tf.data, which needs the TensorFlow Keras backend "
            "(KERAS_BACKEND=tensorflow). Received: keras.backend.backend()="
            f"{backend!r}"
        )


def check_non_negative_float(value, name):
    """Returns `value` as a finite float >= 0 or raises a ValueError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not value >= 0
        or value == float("inf")
    ):
        raise ValueError(
            f"`{name}` must be a finite number >= 0. Received: {name}={value!r}"
        )
    return float(value)


def check_range(value, name, minimum=None, positive=False):
    """Returns `value` as a pair of floats `(low, high)`, `low <= high`.

    Args:
        value: a pair of finite numbers.
        name: the argument's name, for the message.
        minimum: float or None, a lower bound for `low`.
        positive: bool, whether `low` must be > 0.
    Raises:
        ValueError: if `value` is not such a pair.
    """
    try:
        low, high = (float(v) for v in value)
        ok = (
            not any(isinstance(v, bool) for v in value)
            and low <= high
            and high < float("inf")
            and low > float("-inf")
            and (minimum is None or low >= minimum)
            and (not positive or low > 0)
        )
    except (TypeError, ValueError):
        ok = False
    if not ok:
        bound = " with low > 0" if positive else ""
        if minimum is not None:
            bound = f" with low >= {minimum}"
        raise ValueError(
            f"`{name}` must be a pair of finite numbers `(low, high)`, "
            f"low <= high{bound}. Received: {name}={value!r}"
        )
    return low, high


def check_seed(seed):
    """Returns `seed` as None or an int, or raises a ValueError."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(
            f"`seed` must be None or an int. Received: seed={seed!r}"
        )
    return int(seed)


def check_bool(value, name):
    """Returns `value` if it is a bool, else raises a ValueError."""
    if not isinstance(value, bool):
        raise ValueError(
            f"`{name}` must be True or False. Received: {name}={value!r}"
        )
    return value


def check_options(options, allowed, name):
    """Raises a ValueError for a keyword not in `allowed`."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for {name}; valid options: "
            f"{sorted(allowed)}. Received: {options!r}"
        )
