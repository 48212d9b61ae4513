"""Nearest-neighbour and bicubic sampling, PyTorch's `grid_sample` modes.

Convention: as `sampling.bilinear_sample` (channels-last images, grid
`(B, H_out, W_out, 2)` of `(x, y)` in `[-1, 1]`, PyTorch's `padding_mode`
and `align_corners`).
"""

from keras import ops

from keras_stn.ops import _backend
from keras_stn.ops import _checks
from keras_stn.ops import coordinates
from keras_stn.ops import sampling

# The cubic convolution constant PyTorch's bicubic mode uses.
CUBIC_A = -0.75


def _frame_table(images):
    """Frames images with one pixel of zeros, flattened to `(N, C)` rows."""
    padded = ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    channels = images.shape[-1] or ops.shape(images)[-1]
    return ops.reshape(padded, (-1, channels))


def _frame_index(rows, cols, height, width):
    """Row of `_frame_table` for integer pixel `(rows, cols)` `(B, ...)`.

    Indices outside `[0, H) x [0, W)` read the zero frame.
    """
    rows = ops.clip(rows, -1, height)
    cols = ops.clip(cols, -1, width)
    cols = ops.where(ops.logical_or(rows < 0, rows >= height), -1, cols)
    rows = ops.where(ops.logical_or(cols < 0, cols >= width), -1, rows)
    batch = ops.shape(rows)[0]
    stride = (height + 2) * (width + 2)
    shape = (-1,) + (1,) * (len(rows.shape) - 1)
    offsets = ops.reshape(ops.arange(batch, dtype="int32") * stride, shape)
    return offsets + (rows + 1) * (width + 2) + cols + 1


def _nearest_core(images, grid, padding_mode, align_corners):
    @ops.custom_gradient
    def _sample(images, grid):
        batch, height, width, channels = sampling.dims(images)
        ix, _ = coordinates.unnormalize(grid[..., 0], width, align_corners)
        iy, _ = coordinates.unnormalize(grid[..., 1], height, align_corners)
        valid = ops.logical_and(ops.isfinite(ix), ops.isfinite(iy))
        ix = ops.where(valid, ix, -2.0 * ops.ones_like(ix))
        iy = ops.where(valid, iy, -2.0 * ops.ones_like(iy))
        if padding_mode != "zeros":
            ix, _ = coordinates.apply_padding(
                ix, width, padding_mode, align_corners
            )
            iy, _ = coordinates.apply_padding(
                iy, height, padding_mode, align_corners
            )
            # Non-finite points read zeros in every mode.
            iy = ops.where(valid, iy, -2.0 * ops.ones_like(iy))
        # Round half to even, as PyTorch's nearbyint.
        cols = ops.cast(ops.clip(ops.round(ix), -1.0, width), "int32")
        rows = ops.cast(ops.clip(ops.round(iy), -1.0, height), "int32")
        index = ops.reshape(_frame_index(rows, cols, height, width), (-1,))
        values = _backend.gather_rows(_frame_table(images), index)
        output = ops.reshape(values, (*ops.shape(grid)[:-1], channels))

        def _nearest_sample_grad(*args, upstream=None):
            """d out / d image pixel = 1 at the nearest pixel (scatter-add);
            d out / d grid = 0 almost everywhere (piecewise constant)."""
            upstream = args[0] if upstream is None else upstream
            table_grad = _backend.scatter_add_rows(
                ops.reshape(upstream, (-1, channels)),
                index,
                batch * (height + 2) * (width + 2),
            )
            framed = ops.reshape(
                table_grad, (batch, height + 2, width + 2, channels)
            )
            return framed[:, 1:-1, 1:-1], ops.zeros_like(grid)

        return output, _nearest_sample_grad

    return _sample(images, grid)


def nearest_sample(images, grid, padding_mode="zeros", align_corners=False):
    """Samples `images` at the pixel nearest each grid point.

    Values equal PyTorch's `grid_sample(mode="nearest")` (ties round to
    even). The gradient w.r.t. `images` is the scatter-add of the upstream
    gradient onto the chosen pixels; w.r.t. `grid` it is zero (the output is
    piecewise constant in the grid), so a localization network learns
    nothing through this kernel: use it for inference or labels.
    Convention: as `bilinear_sample`. Non-finite points read zeros.

    Args:
        images: float tensor `(B, H, W, C)`.
        grid: float tensor `(B, H_out, W_out, 2)`.
        padding_mode: `"zeros"`, `"border"` or `"reflection"`.
        align_corners: bool. Defaults to `False`.
    Returns:
        Tensor `(B, H_out, W_out, C)` with the dtype of `images`.
    Raises:
        ValueError: as `bilinear_sample`.
    """
    images, grid = sampling.check_sample_args(images, grid, padding_mode)
    dtype = _checks.compute_dtype(images.dtype, grid.dtype)
    output = _nearest_core(
        ops.cast(images, dtype),
        ops.cast(grid, dtype),
        padding_mode,
        bool(align_corners),
    )
    return ops.cast(output, images.dtype)


def _cubic_weights(t):
    """The four cubic-convolution weights for taps at -1, 0, 1, 2 of `t`."""
    a = CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a

    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


def _tap_index(tap, size, padding_mode, align_corners):
    """Integer pixel index of an integer-valued float tap, padding applied."""
    if padding_mode != "zeros":
        tap, _ = coordinates.apply_padding(
            tap, size, padding_mode, align_corners
        )
    return ops.cast(ops.round(tap), "int32")


def bicubic_sample(images, grid, padding_mode="zeros", align_corners=False):
    """Samples `images` with PyTorch's bicubic kernel (cubic convolution,
    `A = -0.75`, 4x4 taps).

    Values and gradients equal PyTorch's `grid_sample(mode="bicubic")`: as
    there, the padding mode applies to each tap's index, and the output can
    overshoot the input's range. Differentiable w.r.t. `images` and `grid`
    by automatic differentiation of the kernel weights (the taps' indices
    are piecewise constant). Non-finite points read zeros, gradient zero.
    Convention: as `bilinear_sample`.

    Args:
        images: float tensor `(B, H, W, C)`.
        grid: float tensor `(B, H_out, W_out, 2)`.
        padding_mode: `"zeros"`, `"border"` or `"reflection"`.
        align_corners: bool. Defaults to `False`.
    Returns:
        Tensor `(B, H_out, W_out, C)` with the dtype of `images`.
    Raises:
        ValueError: as `bilinear_sample`.
    """
    images, grid = sampling.check_sample_args(images, grid, padding_mode)
    out_dtype = images.dtype
    dtype = _checks.compute_dtype(images.dtype, grid.dtype)
    images, grid = ops.cast(images, dtype), ops.cast(grid, dtype)
    _, height, width, channels = sampling.dims(images)
    ix, _ = coordinates.unnormalize(grid[..., 0], width, align_corners)
    iy, _ = coordinates.unnormalize(grid[..., 1], height, align_corners)
    valid = ops.logical_and(ops.isfinite(ix), ops.isfinite(iy))
    ix = ops.where(valid, ix, ops.zeros_like(ix))
    iy = ops.where(valid, iy, ops.zeros_like(iy))
    if padding_mode != "reflection":
        # Beyond these every tap is outside (zeros) or on the border (border):
        # clamping changes no value and keeps indices small.
        ix = ops.clip(ix, -3.0, ops.cast(width, dtype) + 2.0)
        iy = ops.clip(iy, -3.0, ops.cast(height, dtype) + 2.0)
    x0 = ops.stop_gradient(ops.floor(ix))
    y0 = ops.stop_gradient(ops.floor(iy))
    wx = _cubic_weights(ix - x0)
    wy = _cubic_weights(iy - y0)
    cols = [
        _tap_index(x0 + (k - 1.0), width, padding_mode, align_corners)
        for k in range(4)
    ]
    rows = [
        _tap_index(y0 + (k - 1.0), height, padding_mode, align_corners)
        for k in range(4)
    ]
    index = ops.stack(
        [_frame_index(r, c, height, width) for r in rows for c in cols],
        axis=-1,
    )
    weights = ops.stack([a * b for a in wy for b in wx], axis=-1)
    weights = weights * ops.cast(valid, dtype)[..., None]
    taps = _backend.gather_rows(_frame_table(images), ops.reshape(index, (-1,)))
    taps = ops.reshape(taps, (*ops.shape(index), channels))
    output = ops.sum(taps * weights[..., None], axis=-2)
    return ops.cast(output, out_dtype)
