"""Argument checks for the whole package: one message form everywhere.

Every error names the argument, the expected form and what was received, so
a user sees `grid` and `(B, H_out, W_out, 2)` instead of a shape error from
deep inside a gather.
"""

import math
import numbers

import keras
from keras import ops

_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def check_size(size, name="size"):
    """Returns `size` as a tuple of two positive Python ints `(H, W)`.

    Raises:
        ValueError: if `size` is not a pair of positive integers.
    """
    try:
        values = tuple(size)
    except TypeError:
        values = None
    if (
        values is None
        or len(values) != 2
        or not all(isinstance(v, numbers.Integral) for v in values)
        or isinstance(values[0], bool)
        or isinstance(values[1], bool)
        or min(values) < 1
    ):
        raise ValueError(
            f"`{name}` must be a pair of positive ints `(H, W)`. "
            f"Received: {name}={size!r}"
        )
    return int(values[0]), int(values[1])


def check_rank(x, ranks, name, form):
    """Raises a ValueError naming `name` if `x` has none of `ranks`."""
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    rank = len(x.shape)
    if rank not in ranks:
        raise ValueError(
            f"`{name}` must have shape {form}. Received: {name}.shape="
            f"{tuple(x.shape)} (rank {rank})"
        )


def check_float(x, name):
    """Raises a ValueError if `x` does not hold floating-point values."""
    dtype = standardize_dtype(x.dtype)
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(
            f"`{name}` must be a floating-point tensor "
            f"({', '.join(_FLOAT_DTYPES)}). Received: {name}.dtype={dtype}"
        )


def check_last_dim(x, size, name, form):
    """Raises a ValueError if the static last dimension of `x` is not `size`."""
    last = x.shape[-1]
    if last is not None and last != size:
        raise ValueError(
            f"`{name}` must have shape {form}. Received: {name}.shape="
            f"{tuple(x.shape)}"
        )


def check_same_batch(a, b, name_a, name_b):
    """Raises a ValueError if two static batch sizes differ."""
    ba, bb = a.shape[0], b.shape[0]
    if ba is not None and bb is not None and ba != bb:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same batch size. "
            f"Received: {name_a}.shape={tuple(a.shape)}, "
            f"{name_b}.shape={tuple(b.shape)}"
        )


def _check_int(value, name, minimum, kind):
    """Returns `value` as an int >= `minimum` or raises a ValueError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
    ):
        raise ValueError(
            f"`{name}` must be a {kind} int. Received: {name}={value!r}"
        )
    return int(value)


def check_positive_int(value, name):
    """Returns `value` as an int >= 1 or raises a ValueError."""
    return _check_int(value, name, 1, "positive")


def check_non_negative_int(value, name):
    """Returns `value` as an int >= 0 or raises a ValueError."""
    return _check_int(value, name, 0, "non-negative")


def check_choice(value, choices, name):
    """Raises a ValueError if `value` is not one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {choices}. Received: {name}={value!r}"
        )


def standardize_dtype(dtype):
    """Returns the dtype's name as a string, e.g. `"float32"`."""
    return getattr(dtype, "name", None) or str(dtype).split(".")[-1]


def as_float_tensor(x, name):
    """Converts `x` to a tensor, keeping a float dtype and refusing others."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        x = ops.convert_to_tensor(x, dtype="float32")
    elif standardize_dtype(x.dtype) not in _FLOAT_DTYPES:
        check_float(x, name)
    return ops.convert_to_tensor(x)


def compute_dtype(*dtypes):
    """float64 if any input is float64, else float32 (halves compute in 32)."""
    names = [standardize_dtype(d) for d in dtypes]
    return "float64" if "float64" in names else "float32"


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


def check_positive_float(value, name):
    """Returns `value` as a finite float > 0 or raises a ValueError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"`{name}` must be a finite number > 0. Received: {name}={value!r}"
        )
    return float(value)


def check_optional_positive_int(value, name):
    """Returns `value` as None or an int >= 1, or raises a ValueError."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < 1
    ):
        raise ValueError(
            f"`{name}` must be a positive int or None. Received: "
            f"{name}={value!r}"
        )
    return int(value)


def check_optional_str(value, name):
    """Returns `value` if it is None or a str, else raises a ValueError."""
    if value is not None and not isinstance(value, str):
        raise ValueError(
            f"`{name}` must be a str or None. Received: {name}={value!r}"
        )
    return value


def check_input_shape(input_shape, name="input_shape"):
    """Returns `input_shape` as a tuple of three positive ints `(H, W, C)`."""
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0
            for d in input_shape
        )
    ):
        raise ValueError(
            f"`{name}` must be three positive ints (H, W, C). Received: "
            f"{name}={input_shape!r}"
        )
    return tuple(int(d) for d in input_shape)


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
            "(KERAS_BACKEND=tensorflow, with TensorFlow installed: pip install "
            '"keras-stn[tensorflow]"), or use the PyDataset adapter on any '
            "backend. Received: keras.backend.backend()="
            f"{backend!r}"
        )


# Checks for the layers, `viz` and `callbacks`. --------------------------------
# (Imports inside the functions: this block is appended to the module.)


def check_antialias(antialias, name="antialias"):
    """Returns `antialias` if it is a bool or an int >= 0, else raises.

    `True` picks the supersampling factor from the sizes, an int is the
    factor (0 and 1 mean none); see `keras_stn.ops.sample`.
    """
    if not isinstance(antialias, bool) and (
        not isinstance(antialias, numbers.Integral) or antialias < 0
    ):
        raise ValueError(
            f"`{name}` must be a bool or a non-negative int (the "
            f"supersampling factor). Received: {name}={antialias!r}"
        )
    return antialias if isinstance(antialias, bool) else int(antialias)


def check_optional_layer(value, name, purpose=""):
    """Returns `value` if it is None or a `keras.layers.Layer`, else raises.

    Args:
        value: the argument.
        name: the argument's name, for the message.
        purpose: str, what the layer must do and what None means, e.g.
            `"mapping the input to (B, F) features, or None for the
            default"`; defaults to `"or None"`.
    """
    if value is not None and not isinstance(value, keras.layers.Layer):
        purpose = purpose or "or None"
        raise ValueError(
            f"`{name}` must be a Keras layer or model {purpose}. "
            f"Received: {name}={value!r}"
        )
    return value


def check_shape(shape, rank, name, form, owner=None, known_axes=(), hint=""):
    """Raises a ValueError unless a static `shape` fits `form`.

    Args:
        shape: tuple of ints or None, e.g. what `build` receives.
        rank: int, the number of dimensions `form` has.
        name: the tensor's name, for the message.
        form: str, the expected shape, e.g. `"(B, H, W, C)"`.
        owner: optional str, the layer the tensor goes to.
        known_axes: axes whose size must be known (not None).
        hint: optional str, what to do, said after `form`.
    """
    shape = tuple(shape)
    if len(shape) != rank or any(shape[axis] is None for axis in known_axes):
        of = f" of {owner}" if owner else ""
        hint = f" {hint}" if hint else ""
        raise ValueError(
            f"`{name}`{of} must have shape {form}{hint}. Received: "
            f"{name}.shape={shape}"
        )


def check_path(value, name):
    """Returns `value` as a non-empty str path, or raises a ValueError."""
    import os

    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(
            f"`{name}` must be a non-empty str or path. Received: "
            f"{name}={value!r}"
        )
    return os.fspath(value)


def check_labels(labels, count, name="labels"):
    """Returns the first `count` of `labels` as a list, or None for None.

    Raises:
        ValueError: if `labels` is not a sequence of at least `count`.
    """
    if labels is None:
        return None
    try:
        length = len(labels)
    except TypeError:
        length = None
    if length is None or isinstance(labels, str) or length < count:
        raise ValueError(
            f"`{name}` must be a sequence with one entry per example "
            f"shown ({count}). Received: {name}={labels!r}"
        )
    return list(labels)[:count]


def check_images(images, name="images"):
    """Returns `images` as a float NumPy array `(B, H, W, C)`, B >= 1.

    Args:
        images: array-like `(B, H, W, C)` of numbers.
        name: str, the argument's name in error messages.
    Returns:
        NumPy array `(B, H, W, C)`, float32 (float64 stays float64).
    Raises:
        ValueError: if `images` is not a non-empty rank-4 array of numbers.
    """
    import numpy as np

    try:
        array = np.asarray(images)
        if array.dtype != np.float64:
            array = array.astype(np.float32)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 4 or min(array.shape) < 1:
        received = (
            f"{name} of type {type(images).__name__}"
            if array is None
            else f"{name}.shape={array.shape}"
        )
        raise ValueError(
            f"`{name}` must be a non-empty array of numbers (B, H, W, C). "
            f"Received: {received}"
        )
    return array


def check_array(value, name, form, rank=None, last=None, non_empty=False):
    """Returns `value` as a float64 NumPy array of the expected form.

    Args:
        value: array-like of numbers.
        name: the argument's name, for the message.
        form: str, the expected shape, e.g. `"(B, H_out, W_out, 2)"`.
        rank: int, or None for any rank >= 1.
        last: int or None, the size the last axis must have.
        non_empty: bool, whether every axis must be at least 1.
    """
    import numpy as np

    array = np.asarray(value, dtype=np.float64)
    if (
        array.ndim < 1
        or (rank is not None and array.ndim != rank)
        or (last is not None and array.shape[-1] != last)
        or (non_empty and 0 in array.shape)
    ):
        raise ValueError(
            f"`{name}` must have shape {form}. Received: "
            f"{name}.shape={array.shape}"
        )
    return array


def check_non_empty_sequence(value, name, form):
    """Raises a ValueError unless `value` is a non-empty sequence (not a
    str or path, which `len` would also accept)."""
    import os

    try:
        length = len(value)
    except TypeError:
        length = 0
    if isinstance(value, (str, bytes, os.PathLike)) or not length:
        raise ValueError(
            f"`{name}` must be a non-empty list of {form}. Received: "
            f"{name}={value!r}"
        )


# Checks for the paper's experiments and the `keras-stn` command. -------------


def check_int_between(value, name, minimum, maximum, what=None):
    """Returns `value` as an int in `[minimum, maximum]`, or raises.

    Args:
        value: the argument.
        name: the argument's name, for the message.
        minimum, maximum: ints, the valid range (both included).
        what: optional str, what the range counts, e.g. `"MNIST's
            training digits"`.
    Raises:
        ValueError: naming the range and the value received.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not minimum <= value <= maximum
    ):
        about = f" ({what})" if what else ""
        raise ValueError(
            f"`{name}` must be an int from {minimum} to {maximum}{about}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def check_writable_folder(path, name):
    """Returns `path` as a str if it is a folder this process may write in,
    or one it may create; checks without creating anything.

    Raises:
        ValueError: `path` is not a non-empty str or path, a file is in the
            way, or the nearest existing folder is not writable.
    """
    import os  # here, not at the top: this block is appended

    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(
            f"`{name}` must be a non-empty str or path of a folder. "
            f"Received: {name}={path!r}"
        )
    path = os.fspath(path)
    existing = os.path.abspath(path)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(
            f"`{name}` must be a folder, or a path where one can be created. "
            f"Received: {name}={path!r} ({existing!r} is not a folder)"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"`{name}` must be a folder this process may write in. "
            f"Received: {name}={path!r} ({existing!r} is not writable)"
        )
    return path


# Checks for the 3-D samplers and the dense displacement fields. --------------


def check_volume_size(size, name="size"):
    """Returns `size` as a tuple of three positive Python ints `(D, H, W)`.

    Raises:
        ValueError: if `size` is not three positive integers.
    """
    try:
        values = tuple(size)
    except TypeError:
        values = None
    if (
        values is None
        or len(values) != 3
        or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool)
            for v in values
        )
        or min(values) < 1
    ):
        raise ValueError(
            f"`{name}` must be three positive ints `(D, H, W)`. "
            f"Received: {name}={size!r}"
        )
    return tuple(int(v) for v in values)


def check_non_empty_axes(x, axes, name, form):
    """Raises a ValueError if a static size of `x` along `axes` is 0."""
    if any(x.shape[axis] == 0 for axis in axes):
        raise ValueError(
            f"`{name}` must have shape {form} with non-empty spatial axes. "
            f"Received: {name}.shape={tuple(x.shape)}"
        )


def check_same_spatial_shape(a, b, name_a, name_b):
    """Raises a ValueError if static sizes of axes 1 to -2 of two tensors of
    the same rank differ (the spatial axes of channels-last tensors)."""
    pairs = zip(a.shape[1:-1], b.shape[1:-1])
    if len(a.shape) != len(b.shape) or any(
        sa is not None and sb is not None and sa != sb for sa, sb in pairs
    ):
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same spatial shape "
            f"(the axes between batch and channels). Received: "
            f"{name_a}.shape={tuple(a.shape)}, {name_b}.shape="
            f"{tuple(b.shape)}"
        )
