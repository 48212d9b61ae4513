"""Scatter-adds whose result is the same bits on every call.

Float atomics (the scatter-add on GPUs) add in an order that varies between
calls, and float addition is not associative; integer addition is. The
samplers' image gradients use this when `deterministic=True`.
"""

import keras
from keras import ops

from keras_stn.ops import backend

# Each update is split into `words` integers (`_split_words`) of up to
# `bits` bits less log2 of the number of updates its row receives, so that
# no word's row sum can overflow (one bit to spare for the carries): three
# int32 words for float32 and narrower, two int64 words for float64.
_WORD_BITS = {"int32": (30, 3), "int64": (62, 2)}


def deterministic_segment_sum(updates, indices, num_rows):
    """`scatter_add_rows` whose result is the same bits on every call.

    Float atomics add in an order that varies between calls on GPUs, and
    float addition is not associative. Integer addition is: each update is
    scaled by a power of two and split into integer words (its leading
    bits, the next ones, ...), each word is summed over the row, and the
    sums are carried and scaled back, so no order of the updates changes a
    bit of the result. Per row, the scale puts the row's largest
    `|update|` (over its columns) at `2**(b - 1)` with `b = 30 -
    ceil(log2 n)`, `n` the number of updates the row receives, so that no
    word's sum overflows; three int32 words keep `3 b` bits below the
    largest update (float64: two int64 words of `b = 62 - ceil(log2 n)`
    bits). Each update is then rounded by at most `2**(1 - 3 b)` times the
    row's largest, and the whole sum by `n` times that: at most half an ulp
    of the largest update while a row receives up to 65536 updates
    (`n * 2**(1 - 3 b) <= 2**-25`), however small the other updates are
    (float64: `n * 2**(1 - 2 b) <= 2**-75`). The integer sum is rounded to
    the dtype once (within an ulp). A row that receives a NaN
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
    # float16 and bfloat16 are scaled in float32: their range ends below
    # the words' 2**29.
    compute = "float64" if dtype == "float64" else "float32"
    word = "int64" if dtype == "float64" else "int32"
    word_bits, num_words = _WORD_BITS[word]
    updates = ops.cast(ops.stop_gradient(updates), compute)
    counts = backend.scatter_add_rows(ops.ones_like(indices), indices, num_rows)
    largest = ops.segment_max(
        ops.max(ops.abs(updates), axis=-1), indices, num_segments=num_rows
    )
    # Empty rows (whose maximum is the lowest float or -inf, by backend)
    # get a count of 1 and a largest update of 0, which keeps them zero.
    finite = ops.logical_or(counts == 0, ops.isfinite(largest))
    largest = ops.where(ops.logical_and(counts > 0, finite), largest, 0.0)
    counts = ops.cast(ops.maximum(counts, 1), compute)
    bits = word_bits - ops.ceil(ops.log2(counts))
    exponent = ops.where(
        largest > 0, ops.ceil(ops.log2(ops.maximum(largest, 2e-38))), 0.0
    )
    # The scale 2**(b - 1 - exponent) as two factors, each within
    # float32's range whatever the largest update's exponent, and the
    # words' radix 2**b.
    shift = bits - 1.0 - exponent
    half = backend.floor(shift / 2.0)
    row_factors = ops.stack(
        [
            ops.power(2.0, half),
            ops.power(2.0, shift - half),
            ops.power(2.0, bits),
        ],
        axis=-1,
    )
    scale_a, scale_b, radix = ops.unstack(
        ops.take(row_factors, indices, axis=0)[..., None], 3, axis=1
    )
    scaled = ops.where(ops.isfinite(updates), updates, 0.0) * scale_a * scale_b
    words = _split_words(scaled, radix, num_words, word)
    # One scatter of all words (M, K * D): one pass over the indices.
    sums = backend.scatter_add_rows(
        ops.reshape(ops.stack(words, axis=1), (ops.shape(words[0])[0], -1)),
        indices,
        num_rows,
    )
    sums = ops.reshape(sums, (-1, num_words, ops.shape(updates)[-1]))
    scale_a, scale_b, radix = ops.unstack(row_factors[..., None], 3, axis=1)
    total = _combine_words(
        [sums[:, k] for k in range(num_words)], radix, word, compute
    )
    total = ops.cast(total / scale_a / scale_b, dtype)
    return ops.where(finite[:, None], total, float("nan"))


def _split_words(scaled, radix, num_words, word):
    """`num_words` integer words whose sum `w_0 + w_1 / radix + w_2 /
    radix**2 + ...` is `scaled` rounded at its last word.

    Every step is exact in floating point: `floor` of a float is a float,
    its fraction `scaled - floor(scaled)` is exactly representable, and
    multiplying by the power of two `radix` is exact. `w_0` is
    `floor(scaled)` (`|w_0| <= radix / 2`), the middle words lie in
    `[0, radix)` and the last, rounded half up, in `[0, radix]`.

    Args:
        scaled: float tensor `(M, D)`, `|scaled| <= radix / 2`.
        radix: float tensor `(M, 1)`, a power of two.
        num_words: int >= 1.
        word: `"int32"` or `"int64"`.
    Returns:
        A list of `num_words` tensors `(M, D)` of dtype `word`.
    """
    words = []
    for k in range(num_words):
        whole = backend.floor(scaled)
        fraction = scaled - whole
        if k == num_words - 1:
            whole = whole + ops.cast(fraction >= 0.5, whole.dtype)
        words.append(ops.cast(whole, word))
        scaled = fraction * radix
    return words


def _combine_words(sums, radix, word, compute):
    """`sums[0] + sums[1] / radix + ...` rounded once to `compute`.

    The carries are propagated in integers (each lower sum into `[0,
    radix)`), the leading sum is rounded to a float and its rounding error,
    an exact integer, is added to the lower words' fraction before the
    one addition that rounds the result.

    Args:
        sums: list of integer tensors `(R, D)`: the row sums of the words.
        radix: float tensor `(R, 1)`, a power of two (`2**b`).
        word: the integer dtype of `sums`.
        compute: the float dtype of the result.
    Returns:
        Float tensor `(R, D)` of dtype `compute`.
    """
    integer_radix = ops.cast(radix, word)
    sums = list(sums)
    carry = None
    for k in range(len(sums) - 1, 0, -1):
        if carry is not None:
            sums[k] = sums[k] + carry
        carry = ops.floor_divide(sums[k], integer_radix)
        sums[k] = sums[k] - carry * integer_radix
    if carry is not None:
        sums[0] = sums[0] + carry
    fraction = ops.zeros_like(ops.cast(sums[0], compute))
    for k in range(len(sums) - 1, 0, -1):
        fraction = (fraction + ops.cast(sums[k], compute)) / radix
    head = ops.cast(sums[0], compute)
    error = ops.cast(sums[0] - ops.cast(head, word), compute)
    return head + (error + fraction)
