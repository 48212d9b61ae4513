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


def tensorflow():
    """`keras_stn._tensorflow`, imported on first use (TensorFlow only)."""
    from keras_stn import _tensorflow

    return _tensorflow


def gather_pixels(images, rows, cols):
    """Returns `images[b, rows[b, ...], cols[b, ...]]` for each sample b.

    Args:
        images: tensor `(B, H, W, D)`.
        rows, cols: int32 tensors `(B, ...)`, in `[0, H)` and `[0, W)`.
    Returns:
        Tensor `(B, ..., D)`.
    """
    if is_tensorflow():
        return tensorflow().gather_pixels(images, rows, cols)
    _, height, width, depth = ops.shape(images)
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
    return ops.segment_sum(updates, indices, num_segments=num_rows)


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


def xla_compiled(key, fn):
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
    Returns:
        A function with the signature of `fn`.
    """
    if not is_tensorflow() or not config.xla_samplers():
        return fn
    return tensorflow().xla_compiled(key, fn)
