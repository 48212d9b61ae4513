"""The primitives whose fastest or exact form differs between backends.

Everything else in `keras_stn.ops` is written with `keras.ops`. Rows are
gathered and scatter-added along axis 0 of a 2-D table: `tf.gather` and
`tf.math.unsorted_segment_sum` on TensorFlow (no index wrapping, which
`keras.ops.take` adds), `keras.ops.take` / `keras.ops.segment_sum` elsewhere.
"""

import os

import keras
from keras import ops

# Set to "0" to run the samplers with TensorFlow's own kernels instead of
# op-level XLA (see `xla_compiled`); read when an op is traced.
XLA_SAMPLERS_ENV = "KERAS_STN_XLA_SAMPLERS"


def _is_tensorflow():
    return keras.backend.backend() == "tensorflow"


def gather_rows(table, indices):
    """Returns `table[indices]`.

    Args:
        table: tensor `(N, D)`.
        indices: int32 tensor `(M,)`, each in `[0, N)`.
    Returns:
        Tensor `(M, D)`.
    """
    if _is_tensorflow():
        import tensorflow as tf

        return tf.gather(table, indices)
    return ops.take(table, indices, axis=0)


def gather_pixels(images, rows, cols):
    """Returns `images[b, rows[b, ...], cols[b, ...]]` for each sample b.

    On TensorFlow this is `tf.gather_nd(..., batch_dims=1)`, which XLA
    compiles well even when the indices are computed in the same cluster (a
    flat `tf.gather` on fused index arithmetic ran 30x slower on CPU).

    Args:
        images: tensor `(B, H, W, D)`.
        rows, cols: int32 tensors `(B, ...)`, in `[0, H)` and `[0, W)`.
    Returns:
        Tensor `(B, ..., D)`.
    """
    if _is_tensorflow():
        return _tf_gather_pixels(images, rows, cols)
    batch, height, width, depth = ops.shape(images)
    table = ops.reshape(images, (-1, depth))
    index = _flat_index(rows, cols, height, width)
    values = ops.take(table, ops.reshape(index, (-1,)), axis=0)
    return ops.reshape(values, (*ops.shape(rows), depth))


def _flat_index(rows, cols, height, width):
    """Row of `(b, rows, cols)` in the `(B * H * W, D)` view of images."""
    batch = ops.shape(rows)[0]
    shape = (-1,) + (1,) * (len(rows.shape) - 1)
    offsets = ops.reshape(ops.arange(batch, dtype="int32"), shape)
    return (offsets * height + rows) * width + cols


def _tf_gather_pixels(images, rows, cols):
    import tensorflow as tf

    @tf.custom_gradient
    def _gather(images):
        values = tf.gather_nd(images, tf.stack([rows, cols], -1), batch_dims=1)

        def _gather_pixels_grad(upstream):
            """The transpose of the gather: one flat segment sum (XLA
            compiles it faster than the scatter of gather_nd's gradient)."""
            shape = tf.shape(images)
            index = _flat_index(rows, cols, shape[1], shape[2])
            depth = shape[3]
            summed = tf.math.unsorted_segment_sum(
                tf.reshape(upstream, (-1, depth)),
                tf.reshape(index, (-1,)),
                shape[0] * shape[1] * shape[2],
            )
            return tf.reshape(summed, shape)

        return values, _gather_pixels_grad

    return _gather(images)


# Up to this depth the transpose of `gather_quads` is one segment sum over
# the four taps' rows (tap-major); deeper, four scatter-adds in a row, so
# that only one tap's `(N, D)` updates are alive at a time (at D=64 one
# segment sum held 4 x 26 MB and took the sampler's peak memory 10 % over
# the autodiff twin's). Measured under XLA on a 2-core CPU, images
# gradient, 56x56 -> 56x56, batch 32: the segment sum takes 0.39x the time
# of point-major rows at D=4, 0.72x at 16 and 0.95x at 32; 0.73x for cub.
TAP_MAJOR_MAX_DEPTH = 16


def gather_quads(images, row, col):
    """Returns the 2x2 blocks of pixels with north-west corner `(row, col)`.

    Args:
        images: tensor `(B, H, W, D)`.
        row, col: int32 tensors `(B, ...)`, in `[0, H - 1)` and
            `[0, W - 1)`.
    Returns:
        Tensor `(B, ..., 4, D)`: the pixels at `(row, col)`, `(row, col +
        1)`, `(row + 1, col)` and `(row + 1, col + 1)`.
    """
    rows = ops.stack([row, row, row + 1, row + 1], axis=-1)
    cols = ops.stack([col, col + 1, col, col + 1], axis=-1)
    depth = images.shape[-1]
    if not _is_tensorflow() or depth is None:
        return gather_pixels(images, rows, cols)
    import tensorflow as tf

    @tf.custom_gradient
    def _gather(images):
        values = tf.gather_nd(images, tf.stack([rows, cols], -1), batch_dims=1)

        def _gather_quads_grad(upstream):
            """The taps' updates tap by tap (tap-major): the index of each
            tap is the corner's plus a constant, and XLA:CPU writes arrays
            with a trailing axis of 4 (point-major rows) several times
            slower than four plain ones."""
            shape = tf.shape(images)
            num_rows = shape[0] * shape[1] * shape[2]
            corner = tf.reshape(
                _flat_index(row, col, shape[1], shape[2]), (-1,)
            )
            offsets = (0, 1, shape[2], shape[2] + 1)
            updates = [
                tf.reshape(upstream[..., k, :], (-1, depth)) for k in range(4)
            ]
            if depth <= TAP_MAJOR_MAX_DEPTH:
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


def scatter_add_rows(updates, indices, num_rows):
    """Returns a `(num_rows, D)` tensor with `updates[i]` added at `indices[i]`.

    Args:
        updates: tensor `(M, D)`.
        indices: int32 tensor `(M,)`, each in `[0, num_rows)`.
        num_rows: int or scalar int tensor.
    Returns:
        Tensor `(num_rows, D)`; rows no index names are zero.
    """
    if _is_tensorflow():
        import tensorflow as tf

        return tf.math.unsorted_segment_sum(updates, indices, num_rows)
    return ops.segment_sum(updates, indices, num_segments=num_rows)


def cos_sin(angle):
    """Returns `(cos(angle), sin(angle))` in the dtype of `angle`.

    Keras' JAX `cos`/`sin` compute float64 input in float32; jax.numpy's
    keep it.
    """
    if keras.backend.backend() == "jax":
        import jax.numpy as jnp

        return jnp.cos(angle), jnp.sin(angle)
    return ops.cos(angle), ops.sin(angle)


_COMPILED = {}


def xla_compiled(key, fn):
    """Returns `fn(images, grid)` as XLA kernels on TensorFlow.

    The forward pass, the gradient w.r.t. `grid` and the gradient w.r.t.
    `images` become three `tf.function(jit_compile=True)` functions behind
    one `tf.custom_gradient`. A model that is not compiled as a whole (Keras'
    `jit_compile=False`, eager code) still gets compiled samplers (2.6x
    faster forward+backward on CPU than TensorFlow's own kernels), and a
    gradient nobody uses is pruned as a whole function (the image gradient,
    a scatter, when the transformer sits on the input). Inside an
    XLA-compiled graph the functions are inlined. Other backends compile
    whole steps themselves: there `fn` is returned unchanged.

    Setting the environment variable `KERAS_STN_XLA_SAMPLERS=0` returns
    `fn` unchanged on TensorFlow too.

    Args:
        key: hashable, names `fn` and its configuration for the cache.
        fn: differentiable function `(images, grid) -> outputs`.
    Returns:
        A function with the signature of `fn`.
    """
    if not _is_tensorflow() or os.environ.get(XLA_SAMPLERS_ENV) == "0":
        return fn
    if key in _COMPILED:
        return _COMPILED[key]
    import tensorflow as tf

    forward = tf.function(fn, jit_compile=True)

    def _gradient_of(watched):
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

    images_gradient, grid_gradient = _gradient_of(0), _gradient_of(1)

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
