"""The primitives whose fastest or exact form differs between backends.

Everything else in `keras_stn.ops` is written with `keras.ops`. Rows are
gathered and scatter-added along axis 0 of a 2-D table: `tf.gather` and
`tf.math.unsorted_segment_sum` on TensorFlow (no index wrapping, which
`keras.ops.take` adds), `keras.ops.take` / `keras.ops.segment_sum` elsewhere.
"""

import keras
from keras import ops


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
