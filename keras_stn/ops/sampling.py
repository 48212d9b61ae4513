"""Bilinear sampling with a hand-written gradient, and the sampler dispatch.

Convention: images are channels-last `(B, H, W, C)`; a grid is
`(B, H_out, W_out, 2)` holding `(x, y)` in `[-1, 1]` (see `coordinates`);
`padding_mode` and `align_corners` mean what they mean in PyTorch's
`grid_sample`, whose values and gradients this op reproduces.
"""

from keras import ops

from keras_stn.ops import _backend, _checks, coordinates


def check_sample_args(images, grid, padding_mode, align_corners=False):
    """Validates the arguments every sampler shares; returns tensors."""
    _checks.check_choice(
        padding_mode, coordinates.PADDING_MODES, "padding_mode"
    )
    images = _checks.as_float_tensor(images, "images")
    grid = _checks.as_float_tensor(grid, "grid")
    _checks.check_rank(images, 4, "images", "(B, H, W, C)")
    _checks.check_rank(grid, 4, "grid", "(B, H_out, W_out, 2)")
    _checks.check_last_dim(grid, 2, "grid", "(B, H_out, W_out, 2)")
    _checks.check_same_batch(images, grid, "images", "grid")
    for axis, name in ((1, "H"), (2, "W")):
        if images.shape[axis] == 0:
            raise ValueError(
                f"`images` must have a non-empty {name} axis. Received: "
                f"images.shape={tuple(images.shape)}"
            )
    return images, grid


def dims(x):
    """Returns the shape of `x`, static ints where known, else tensors."""
    dynamic = ops.shape(x)
    return [s if s is not None else dynamic[i] for i, s in enumerate(x.shape)]


def sample_points(grid, height, width, padding_mode, align_corners):
    """Everything about the four bilinear taps that depends on the grid only.

    Non-finite points (NaN or inf in `x` or `y`, or an index that overflows)
    get zero weights and zero derivatives: they sample zeros and pass no
    gradient, and the rest of the batch is untouched.

    Args:
        grid: float tensor `(B, H_out, W_out, 2)`.
        height, width: ints (or scalar tensors), the input's `H` and `W`.
    Returns:
        A dict with `index` (int32 `(B, H_out, W_out)`, the north-west tap's
        row in the corner table of `corner_table`), `weights`
        (`(B, H_out, W_out, 4)` for taps nw, ne, sw, se), the fractional
        parts `fx`, `fy` and the chain-rule factors `dx`, `dy`
        (d index / d grid coordinate, padding and validity included), all
        `(B, H_out, W_out)`.
    """
    dtype = grid.dtype
    ix, x_scale = coordinates.unnormalize(grid[..., 0], width, align_corners)
    iy, y_scale = coordinates.unnormalize(grid[..., 1], height, align_corners)
    valid = ops.logical_and(ops.isfinite(ix), ops.isfinite(iy))
    zeros = ops.zeros_like(ix)
    ix = ops.where(valid, ix, zeros)
    iy = ops.where(valid, iy, zeros)
    ix, x_pad = coordinates.apply_padding(
        ix, width, padding_mode, align_corners
    )
    iy, y_pad = coordinates.apply_padding(
        iy, height, padding_mode, align_corners
    )
    w = ops.cast(width, dtype)
    h = ops.cast(height, dtype)
    # Past one pixel outside, every tap reads the zero frame: clamp there
    # (the derivative is zero) so that indices stay in the table.
    x_in = ops.logical_and(ix >= -1.0, ix < w)
    y_in = ops.logical_and(iy >= -1.0, iy < h)
    ix = ops.clip(ix, -1.0, w)
    iy = ops.clip(iy, -1.0, h)
    x0 = ops.minimum(ops.floor(ix), w - 1.0)
    y0 = ops.minimum(ops.floor(iy), h - 1.0)
    fx = ix - x0
    fy = iy - y0
    valid_f = ops.cast(valid, dtype)
    wx0, wx1 = (1.0 - fx) * valid_f, fx * valid_f
    wy0 = 1.0 - fy
    weights = ops.stack([wx0 * wy0, wx1 * wy0, wx0 * fy, wx1 * fy], axis=-1)
    dx = ops.where(ops.logical_and(valid, x_in), x_pad * x_scale, zeros)
    dy = ops.where(ops.logical_and(valid, y_in), y_pad * y_scale, zeros)
    batch = ops.shape(grid)[0]
    stride = (height + 1) * (width + 1)
    offsets = ops.reshape(ops.arange(batch, dtype="int32") * stride, (-1, 1, 1))
    row = ops.cast(y0, "int32") + 1
    col = ops.cast(x0, "int32") + 1
    index = offsets + row * (width + 1) + col
    return {
        "index": index,
        "weights": weights,
        "fx": fx,
        "fy": fy,
        "dx": dx,
        "dy": dy,
        "valid": valid_f,
    }


def corner_table(images):
    """Stacks each pixel with its east, south and south-east neighbours.

    One gather of `4C` values then fetches all four bilinear taps: a quarter
    of the index work of four gathers, which dominates for few channels.
    The image is framed by one pixel of zeros first (taps outside it).

    Args:
        images: float tensor `(B, H, W, C)`.
    Returns:
        Tensor `(B * (H + 1) * (W + 1), 4 * C)`, channel blocks nw, ne, sw, se.
    """
    padded = ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    table = ops.concatenate(
        [
            padded[:, :-1, :-1],
            padded[:, :-1, 1:],
            padded[:, 1:, :-1],
            padded[:, 1:, 1:],
        ],
        axis=-1,
    )
    channels = images.shape[-1] or ops.shape(images)[-1]
    return ops.reshape(table, (-1, 4 * channels))


def fold_corner_table(table_grad, batch, height, width, channels):
    """The adjoint of `corner_table`: sums the four blocks back onto pixels.

    Args:
        table_grad: tensor `(B * (H + 1) * (W + 1), 4 * C)`.
    Returns:
        Tensor `(B, H, W, C)`.
    """
    blocks = ops.reshape(
        table_grad, (batch, height + 1, width + 1, 4, channels)
    )
    nw, ne, sw, se = (blocks[:, :, :, k] for k in range(4))
    no = [0, 0]
    framed = (
        ops.pad(nw, [no, [0, 1], [0, 1], no])
        + ops.pad(ne, [no, [0, 1], [1, 0], no])
        + ops.pad(sw, [no, [1, 0], [0, 1], no])
        + ops.pad(se, [no, [1, 0], [1, 0], no])
    )
    return framed[:, 1:-1, 1:-1]


def _gather_taps(images, index):
    """Returns the four taps `(B, H_out, W_out, 4, C)` at `index`."""
    table = corner_table(images)
    taps = _backend.gather_rows(table, ops.reshape(index, (-1,)))
    channels = images.shape[-1] or ops.shape(images)[-1]
    return ops.reshape(taps, (*ops.shape(index), 4, channels))


def _bilinear_sample_core(images, grid, padding_mode, align_corners):
    """Bilinear sampling of float32/64 `images` at `grid`, custom gradient."""

    @ops.custom_gradient
    def _sample(images, grid):
        batch, height, width, channels = dims(images)
        points = sample_points(grid, height, width, padding_mode, align_corners)
        taps = _gather_taps(images, points["index"])
        output = ops.sum(taps * points["weights"][..., None], axis=-2)

        def _bilinear_sample_grad(*args, upstream=None):
            """Gradients of the bilinear kernel.

            With f = fx, g = fy and taps v_nw, v_ne, v_sw, v_se, the output
            is (1-f)(1-g) v_nw + f(1-g) v_ne + (1-f) g v_sw + f g v_se, so
              d out / d v_tap = its weight (scatter-added onto the pixels),
              d out / d ix = (1-g)(v_ne - v_nw) + g (v_se - v_sw),
              d out / d iy = (1-f)(v_sw - v_nw) + f (v_se - v_ne),
            and d ix / d x is `dx` (scale, padding and validity). Everything
            is recomputed from `images` and `grid` with differentiable ops,
            so second derivatives flow; an image gradient nobody uses is
            pruned from the graph.
            """
            upstream = args[0] if upstream is None else upstream
            upstream = ops.cast(upstream, images.dtype)
            pts = sample_points(
                grid, height, width, padding_mode, align_corners
            )
            taps = _gather_taps(images, pts["index"])
            nw, ne, sw, se = (taps[..., k, :] for k in range(4))
            fx = pts["fx"][..., None]
            fy = pts["fy"][..., None]
            d_ix = (1.0 - fy) * (ne - nw) + fy * (se - sw)
            d_iy = (1.0 - fx) * (sw - nw) + fx * (se - ne)
            grad_x = ops.sum(upstream * d_ix, axis=-1) * pts["dx"]
            grad_y = ops.sum(upstream * d_iy, axis=-1) * pts["dy"]
            grad_grid = ops.stack([grad_x, grad_y], axis=-1)
            updates = upstream[..., None, :] * pts["weights"][..., None]
            table_grad = _backend.scatter_add_rows(
                ops.reshape(updates, (-1, 4 * channels)),
                ops.reshape(pts["index"], (-1,)),
                batch * (height + 1) * (width + 1),
            )
            grad_images = fold_corner_table(
                table_grad, batch, height, width, channels
            )
            return grad_images, grad_grid

        return output, _bilinear_sample_grad

    return _sample(images, grid)


def bilinear_sample(images, grid, padding_mode="zeros", align_corners=False):
    """Samples `images` at normalised `(x, y)` points with a bilinear kernel.

    The paper's sampler (Jaderberg et al., eq. 5): each output pixel is the
    bilinear interpolation of the four input pixels around its point. Values
    and gradients equal PyTorch's `grid_sample(mode="bilinear")`. The
    gradient is hand-written: its image part is one scatter-add, its grid
    part reuses the same four taps.
    Convention: grid is `(x, y)` in `[-1, 1]`, channels-last; `padding_mode`
    and `align_corners` as in PyTorch.

    Non-finite grid points sample zeros and get zero gradients; the other
    points of the batch are unaffected. float16 and bfloat16 inputs are
    computed in float32 and returned in the input dtype.

    Args:
        images: float tensor `(B, H, W, C)`.
        grid: float tensor `(B, H_out, W_out, 2)`.
        padding_mode: str, `"zeros"`, `"border"` or `"reflection"`: what a
            point outside the image reads. Defaults to `"zeros"`.
        align_corners: bool. Defaults to `False`.
    Returns:
        Tensor `(B, H_out, W_out, C)` with the dtype of `images`.
    Raises:
        ValueError: wrong ranks, a grid not ending in 2, batch sizes that
            differ, non-float images or an unknown `padding_mode`.

    Example:
    >>> import numpy as np
    >>> images = np.arange(4.0, dtype="float32").reshape(1, 2, 2, 1)
    >>> grid = np.array([[[[0.0, 0.0]]]], dtype="float32")  # the centre
    >>> float(bilinear_sample(images, grid)[0, 0, 0, 0])
    1.5
    """
    images, grid = check_sample_args(images, grid, padding_mode)
    out_dtype = images.dtype
    dtype = _checks.compute_dtype(images.dtype, grid.dtype)
    output = _bilinear_sample_core(
        ops.cast(images, dtype),
        ops.cast(grid, dtype),
        padding_mode,
        bool(align_corners),
    )
    return ops.cast(output, out_dtype)
