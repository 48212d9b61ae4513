"""Tap gathers of images and their transposes, on the kernel seam's
primitives (`keras_stn.ops.backend`).

Each gather is differentiable w.r.t. the images: its gradient is the
scatter-add of the upstream rows onto the pixels read, or, with
`deterministic=True`, the exact integer sum of
`deterministic.deterministic_segment_sum` (the same bits on every call).
"""

from keras import ops

from keras_stn.ops import backend
from keras_stn.ops import deterministic as deterministic_lib
from keras_stn.ops.backend import indexing
from keras_stn.utils import shapes


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
    return backend.gather_pixels(images, rows, cols)


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
    return backend.gather_quads(images, rows, cols)


def _deterministic_gather_pixels(images, rows, cols):
    """`gather_pixels` whose gradient is `deterministic_segment_sum`."""
    shape = ops.shape(images)
    height, width, depth = shape[1], shape[2], shape[3]
    index = ops.reshape(indexing.flat_index(rows, cols, height, width), (-1,))

    # The index is an input with no gradient, not an array the function
    # closes over (JAX cannot lower that under `jax.vjp(jax.jit(f))`).
    @ops.custom_gradient
    def _gather(table, index):
        def _deterministic_gather_grad(*args, upstream=None):
            """d table: the upstream rows summed exactly onto the rows
            read."""
            upstream = args[0] if upstream is None else upstream
            return deterministic_lib.deterministic_segment_sum(
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
    index = indexing.flat_index(rows, cols, height, width)
    num_taps = rows.shape[1]
    sum_rows = (
        deterministic_lib.deterministic_segment_sum
        if deterministic
        else backend.scatter_add_rows
    )

    def scatter(images, index, upstream):
        """d images: every tap's upstream rows summed onto the pixels
        read, in one scatter-add."""
        summed = sum_rows(
            ops.reshape(upstream, (-1, depth)),
            ops.reshape(index, (-1,)),
            ops.shape(images)[0] * height * width,
        )
        return ops.reshape(summed, ops.shape(images))

    # Everything the custom gradients use is an input, not an array they
    # close over: JAX cannot lower that under `jax.vjp(jax.jit(f))`.
    if backend.CUSTOM_GRADIENT_SINGLE_OUTPUT:
        # The taps are stacked into the one output (PyTorch runs eagerly;
        # there is nothing to fuse).
        @ops.custom_gradient
        def _stacked(images, index):
            def _gather_tap_major_grad(*args, upstream=None):
                upstream = args[0] if upstream is None else upstream
                return scatter(images, index, upstream), None

            taps = backend.gather_taps(images, index, rows, cols)
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

        taps = backend.gather_taps(images, index, rows, cols)
        return tuple(taps), _gather_tap_major_grad

    return list(_gather(images, index, rows, cols))


def frame(images):
    """Frames images with one pixel of zeros: `(B, H + 2, W + 2, C)`."""
    return ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])


def read_framed(framed, rows, cols, height, width, deterministic=False):
    """Pixels `(rows, cols)` `(B, ...)` of the image inside `framed`.

    Indices outside `[0, H) x [0, W)` read the zero frame. Differentiable
    w.r.t. `framed` (a scatter-add).
    """
    outside = ops.logical_or(
        ops.logical_or(rows < 0, rows >= height),
        ops.logical_or(cols < 0, cols >= width),
    )
    rows = ops.where(outside, -1, ops.clip(rows, -1, height))
    cols = ops.where(outside, -1, ops.clip(cols, -1, width))
    return gather_pixels(framed, rows + 1, cols + 1, deterministic)


def framed_slabs(volumes):
    """Frames volumes with one voxel of zeros and views them as 2-D images
    `(B, (D + 2) * (H + 2), W + 2, C)`: row `z * (H + 2) + y`, column `x`."""
    framed = ops.pad(volumes, [[0, 0], [1, 1], [1, 1], [1, 1], [0, 0]])
    _, depth, height, width, channels = shapes.dims(framed)
    return ops.reshape(framed, (-1, depth * height, width, channels))
