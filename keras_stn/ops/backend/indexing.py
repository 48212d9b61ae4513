"""Index arithmetic shared by every backend's gathers."""

from keras import ops


def flat_index(rows, cols, height, width):
    """Row of `(b, rows, cols)` in the `(B * H * W, D)` view of images.

    Args:
        rows, cols: int32 tensors `(B, ...)`.
        height, width: ints or scalar int tensors.
    """
    batch = ops.shape(rows)[0]
    shape = (-1,) + (1,) * (len(rows.shape) - 1)
    offsets = ops.reshape(ops.arange(batch, dtype="int32"), shape)
    return (offsets * height + rows) * width + cols
