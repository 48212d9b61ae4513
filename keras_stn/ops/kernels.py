"""Nearest-neighbour and bicubic sampling, PyTorch's `grid_sample` modes.

Convention: as `sampling.bilinear_sample` (channels-last images, grid
`(B, H_out, W_out, 2)` of `(x, y)` in `[-1, 1]`, PyTorch's `padding_mode`
and `align_corners`).
"""

from keras import ops

from keras_stn import config
from keras_stn.ops import _backend
from keras_stn.utils import argument_validation
from keras_stn.ops import coordinates
from keras_stn.ops import sampling

# The cubic convolution constant PyTorch's bicubic mode uses.
CUBIC_A = -0.75


def _frame(images):
    """Frames images with one pixel of zeros: `(B, H + 2, W + 2, C)`."""
    return ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])


def _read_framed(framed, rows, cols, height, width, deterministic=False):
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
    return _backend.gather_pixels(framed, rows + 1, cols + 1, deterministic)


def _zero_link(grid):
    """Zeros `(B, 1, 1, 1)` whose gradient w.r.t. `grid` is zero: added to
    an output, it makes tapes return a zero grid gradient, not None."""

    @ops.custom_gradient
    def _link(grid):
        def _zero_link_grad(*args, upstream=None):
            """d grid = 0."""
            return ops.zeros_like(grid)

        return ops.zeros_like(grid[:, :1, :1, :1]), _zero_link_grad

    return _link(grid)


def _nearest_core(images, grid, padding_mode, align_corners, deterministic):
    """Nearest sampling of float32/64 inputs. The gradient w.r.t. `images`
    is the gather's scatter-add; the grid only chooses indices, so its
    gradient is zero."""
    link = _zero_link(grid)
    grid = ops.stop_gradient(grid)
    _, height, width, _ = sampling.dims(images)
    ix, iy, valid, _, _ = coordinates.pixel_indices(
        grid,
        height,
        width,
        align_corners,
        clamp_infinite=padding_mode == "border",
    )
    if padding_mode != "zeros":
        ix, _ = coordinates.apply_padding(
            ix, width, padding_mode, align_corners
        )
        iy, _ = coordinates.apply_padding(
            iy, height, padding_mode, align_corners
        )
    # Invalid points (NaN; infinite ones but under border padding) read
    # the zero frame.
    iy = ops.where(valid, iy, -2.0 * ops.ones_like(iy))
    # Round half to even, as PyTorch's nearbyint.
    w, h = ops.cast(width, ix.dtype), ops.cast(height, iy.dtype)
    cols = ops.cast(ops.clip(ops.round(ix), -1.0, w), "int32")
    rows = ops.cast(ops.clip(ops.round(iy), -1.0, h), "int32")
    taps = _read_framed(
        _frame(images), rows, cols, height, width, deterministic
    )
    return taps + link


def nearest_sample(
    images, grid, padding_mode="zeros", align_corners=False, deterministic=None
):
    """Samples `images` at the pixel nearest each grid point.

    Volumes `(B, D, H, W, C)` go to `volumes.nearest_sample_3d`.

    Values equal PyTorch's `grid_sample(mode="nearest")` (ties round to
    even). The gradient w.r.t. `images` is the scatter-add of the upstream
    gradient onto the chosen pixels; w.r.t. `grid` it is zero (the output is
    piecewise constant in the grid), so a localization network learns
    nothing through this kernel: use it for inference or labels.
    Convention: as `bilinear_sample`. NaN points read zeros, and so do
    infinite ones except under `"border"` padding, where they read the
    border (as in PyTorch).

    Args:
        images: float tensor `(B, H, W, C)`.
        grid: float tensor `(B, H_out, W_out, 2)`.
        padding_mode: `"zeros"`, `"border"` or `"reflection"`.
        align_corners: bool. Defaults to `False`.
        deterministic: bool or None, as in `bilinear_sample`.
    Returns:
        Tensor `(B, H_out, W_out, C)` with the dtype of `images`.
    Raises:
        ValueError: as `bilinear_sample`.
    """
    if sampling.is_volume(images):
        from keras_stn.ops import volumes

        return volumes.nearest_sample_3d(
            images, grid, padding_mode, align_corners, deterministic
        )
    images, grid = sampling.check_sample_args(
        images, grid, padding_mode, align_corners
    )
    deterministic = config.resolve_deterministic(deterministic)
    dtype = argument_validation.compute_dtype(images.dtype, grid.dtype)
    align_corners = bool(align_corners)
    core = _backend.xla_compiled(
        ("nearest", padding_mode, align_corners, deterministic),
        lambda i, g: _nearest_core(
            i, g, padding_mode, align_corners, deterministic
        ),
    )
    output = core(ops.cast(images, dtype), ops.cast(grid, dtype))
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


def bicubic_sample(
    images, grid, padding_mode="zeros", align_corners=False, deterministic=None
):
    """Samples `images` with PyTorch's bicubic kernel (cubic convolution,
    `A = -0.75`, 4x4 taps).

    Values and gradients equal PyTorch's `grid_sample(mode="bicubic")`: as
    there, the padding mode applies to each tap's index, and the output can
    overshoot the input's range. Differentiable w.r.t. `images` and `grid`
    by automatic differentiation of the kernel weights (the taps' indices
    are piecewise constant). Non-finite points read zeros, gradient zero
    (PyTorch's answer there is NaN, border padding included).
    Convention: as `bilinear_sample`.

    Args:
        images: float tensor `(B, H, W, C)`.
        grid: float tensor `(B, H_out, W_out, 2)`.
        padding_mode: `"zeros"`, `"border"` or `"reflection"`.
        align_corners: bool. Defaults to `False`.
        deterministic: bool or None, as in `bilinear_sample`.
    Returns:
        Tensor `(B, H_out, W_out, C)` with the dtype of `images`.
    Raises:
        ValueError: as `bilinear_sample`.
    """
    images, grid = sampling.check_sample_args(
        images, grid, padding_mode, align_corners
    )
    deterministic = config.resolve_deterministic(deterministic)
    dtype = argument_validation.compute_dtype(images.dtype, grid.dtype)
    align_corners = bool(align_corners)
    core = _backend.xla_compiled(
        ("bicubic", padding_mode, align_corners, deterministic),
        lambda i, g: _bicubic_core(
            i, g, padding_mode, align_corners, deterministic
        ),
    )
    output = core(ops.cast(images, dtype), ops.cast(grid, dtype))
    return ops.cast(output, images.dtype)


def _bicubic_core(images, grid, padding_mode, align_corners, deterministic):
    """Bicubic sampling of float32/64 inputs, differentiable by autodiff."""
    dtype = images.dtype
    _, height, width, channels = sampling.dims(images)
    ix, iy, valid, _, _ = coordinates.pixel_indices(
        grid, height, width, align_corners
    )
    if padding_mode != "reflection":
        # Beyond these every tap is outside (zeros) or on the border (border):
        # clamping changes no value and keeps indices small.
        ix = ops.clip(ix, -3.0, ops.cast(width, dtype) + 2.0)
        iy = ops.clip(iy, -3.0, ops.cast(height, dtype) + 2.0)
    x0 = ops.stop_gradient(_backend.floor(ix))
    y0 = ops.stop_gradient(_backend.floor(iy))
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
    framed = _frame(images)
    taps = ops.stack(
        [
            _read_framed(framed, r, c, height, width, deterministic)
            for r in rows
            for c in cols
        ],
        axis=-2,
    )
    weights = ops.stack([a * b for a in wy for b in wx], axis=-1)
    weights = weights * ops.cast(valid, dtype)[..., None]
    return ops.sum(taps * weights[..., None], axis=-2)
