"""Argument checks shared by every op: one message form everywhere.

Every error names the argument, the expected form and what was received, so
a user sees `grid` and `(B, H_out, W_out, 2)` instead of a shape error from
deep inside a gather.
"""

import numbers

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
