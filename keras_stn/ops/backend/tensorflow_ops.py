"""TensorFlow's primitives: everything keras_stn does with TensorFlow
itself, in one module.

Imported only on the TensorFlow backend, when first needed (by the kernel
seam, `keras_stn.ops.backend`), so that the package imports and runs
without TensorFlow installed on the JAX and PyTorch backends. Here:

- gather and scatter with custom gradients that XLA:CPU compiles well
  (`gather_pixels`, `gather_quads`, `scatter_add_rows`);
- op-level XLA (`xla_compiled`): each sampler as its own compiled forward
  and gradients, for models that are not compiled as a whole;
- the depthwise form of a convolution's input gradient
  (`conv2d_depthwise_input_grad`), used by `DepthwiseGradConv2D`;
- run-time shape checks for the dimensions a traced graph leaves unknown
  (`assert_dims`).
"""

import functools

import tensorflow as tf

from keras_stn import config
from keras_stn.ops import tuning
from keras_stn.ops.backend import indexing


def gather_pixels(images, rows, cols):
    """`images[b, rows[b, ...], cols[b, ...]]` as `tf.gather_nd(...,
    batch_dims=1)`, which XLA compiles well even when the indices are
    computed in the same cluster (a flat `tf.gather` of fused index
    arithmetic is many times slower on CPU), with the transpose written as
    one flat segment sum (XLA compiles it faster than the scatter of
    gather_nd's own gradient).

    Args:
        images: tensor `(B, H, W, D)`.
        rows, cols: int32 tensors `(B, ...)`, in `[0, H)` and `[0, W)`.
    Returns:
        Tensor `(B, ..., D)`.
    """

    @tf.custom_gradient
    def _gather(images):
        values = tf.gather_nd(images, tf.stack([rows, cols], -1), batch_dims=1)

        def _gather_pixels_grad(upstream):
            """d images: the upstream rows summed onto the pixels read."""
            shape = tf.shape(images)
            index = indexing.flat_index(rows, cols, shape[1], shape[2])
            summed = tf.math.unsorted_segment_sum(
                tf.reshape(upstream, (-1, shape[3])),
                tf.reshape(index, (-1,)),
                shape[0] * shape[1] * shape[2],
            )
            return tf.reshape(summed, shape)

        return values, _gather_pixels_grad

    return _gather(images)


def gather_quads(images, rows, cols):
    """The 2x2 blocks given as four taps' `rows`, `cols` `(B, ..., 4)`
    (`ops.gathers.gather_quads`), with a tap-major transpose: the index of
    each tap is the corner's plus a constant, and XLA:CPU writes arrays
    with a trailing axis of 4 (point-major rows) several times slower than
    four plain ones. Deeper than `tuning.TAP_MAJOR_MAX_DEPTH`, four
    scatter-adds in a row.

    Args:
        images: tensor `(B, H, W, D)`, `D` static.
        rows, cols: int32 tensors `(B, ..., 4)`: the taps nw, ne, sw, se.
    Returns:
        Tensor `(B, ..., 4, D)`.
    """
    depth = images.shape[-1]
    if depth is None:
        return gather_pixels(images, rows, cols)

    @tf.custom_gradient
    def _gather(images):
        values = tf.gather_nd(images, tf.stack([rows, cols], -1), batch_dims=1)

        def _gather_quads_grad(upstream):
            """d images: each tap's upstream rows summed onto its pixels."""
            shape = tf.shape(images)
            num_rows = shape[0] * shape[1] * shape[2]
            corner = indexing.flat_index(
                rows[..., 0], cols[..., 0], shape[1], shape[2]
            )
            corner = tf.reshape(corner, (-1,))
            offsets = (0, 1, shape[2], shape[2] + 1)
            updates = [
                tf.reshape(upstream[..., k, :], (-1, depth)) for k in range(4)
            ]
            if depth <= tuning.TAP_MAJOR_MAX_DEPTH:
                summed = tf.math.unsorted_segment_sum(
                    tf.concat(updates, 0),
                    tf.concat([corner + offset for offset in offsets], 0),
                    num_rows,
                )
            else:
                summed = tf.zeros((num_rows, depth), images.dtype)
                for offset, tap_updates in zip(offsets, updates):
                    summed = tf.tensor_scatter_nd_add(
                        summed, (corner + offset)[:, None], tap_updates
                    )
            return tf.reshape(summed, shape)

        return values, _gather_quads_grad

    return _gather(images)


def gather_taps(images, index, rows, cols):
    """`K` taps per point (`generic.gather_taps`), each a `gather_pixels`
    of `(b, row, col)` indices, which XLA:CPU compiles well."""
    return [
        gather_pixels(images, rows[:, k], cols[:, k])
        for k in range(rows.shape[1])
    ]


def scatter_add_rows(updates, indices, num_rows):
    """`tf.math.unsorted_segment_sum` (no index wrapping, unlike
    `keras.ops.segment_sum`'s checks)."""
    return tf.math.unsorted_segment_sum(updates, indices, num_rows)


_COMPILED = {}


def xla_compiled(
    key, fn, forward_fn=None, grid_fn=None, images_gradient=None
):
    """Returns `fn(images, grid)` as three XLA-compiled functions.

    The forward pass, the gradient w.r.t. `grid` and the gradient w.r.t.
    `images` become three `tf.function(jit_compile=True)` functions behind
    one `tf.custom_gradient`. A model that is not compiled as a whole (Keras'
    `jit_compile=False`, eager code) still gets compiled samplers, and a
    gradient nobody uses is pruned as a whole function (the image gradient,
    a scatter, when the transformer sits on the input). Inside an
    XLA-compiled graph the functions are inlined.

    Args:
        key: hashable, names `fn` and its configuration for the cache.
        fn: differentiable function `(images, grid) -> outputs`.
        forward_fn: optional function computing the same outputs as `fn`
            (to float rounding), used for the forward pass only: the
            fastest form of a forward pass need not be the one with the
            fastest gradients.
        grid_fn: optional function computing the same outputs as `fn`,
            whose autodiff gives the gradient w.r.t. `grid`.
        images_gradient: optional function `(images, grid, upstream) ->`
            the gradient w.r.t. `images`, written directly (differentiable,
            for second derivatives); else the autodiff of `fn`.
    Returns:
        A function with the signature of `fn`; `fn` itself when
        `keras_stn.config.xla_samplers()` is off.
    """
    if not config.xla_samplers():
        return fn
    if key in _COMPILED:
        return _COMPILED[key]
    forward = tf.function(forward_fn or fn, jit_compile=True)

    def _gradient_of(watched, fn):
        @tf.function(jit_compile=True)
        def gradient(images, grid, upstream):
            sources = (images, grid)
            with tf.GradientTape() as tape:
                tape.watch(sources[watched])
                outputs = fn(images, grid)
            grad = tape.gradient(
                outputs, sources[watched], output_gradients=upstream
            )
            if grad is None:
                return tf.zeros_like(sources[watched])
            return grad

        return gradient

    grid_gradient = _gradient_of(1, grid_fn or fn)
    if images_gradient is None:
        images_gradient = _gradient_of(0, fn)
    else:
        images_gradient = tf.function(images_gradient, jit_compile=True)

    @tf.custom_gradient
    def compiled(images, grid):
        def _compiled_grad(upstream):
            """The two gradients, each its own compiled function."""
            return (
                images_gradient(images, grid, upstream),
                grid_gradient(images, grid, upstream),
            )

        return forward(images, grid), _compiled_grad

    _COMPILED[key] = compiled
    return compiled


@functools.cache
def has_gpu():
    """Whether TensorFlow sees a GPU (its conv kernels are cuDNN's there).
    Asked at every trace, and at every eager call of a grid: cached, as the
    logical devices are fixed once TensorFlow has started."""
    return bool(tf.config.list_logical_devices("GPU"))


def on_gpu(x):
    """Whether TensorFlow runs on a GPU (`has_gpu`)."""
    return has_gpu()


def _flipped(kernel):
    """`(kh, kw, C_in, F)` -> `(kh, kw, F, C_in)`, turned by 180 degrees:
    the adjoint's kernel, as depthwise filters with multiplier `C_in`."""
    return tf.transpose(kernel[::-1, ::-1], [0, 1, 3, 2])


def _padding(size, padding):
    """`(before, after)` padding of one axis of a stride-1 convolution."""
    if padding == "valid":
        return 0, 0
    return (size - 1) // 2, size - 1 - (size - 1) // 2


def _conv_grad(inputs, kernel, upstream, padding):
    """`(d inputs, d kernel)` of `conv2d_depthwise_input_grad`."""
    kh, kw, channels, filters = kernel.shape
    # d inputs = the correlation of `upstream` with the turned kernel,
    # padded so that it covers every input pixel: per filter, a
    # depthwise convolution into C_in maps, then a sum over filters.
    (top, bottom), (left, right) = _padding(kh, padding), _padding(kw, padding)
    padded = tf.pad(
        upstream,
        [[0, 0], [kh - 1 - top, kh - 1 - bottom]]
        + [[kw - 1 - left, kw - 1 - right], [0, 0]],
    )
    per_filter = tf.nn.depthwise_conv2d(
        padded, _flipped(kernel), [1, 1, 1, 1], "VALID"
    )
    shape = tf.shape(per_filter)
    d_inputs = tf.reduce_sum(
        tf.reshape(per_filter, tf.concat([shape[:3], [filters, channels]], 0)),
        axis=3,
    )
    d_kernel = tf.raw_ops.Conv2DBackpropFilter(
        input=inputs,
        filter_sizes=tf.shape(kernel),
        out_backprop=upstream,
        strides=[1, 1, 1, 1],
        padding=padding.upper(),
    )
    return d_inputs, d_kernel


def _make_conv(padding):
    @tf.custom_gradient
    def conv(inputs, kernel):
        outputs = tf.nn.conv2d(inputs, kernel, 1, padding.upper())
        return outputs, lambda upstream: _conv_grad(
            inputs, kernel, upstream, padding
        )

    return conv


_CONVS = {padding: _make_conv(padding) for padding in ("same", "valid")}


def conv2d_depthwise_input_grad(inputs, kernel, padding):
    """Stride-1, undilated `conv2d` whose input gradient is a depthwise
    convolution of the upstream gradient with the turned kernel, summed
    over filters (TensorFlow's CPU `Conv2DBackpropInput` is slow for a few
    input channels). Its hand-written gradient is made of differentiable
    ops, so second derivatives work.

    Args:
        inputs: `(B, H, W, C_in)`.
        kernel: `(kh, kw, C_in, F)`.
        padding: `"same"` or `"valid"`.
    Returns:
        `(B, H_out, W_out, F)`, exactly `tf.nn.conv2d`'s value.
    """
    inputs = tf.convert_to_tensor(inputs)
    kernel = tf.cast(tf.convert_to_tensor(kernel), inputs.dtype)
    return _CONVS[padding](inputs, kernel)


def assert_dims(x, sizes, message, name):
    """Returns `x`, asserting when the graph runs that each dimension
    `axis` of `x` equals `sizes[axis]` (int or scalar int tensor).

    The shape checks of `keras_stn.ops` for dimensions that are `None` in
    a traced graph (`tf.function` with `None` dims), which would otherwise
    fail later in an unrelated reshape or compute the wrong thing. A
    failure is an `InvalidArgumentError` with `message` and the shape
    received. XLA has no assertions: under `jit_compile=True` the check is
    dropped, as every `tf.debugging` check is.

    Args:
        x: tensor.
        sizes: dict `{axis: size}`.
        message: str, the expected form, e.g. "`grid` must have shape
            (B, H_out, W_out, 2)."
        name: str, the argument's name, for the shape received.
    Returns:
        `x`, behind the assertions (`x` itself when every dimension is
        static and every size an int: the static checks saw those).
    """
    sizes = {
        axis: size
        for axis, size in sizes.items()
        if x.shape[axis] is None or not isinstance(size, int)
    }
    if not sizes:
        return x
    shape = tf.shape(x)
    checks = []
    for axis, size in sizes.items():
        checks.append(
            tf.debugging.Assert(
                tf.equal(shape[axis], tf.cast(size, shape.dtype)),
                [
                    f"{message} Received: {name}.shape=",
                    shape,
                    f"(dimension {axis} must be",
                    size,
                    ")",
                ],
            )
        )
    with tf.control_dependencies(checks):
        return tf.identity(x)
