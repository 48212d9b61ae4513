"""Scatter-adds whose result is the same bits on every call.

Float atomics (the scatter-add on GPUs) add in an order that varies between
calls, and float addition is not associative; integer addition is. The
samplers' image gradients use this when `deterministic=True`.
"""

import keras
from keras import ops

from keras_stn.ops import backend

# Each update becomes an integer of up to this many bits less log2 of the
# number of updates its row receives, so that no row's sum can overflow
# (one bit to spare for rounding): int32 words for float32 and narrower,
# int64 for float64.
_WORD_BITS = {"int32": 30, "int64": 62}


def deterministic_segment_sum(updates, indices, num_rows):
    """`scatter_add_rows` whose result is the same bits on every call.

    Float atomics add in an order that varies between calls on GPUs, and
    float addition is not associative. Integer addition is: each update is
    scaled by a power of two, rounded to an integer, the integers are
    summed, and the sums are scaled back. Per row, the scale puts the row's
    largest `|update|` (over its columns) at `2**(b - 1)` with `b = 30 -
    ceil(log2 n)` (int32; 62 and int64 for float64 updates), `n` the
    number of updates the row receives, so that no sum overflows. Each
    update is then rounded by less than `2**(1 - b)` times the row's
    largest update, about float32's own rounding of a sum holding that
    update while a row receives up to 64 updates (`b >= 24`): the result
    equals the float sum up to float rounding. A row that receives a NaN
    or an infinite update is NaN. Differentiable w.r.t. `updates` (the
    transpose is a gather).

    Args:
        updates: float tensor `(M, D)`.
        indices: int32 tensor `(M,)`, each in `[0, num_rows)`.
        num_rows: int or scalar int tensor.
    Returns:
        Tensor `(num_rows, D)` with the dtype of `updates`.
    """

    @ops.custom_gradient
    def _sum(updates, indices):
        def _deterministic_segment_sum_grad(*args, upstream=None):
            """d updates: the upstream row each update was added to."""
            upstream = args[0] if upstream is None else upstream
            return ops.take(upstream, indices, axis=0), None

        return _integer_sum(updates, indices, num_rows), (
            _deterministic_segment_sum_grad
        )

    return _sum(updates, indices)


def _integer_sum(updates, indices, num_rows):
    """The exact integer sum of `deterministic_segment_sum`."""
    dtype = keras.backend.standardize_dtype(updates.dtype)
    word = "int64" if dtype == "float64" else "int32"
    updates = ops.stop_gradient(updates)
    counts = backend.scatter_add_rows(ops.ones_like(indices), indices, num_rows)
    largest = ops.segment_max(
        ops.max(ops.abs(updates), axis=-1), indices, num_segments=num_rows
    )
    # Empty rows (whose maximum is the lowest float or -inf, by backend)
    # get a count of 1 and a largest update of 0, which keeps them zero.
    finite = ops.logical_or(counts == 0, ops.isfinite(largest))
    largest = ops.where(ops.logical_and(counts > 0, finite), largest, 0.0)
    counts = ops.cast(ops.maximum(counts, 1), dtype)
    bits = _WORD_BITS[word] - ops.ceil(ops.log2(counts))
    exponent = ops.where(
        largest > 0, ops.ceil(ops.log2(ops.maximum(largest, 2e-38))), 0.0
    )
    # The scale 2**(b - 1 - exponent) as two factors, each within
    # float32's range whatever the largest update's exponent.
    shift = bits - 1.0 - exponent
    half = backend.floor(shift / 2.0)
    row_scales = ops.stack(
        [ops.power(2.0, half), ops.power(2.0, shift - half)], axis=-1
    )
    scale_a, scale_b = ops.unstack(
        ops.take(row_scales, indices, axis=0)[..., None], 2, axis=1
    )
    scaled = ops.where(ops.isfinite(updates), updates, 0.0) * scale_a * scale_b
    # `floor` keeps float64 (Keras' round computes it in float32 on JAX
    # and PyTorch).
    sums = backend.scatter_add_rows(
        ops.cast(backend.floor(scaled + 0.5), word), indices, num_rows
    )
    scale_a, scale_b = ops.unstack(row_scales[..., None], 2, axis=1)
    total = ops.cast(sums, dtype) / scale_a / scale_b
    return ops.where(finite[:, None], total, float("nan"))
