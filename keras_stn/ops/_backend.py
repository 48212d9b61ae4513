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
