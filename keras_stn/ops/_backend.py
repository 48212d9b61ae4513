"""The primitives whose fastest or exact form differs between backends.

Everything else in `keras_stn.ops` is written with `keras.ops`. Rows are
gathered and scatter-added along axis 0 of a 2-D table: on TensorFlow with
the custom-gradient forms of `keras_stn._tensorflow` (imported only there),
elsewhere with `keras.ops.take` / `keras.ops.segment_sum`.
"""

import keras
from keras import ops

from keras_stn import config


def is_tensorflow():
    """Whether Keras runs on TensorFlow (the only backend that needs it)."""
    return keras.backend.backend() == "tensorflow"


def is_torch():
    """Whether Keras runs on PyTorch."""
    return keras.backend.backend() == "torch"


def is_jax_on_cpu():
    """Whether Keras runs on JAX with a CPU as JAX's default device."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu"


def tensorflow():
    """`keras_stn._tensorflow`, imported on first use (TensorFlow only)."""
    from keras_stn import _tensorflow

    return _tensorflow


def gather_pixels(images, rows, cols, deterministic=False):
    """Returns `images[b, rows[b, ...], cols[b, ...]]` for each sample b.

    Args:
        images: tensor `(B, H, W, D)`.
        rows, cols: int32 tensors `(B, ...)`, in `[0, H)` and `[0, W)`.
        deterministic: bool, whether the gradient w.r.t. `images` is the
            bitwise-reproducible `deterministic_segment_sum`.
    Returns:
        Tensor `(B, ..., D)`.
    """
    if deterministic:
        return _deterministic_gather_pixels(images, rows, cols)
    if is_tensorflow():
        return tensorflow().gather_pixels(images, rows, cols)
    if is_jax_on_cpu():
        return _gather_pixels_jax(images, rows, cols)
    _, height, width, depth = ops.shape(images)
    table = ops.reshape(images, (-1, depth))
    index = flat_index(rows, cols, height, width)
    values = ops.take(table, ops.reshape(index, (-1,)), axis=0)
    return ops.reshape(values, (*ops.shape(rows), depth))


def _gather_pixels_jax(images, rows, cols):
    """`gather_pixels` as one XLA gather of `(b, row, col)` indices, like
    TensorFlow's `gather_nd(..., batch_dims=1)`: XLA:CPU compiles that
    several times faster than `take` of flat indices computed in the same
    program (measured with benchmarks/sampler_benchmark.py on a 2-core
    CPU). GPUs keep `take`, the form measured there. Its autodiff is a
    scatter-add."""
    import jax.numpy as jnp
    from jax import lax

    batch = jnp.arange(rows.shape[0], dtype=rows.dtype)
    batch = jnp.broadcast_to(
        batch.reshape((-1,) + (1,) * (rows.ndim - 1)), rows.shape
    )
    numbers = lax.GatherDimensionNumbers(
        offset_dims=(rows.ndim,),
        collapsed_slice_dims=(0, 1, 2),
        start_index_map=(0, 1, 2),
    )
    return lax.gather(
        images,
        jnp.stack([batch, rows, cols], axis=-1),
        numbers,
        (1, 1, 1, images.shape[-1]),
        mode="clip",
    )


def flat_index(rows, cols, height, width):
    """Row of `(b, rows, cols)` in the `(B * H * W, D)` view of images."""
    batch = ops.shape(rows)[0]
    shape = (-1,) + (1,) * (len(rows.shape) - 1)
    offsets = ops.reshape(ops.arange(batch, dtype="int32"), shape)
    return (offsets * height + rows) * width + cols


def gather_quads(images, row, col, deterministic=False):
    """Returns the 2x2 blocks of pixels with north-west corner `(row, col)`.

    Args:
        images: tensor `(B, H, W, D)`.
        row, col: int32 tensors `(B, ...)`, in `[0, H - 1)` and
            `[0, W - 1)`.
        deterministic: bool, as in `gather_pixels`.
    Returns:
        Tensor `(B, ..., 4, D)`: the pixels at `(row, col)`, `(row, col +
        1)`, `(row + 1, col)` and `(row + 1, col + 1)`.
    """
    rows = ops.stack([row, row, row + 1, row + 1], axis=-1)
    cols = ops.stack([col, col + 1, col, col + 1], axis=-1)
    if deterministic:
        return _deterministic_gather_pixels(images, rows, cols)
    if is_tensorflow() and images.shape[-1] is not None:
        return tensorflow().gather_quads(images, rows, cols)
    return gather_pixels(images, rows, cols)


def scatter_add_rows(updates, indices, num_rows):
    """Returns a `(num_rows, D)` tensor with `updates[i]` added at `indices[i]`.

    Args:
        updates: tensor `(M, D)`.
        indices: int32 tensor `(M,)`, each in `[0, num_rows)`.
        num_rows: int or scalar int tensor.
    Returns:
        Tensor `(num_rows, D)`; rows no index names are zero.
    """
    if is_tensorflow():
        return tensorflow().scatter_add_rows(updates, indices, num_rows)
    if is_torch():
        # Keras' torch segment_sum sums in float32 whatever the dtype,
        # which rounds float64 and int32 sums.
        import torch

        out = torch.zeros(
            (num_rows, *updates.shape[1:]),
            dtype=updates.dtype,
            device=updates.device,
        )
        return out.index_add_(0, indices.long(), updates)
    return ops.segment_sum(updates, indices, num_segments=num_rows)


def _deterministic_gather_pixels(images, rows, cols):
    """`gather_pixels` whose gradient is `deterministic_segment_sum`."""
    shape = ops.shape(images)
    height, width, depth = shape[1], shape[2], shape[3]
    index = ops.reshape(flat_index(rows, cols, height, width), (-1,))

    # The index is an input with no gradient, not an array the function
    # closes over (JAX cannot lower that under `jax.vjp(jax.jit(f))`).
    @ops.custom_gradient
    def _gather(table, index):
        def _deterministic_gather_grad(*args, upstream=None):
            """d table: the upstream rows summed exactly onto the rows
            read."""
            upstream = args[0] if upstream is None else upstream
            return deterministic_segment_sum(
                upstream, index, ops.shape(table)[0]
            ), None

        return ops.take(table, index, axis=0), _deterministic_gather_grad

    values = _gather(ops.reshape(images, (-1, depth)), index)
    return ops.reshape(values, (*ops.shape(rows), depth))


def gather_tap_major(images, rows, cols, deterministic=False):
    """`gather_pixels` of `K` taps per point, as `K` gathers forward and one
    scatter-add backward.

    Each tap is its own gather and its own output, so that a consumer reads
    the taps as plain arrays (XLA fuses the gathers into it); their
    transpose is one scatter-add (or `deterministic_segment_sum`) of all
    `K` taps' rows, not `K` of them.

    Args:
        images: tensor `(B, H, W, D)`.
        rows, cols: int32 tensors `(B, K, ...)`, in `[0, H)` and `[0, W)`.
        deterministic: bool, as in `gather_pixels`.
    Returns:
        A list of `K` tensors `(B, ..., D)`.
    """
    shape = ops.shape(images)
    height, width, depth = shape[1], shape[2], shape[3]
    index = flat_index(rows, cols, height, width)
    num_taps = rows.shape[1]
    sum_rows = deterministic_segment_sum if deterministic else scatter_add_rows

    # Everything the custom gradients use is an input, not an array they
    # close over: JAX cannot lower that under `jax.vjp(jax.jit(f))`.
    def taps_of(images, index, rows, cols):
        if is_tensorflow() or is_jax_on_cpu():
            # Gathers of `(b, row, col)`, which XLA:CPU compiles well.
            return [
                gather_pixels(images, rows[:, k], cols[:, k])
                for k in range(num_taps)
            ]
        table = ops.reshape(images, (-1, depth))
        return [ops.take(table, index[:, k], axis=0) for k in range(num_taps)]

    def scatter(images, index, upstream):
        """d images: every tap's upstream rows summed onto the pixels
        read, in one scatter-add."""
        summed = sum_rows(
            ops.reshape(upstream, (-1, depth)),
            ops.reshape(index, (-1,)),
            ops.shape(images)[0] * height * width,
        )
        return ops.reshape(summed, ops.shape(images))

    if is_torch():
        # Keras' PyTorch custom gradient takes one output: the taps are
        # stacked (PyTorch runs eagerly; there is nothing to fuse).
        @ops.custom_gradient
        def _stacked(images, index):
            def _gather_tap_major_grad(*args, upstream=None):
                upstream = args[0] if upstream is None else upstream
                return scatter(images, index, upstream), None

            taps = taps_of(images, index, rows, cols)
            return ops.stack(taps, axis=1), _gather_tap_major_grad

        stacked = _stacked(images, index)
        return [stacked[:, k] for k in range(num_taps)]

    @ops.custom_gradient
    def _gather(images, index, rows, cols):
        def _gather_tap_major_grad(*args, upstream=None):
            # One cotangent per tap: JAX passes them as one tuple,
            # TensorFlow as arguments.
            upstreams = args if upstream is None else upstream
            if len(upstreams) == 1:
                upstreams = upstreams[0]
            upstream = ops.stack(list(upstreams), axis=1)
            return scatter(images, index, upstream), None, None, None

        taps = taps_of(images, index, rows, cols)
        return tuple(taps), _gather_tap_major_grad

    return list(_gather(images, index, rows, cols))


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
    counts = scatter_add_rows(ops.ones_like(indices), indices, num_rows)
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
    half = floor(shift / 2.0)
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
    sums = scatter_add_rows(
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
        whole = floor(scaled)
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


def on_gpu(x):
    """Whether tensor `x` lives on (or, traced, will run on) a GPU."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    if backend == "torch":
        return getattr(getattr(x, "device", None), "type", "") == "cuda"
    if backend == "tensorflow":
        return tensorflow().has_gpu()
    return False


def floor(x):
    """`floor(x)` in the dtype of `x`.

    Keras' JAX and PyTorch `floor` compute float64 in float32, which rounds
    an index just below an integer up onto it (into the next bilinear
    cell); jax.numpy's and torch's keep float64.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.floor(x)
    if backend == "torch":
        import torch

        return torch.floor(x)
    return ops.floor(x)


def cos_sin(angle):
    """Returns `(cos(angle), sin(angle))` in the dtype of `angle`.

    Keras' JAX `cos`/`sin` compute float64 input in float32; jax.numpy's
    keep it.
    """
    if keras.backend.backend() == "jax":
        import jax.numpy as jnp

        return jnp.cos(angle), jnp.sin(angle)
    return ops.cos(angle), ops.sin(angle)


def assert_dims(x, sizes, message, name):
    """Returns `x`; checks, when it runs, the dimensions not known yet.

    The static shape checks (`argument_validation`) see `None` for the
    dimensions a traced TensorFlow graph leaves open (`tf.function` with
    `None` dims). Those dimensions are checked here when the graph runs:
    each `axis` of `x` must equal `sizes[axis]` (an int, or a scalar int
    tensor such as another input's batch size). JAX and PyTorch trace with
    concrete shapes, where the static checks already saw every dimension.

    Args:
        x: tensor.
        sizes: dict `{axis: size}`; dimensions that are static with an int
            size were checked statically and are skipped.
        message: str, the expected form, as the static check words it.
        name: str, the argument's name.
    Returns:
        `x` (on TensorFlow, behind the run-time assertions).
    """
    if not is_tensorflow():
        return x
    open_sizes = {
        axis: size
        for axis, size in sizes.items()
        if x.shape[axis] is None or not isinstance(size, int)
    }
    if not open_sizes:
        return x
    return tensorflow().assert_dims(x, open_sizes, message, name)


def matmul(x1, x2):
    """`x1 @ x2` in the inputs' (common) dtype.

    Keras' PyTorch `matmul` computes float64 inputs in float32 (its result
    type of two torch dtypes is float32), so there it is `torch.matmul`.
    """
    if keras.backend.backend() == "torch":
        import torch

        return torch.matmul(x1, x2)
    return ops.matmul(x1, x2)


def xla_compiled(
    key, fn, forward_fn=None, grid_fn=None, images_gradient=None
):
    """Returns `fn(images, grid)` as its own XLA kernels on TensorFlow.

    On TensorFlow, with `keras_stn.config.xla_samplers()` on (the default),
    the forward pass and the two gradients become compiled functions
    (`keras_stn._tensorflow.xla_compiled`): a model that is not compiled as
    a whole still gets compiled samplers. Other backends compile whole steps
    themselves: there `fn` is returned unchanged, as it is on TensorFlow
    with the switch off.

    Args:
        key: hashable, names `fn` and its configuration for the cache.
        fn: differentiable function `(images, grid) -> outputs`.
        forward_fn: optional, the same outputs by a faster forward pass
            whose gradients are slower; used for the forward pass when the
            sampler compiles itself (TensorFlow), ignored elsewhere.
        grid_fn: optional, the same outputs by the form whose autodiff is
            the faster gradient w.r.t. `grid` (TensorFlow only).
        images_gradient: optional function `(images, grid, upstream) ->`
            the gradient w.r.t. `images`, written directly (TensorFlow
            only).
    Returns:
        A function with the signature of `fn`.
    """
    if not is_tensorflow() or not config.xla_samplers():
        return fn
    return tensorflow().xla_compiled(
        key, fn, forward_fn, grid_fn, images_gradient
    )
