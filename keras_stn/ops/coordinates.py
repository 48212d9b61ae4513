"""From normalised grid coordinates to pixel indices, with padding modes.

Convention (PyTorch's `grid_sample`): a coordinate `x` in `[-1, 1]` spans the
image width. With `align_corners=True`, -1 and 1 are the centres of the first
and last pixels: `i = (x + 1) / 2 * (W - 1)`. With `align_corners=False`,
they are the outer edges of those pixels: `i = ((x + 1) * W - 1) / 2`.
"""

from keras import ops

from keras_stn.ops import backend

PADDING_MODES = ("zeros", "border", "reflection")


def unnormalize(coord, size, align_corners):
    """Maps normalised coordinates to pixel indices.

    Args:
        coord: float tensor of any shape, normalised coordinates.
        size: int or scalar tensor, the number of pixels along the axis.
        align_corners: bool, see the module docstring.
    Returns:
        `(index, d_index_d_coord)`: float tensor like `coord` and a scalar.
    """
    size = ops.cast(size, coord.dtype)
    if align_corners:
        scale = (size - 1.0) / 2.0
        return (coord + 1.0) * scale, scale
    scale = size / 2.0
    return ((coord + 1.0) * size - 1.0) / 2.0, scale


def axis_indices(grid, sizes, align_corners, clamp_infinite=False):
    """Unnormalises each axis of a grid to indices, zeroing non-finite
    points.

    Args:
        grid: float tensor `(..., N)`, the last axis in the order of
            `sizes` (`(x, y)` or `(x, y, z)`).
        sizes: N ints or scalar tensors, the input's size along each grid
            axis (`(W, H)`, or `(W, H, D)` for volumes).
        align_corners: bool.
        clamp_infinite: bool. `False`: a point with an index that is not
            finite is invalid. `True` (border padding): only NaN is
            invalid; an infinite index (an infinite point, or one whose
            index overflows) becomes the finite index one pixel past that
            border, which border padding clips to the border: PyTorch's
            `grid_sample` clips infinite indices the same way, in 2-D and
            3-D.
    Returns:
        `(indices, valid, scales)`: N float tensors `grid.shape[:-1]` (0
        where the point is invalid), the bool mask of valid points and the
        N scalars d index / d coordinate.
    """
    indices, scales = [], []
    for axis, size in enumerate(sizes):
        index, scale = unnormalize(grid[..., axis], size, align_corners)
        indices.append(index)
        scales.append(scale)
    test = ops.isnan if clamp_infinite else ops.isfinite
    checks = [test(index) for index in indices]
    valid = checks[0]
    for check in checks[1:]:
        valid = (
            ops.logical_or(valid, check)
            if clamp_infinite
            else ops.logical_and(valid, check)
        )
    if clamp_infinite:
        valid = ops.logical_not(valid)  # no axis is NaN
    zeros = ops.zeros_like(indices[0])
    indices = [ops.where(valid, index, zeros) for index in indices]
    if clamp_infinite:
        indices = [
            ops.clip(index, -1.0, ops.cast(size, index.dtype))
            for index, size in zip(indices, sizes)
        ]
    return indices, valid, scales


def pixel_indices(grid, height, width, align_corners, clamp_infinite=False):
    """`axis_indices` of a 2-D grid `(B, H_out, W_out, 2)` of `(x, y)`.

    Returns:
        `(ix, iy, valid, x_scale, y_scale)`: indices `(B, H_out, W_out)`
        (0 where the point is invalid), the bool mask of valid points, and
        the scalars d index / d coordinate.
    """
    (ix, iy), valid, (x_scale, y_scale) = axis_indices(
        grid, (width, height), align_corners, clamp_infinite
    )
    return ix, iy, valid, x_scale, y_scale


def _reflect(index, size, align_corners):
    """Reflects `index` into the image, as PyTorch's `reflect_coordinates`.

    The reflection axis is the centre of the border pixels
    (`align_corners=True`) or their outer edges (`False`). Returns the
    reflected index and its derivative, +1 or -1 (0 for a 1-pixel axis with
    `align_corners=True`, where every index reflects to 0).
    """
    low = 0.0 if align_corners else -0.5
    span = size - 1.0 if align_corners else size
    shifted = index - low
    sign = ops.where(shifted < 0, -1.0, 1.0)
    shifted = ops.abs(shifted)
    safe_span = ops.maximum(span, 1.0)
    flips = backend.floor(shifted / safe_span)
    extra = ops.mod(shifted, safe_span)
    even = ops.equal(ops.mod(flips, 2.0), 0.0)
    reflected = ops.where(even, extra + low, span - extra + low)
    derivative = ops.where(even, sign, -sign)
    degenerate = span <= 0
    reflected = ops.where(degenerate, ops.zeros_like(index), reflected)
    derivative = ops.where(degenerate, ops.zeros_like(index), derivative)
    return ops.cast(reflected, index.dtype), ops.cast(derivative, index.dtype)


def apply_padding(index, size, padding_mode, align_corners):
    """Applies `padding_mode` to pixel indices.

    `"zeros"` leaves them as they are (taps outside read zero). `"border"`
    clips them to `[0, size - 1]`; `"reflection"` reflects them first. As in
    PyTorch, the derivative of the clip is 0 at and beyond the border.

    Args:
        index: float tensor, pixel indices.
        size: int or scalar tensor.
        padding_mode: one of `PADDING_MODES`.
        align_corners: bool.
    Returns:
        `(index, d_out_d_index)`, both float tensors like `index`.
    """
    derivative = ops.ones_like(index)
    if padding_mode == "zeros":
        return index, derivative
    size = ops.cast(size, index.dtype)
    if padding_mode == "reflection":
        index, derivative = _reflect(index, size, align_corners)
    inside = ops.logical_and(index > 0, index < size - 1.0)
    derivative = ops.where(inside, derivative, ops.zeros_like(derivative))
    return ops.clip(index, 0.0, size - 1.0), derivative
