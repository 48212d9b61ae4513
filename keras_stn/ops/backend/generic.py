"""The primitives written with `keras.ops`: every backend's fallback.

Rows are gathered and scatter-added along axis 0 of a 2-D table
(`keras.ops.take` / `keras.ops.segment_sum`); a backend module of this
package replaces the ones its framework does faster or more exactly.
"""

from keras import ops

from keras_stn.ops.backend import indexing

# Keras' PyTorch custom gradient takes one output (`gathers` then stacks
# the taps it would return as a tuple).
CUSTOM_GRADIENT_SINGLE_OUTPUT = False
# Whether a custom gradient's forward pass runs untracked (its values are
# constants to the gradient function, so second derivatives need them
# recomputed).
CUSTOM_GRADIENT_FORWARD_UNTRACKED = False


def gather_pixels(images, rows, cols):
    """Returns `images[b, rows[b, ...], cols[b, ...]]` for each sample b.

    Args:
        images: tensor `(B, H, W, D)`.
        rows, cols: int32 tensors `(B, ...)`, in `[0, H)` and `[0, W)`.
    Returns:
        Tensor `(B, ..., D)`; its gradient w.r.t. `images` is a
        scatter-add.
    """
    _, height, width, depth = ops.shape(images)
    table = ops.reshape(images, (-1, depth))
    index = indexing.flat_index(rows, cols, height, width)
    values = ops.take(table, ops.reshape(index, (-1,)), axis=0)
    return ops.reshape(values, (*ops.shape(rows), depth))


def gather_quads(images, rows, cols):
    """The taps `rows`, `cols` `(B, ..., 4)` of 2x2 blocks: `(B, ..., 4,
    D)` (`gathers.gather_quads`)."""
    return gather_pixels(images, rows, cols)


def gather_taps(images, index, rows, cols):
    """`K` taps per point as `K` tensors `(B, ..., D)`.

    Args:
        images: tensor `(B, H, W, D)`.
        index: int32 `(B, K, ...)`, `flat_index` of `rows`, `cols`.
        rows, cols: int32 `(B, K, ...)`.
    """
    depth = ops.shape(images)[-1]
    table = ops.reshape(images, (-1, depth))
    return [
        ops.take(table, index[:, k], axis=0) for k in range(rows.shape[1])
    ]


def scatter_add_rows(updates, indices, num_rows):
    """Returns a `(num_rows, D)` tensor with `updates[i]` added at
    `indices[i]`.

    Args:
        updates: tensor `(M, D)`.
        indices: int32 tensor `(M,)`, each in `[0, num_rows)`.
        num_rows: int or scalar int tensor.
    Returns:
        Tensor `(num_rows, D)`; rows no index names are zero.
    """
    return ops.segment_sum(updates, indices, num_segments=num_rows)


def on_gpu(x):
    """Whether tensor `x` lives on (or, traced, will run on) a GPU."""
    return False


def floor(x):
    """`floor(x)` in the dtype of `x`."""
    return ops.floor(x)


def cos_sin(angle):
    """Returns `(cos(angle), sin(angle))` in the dtype of `angle`."""
    return ops.cos(angle), ops.sin(angle)


def matmul(x1, x2):
    """`x1 @ x2` in the inputs' (common) dtype."""
    return ops.matmul(x1, x2)


def assert_dims(x, sizes, message, name):
    """Returns `x`; checks, when it runs, the dimensions not known yet.

    The static shape checks see `None` only for the dimensions a traced
    TensorFlow graph leaves open; JAX and PyTorch trace with concrete
    shapes, so here there is nothing left to check (see
    `tensorflow_ops.assert_dims`).
    """
    return x


def xla_compiled(
    key, fn, forward_fn=None, grid_fn=None, images_gradient=None
):
    """Returns `fn(images, grid)` unchanged: JAX and PyTorch compile whole
    steps themselves (`tensorflow_ops.xla_compiled` compiles samplers by
    themselves on TensorFlow)."""
    return fn
