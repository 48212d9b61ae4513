"""The bilinear kernel on 2-D images: PyTorch's `grid_sample(mode=
"bilinear")`, values and gradients, with hand-written gradients.

Convention: images are channels-last `(B, H, W, C)`; a grid is
`(B, H_out, W_out, 2)` holding `(x, y)` in `[-1, 1]` (see `coordinates`).
The taps are read in one of several layouts (`tuning.gather_layout`), all
with the same values and gradients; `plan` builds the sampler for one
call, which `keras_stn.ops.sampling` (the entry of every sampler)
compiles and runs.
"""

from keras import ops

from keras_stn import config
from keras_stn.ops import backend
from keras_stn.ops import coordinates
from keras_stn.ops import gathers
from keras_stn.ops import tuning
from keras_stn.ops.backend import indexing
from keras_stn.utils import shapes


def sample_points(grid, height, width, padding_mode, align_corners):
    """Everything about the four bilinear taps that depends on the grid only.

    Non-finite points (NaN in `x` or `y`; inf, or an index that overflows,
    except under border padding) get zero weights and zero derivatives:
    they sample zeros and pass no gradient, and the rest of the batch is
    untouched. Under border padding an infinite index reads the border, as
    in PyTorch, with a zero derivative along that axis.

    Args:
        grid: float tensor `(B, H_out, W_out, 2)`.
        height, width: ints (or scalar tensors), the input's `H` and `W`.
    Returns:
        A dict of `(B, H_out, W_out)` tensors: `row`, `col` (int32, the
        north-west tap in a frame of one zero pixel around the image, so in
        `[0, H]` and `[0, W]`), `fx`, `fy` (fractional parts), `dx`, `dy`
        (d index / d grid coordinate, padding and validity included) and
        `valid` (1.0 or 0.0); `weights` `(B, H_out, W_out, 4)` for the
        taps nw, ne, sw, se, and the same as a list, `tap_weights`.
    """
    dtype = grid.dtype
    ix, iy, valid, x_scale, y_scale = coordinates.pixel_indices(
        grid,
        height,
        width,
        align_corners,
        clamp_infinite=padding_mode == "border",
    )
    zeros = ops.zeros_like(ix)
    ix, x_pad = coordinates.apply_padding(
        ix, width, padding_mode, align_corners
    )
    iy, y_pad = coordinates.apply_padding(
        iy, height, padding_mode, align_corners
    )
    w = ops.cast(width, dtype)
    h = ops.cast(height, dtype)
    # Past one pixel outside, every tap reads the zero frame: clamp there
    # (the derivative is zero) so that indices stay in the frame.
    x_in = ops.logical_and(ix >= -1.0, ix < w)
    y_in = ops.logical_and(iy >= -1.0, iy < h)
    ix = ops.clip(ix, -1.0, w)
    iy = ops.clip(iy, -1.0, h)
    x0 = ops.minimum(backend.floor(ix), w - 1.0)
    y0 = ops.minimum(backend.floor(iy), h - 1.0)
    fx = ix - x0
    fy = iy - y0
    valid_f = ops.cast(valid, dtype)
    wx0, wx1 = (1.0 - fx) * valid_f, fx * valid_f
    wy0 = 1.0 - fy
    tap_weights = [wx0 * wy0, wx1 * wy0, wx0 * fy, wx1 * fy]
    weights = ops.stack(tap_weights, axis=-1)
    dx = ops.where(ops.logical_and(valid, x_in), x_pad * x_scale, zeros)
    dy = ops.where(ops.logical_and(valid, y_in), y_pad * y_scale, zeros)
    return {
        "row": ops.cast(y0, "int32") + 1,
        "col": ops.cast(x0, "int32") + 1,
        "weights": weights,
        "tap_weights": tap_weights,
        "fx": fx,
        "fy": fy,
        "dx": dx,
        "dy": dy,
        "valid": valid_f,
        # Whether any tap can lie in the image: a point further than one
        # pixel outside (or invalid) reads none, and its output is exactly
        # 0, as PyTorch's, even where the pixel it is clamped next to is
        # NaN or inf (a zero weight times NaN would be NaN).
        "reads": ops.logical_and(valid, ops.logical_and(x_in, y_in)),
    }


def _gather_corner_table(images, row, col, deterministic=False):
    """Four taps by one gather of `4C` values per point from a table that
    stacks each framed pixel with its east, south and south-east
    neighbours. A quarter of the index work of four gathers: the faster
    layout for few channels. Its gradient (autodiff of gather, pad and
    concatenate) is one scatter of `4C` rows, folded back onto the pixels.
    """
    framed = ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    table = ops.concatenate(
        [
            framed[:, :-1, :-1],
            framed[:, :-1, 1:],
            framed[:, 1:, :-1],
            framed[:, 1:, 1:],
        ],
        axis=-1,
    )
    taps = gathers.gather_pixels(table, row, col, deterministic)
    channels = images.shape[-1] or ops.shape(images)[-1]
    return ops.reshape(taps, (*ops.shape(row), 4, channels))


def _gather_framed_image(images, row, col, deterministic=False):
    """Four taps by one gather of `C` values at four indices per point from
    the zero-framed image: no table to build, the faster layout for many
    channels. Its gradient is one scatter of `4 * N` rows of `C`
    (`gathers.gather_quads`).
    """
    framed = ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    return gathers.gather_quads(framed, row, col, deterministic)


def _gather_clipped(images, row, col, deterministic=False):
    """Four taps read from the image itself at indices clipped into it,
    those outside zeroed: no framed copy of the image is written, and the
    gradient scatters straight onto its pixels (the faster layout on GPUs,
    where the copy costs as much as the gather).
    """
    _, height, width, _ = shapes.dims(images)
    corners = _clipped_corners(row, col, height, width)
    rows, cols, inside = (
        ops.stack([corner[k] for corner in corners], axis=-1)
        for k in range(3)
    )
    taps = gathers.gather_pixels(images, rows, cols, deterministic)
    # A select, not a product with the mask: a NaN or inf edge pixel read
    # at a clipped index must give 0 for the taps outside, as in PyTorch.
    return ops.where(inside[..., None], taps, ops.zeros_like(taps))


def _clipped_corners(row, col, height, width):
    """The four taps nw, ne, sw, se of each point in the image itself:
    a list of `(rows, cols, inside)`, the indices clipped into the image
    and a bool tensor of the taps that lie in it (the others read zero).

    Args:
        row, col: int32 `(B, H_out, W_out)`, the north-west tap in the
            zero-framed image (`sample_points`).
        height, width: ints (or scalar tensors), the image's `H` and `W`.
    """
    north, west = row - 1, col - 1  # back from the frame's coordinates
    corners = (
        (north, west),
        (north, west + 1),
        (north + 1, west),
        (north + 1, west + 1),
    )
    return [
        (
            ops.clip(rows, 0, height - 1),
            ops.clip(cols, 0, width - 1),
            ops.logical_and(
                ops.logical_and(rows >= 0, rows < height),
                ops.logical_and(cols >= 0, cols < width),
            ),
        )
        for rows, cols in corners
    ]


def _gather_split(images, row, col, deterministic=False):
    """The four taps read as `_gather_clipped` reads them, as a list of
    four `(B, H_out, W_out, C)` tensors: each output is then an
    elementwise sum of gathers, which XLA fuses into one loop, where a
    stacked `(..., 4, C)` array is written and reduced over its tap axis.
    Their transpose is one scatter-add (`gathers.gather_tap_major`). Taps
    outside the image are read at the clipped index, not zeroed:
    `_combine_split` gives them zero weight (zeroing `(..., C)` arrays
    here made XLA write each tap twice in a step, once as gathered and
    once masked).
    """
    _, height, width, _ = shapes.dims(images)
    corners = _clipped_corners(row, col, height, width)
    return gathers.gather_tap_major(
        images,
        ops.stack([rows for rows, _, _ in corners], axis=1),
        ops.stack([cols for _, cols, _ in corners], axis=1),
        deterministic,
    )


def images_gradient(
    images, grid, upstream, padding_mode, align_corners
):
    """The gradient of the bilinear sampler w.r.t. `images`, written as the
    transpose itself: each tap's upstream rows times its weight, all four
    taps' rows in one scatter-add onto the image (tap-major, indices
    clipped into the image, taps outside weighted zero).

    The autodiff of a gather layout writes a `(..., 4, C)` array of tap
    updates and, for the framed layouts, a framed gradient that is then
    cropped; this writes the updates once. Differentiable w.r.t. `grid`
    and `upstream` (second derivatives).

    Args:
        images: float tensor `(B, H, W, C)` (only its shape is read).
        grid: float tensor `(B, H_out, W_out, 2)`.
        upstream: float tensor `(B, H_out, W_out, C)`.
    Returns:
        Tensor `(B, H, W, C)`.
    """
    batch, height, width, channels = shapes.dims(images)
    points = sample_points(grid, height, width, padding_mode, align_corners)
    corners = _clipped_corners(points["row"], points["col"], height, width)
    updates, indices = [], []
    for (rows, cols, inside), weight in zip(corners, points["tap_weights"]):
        weight = ops.where(inside, weight, ops.zeros_like(weight))
        updates.append(
            ops.reshape(upstream * weight[..., None], (-1, channels))
        )
        index = indexing.flat_index(rows, cols, height, width)
        indices.append(ops.reshape(index, (-1,)))
    summed = backend.scatter_add_rows(
        ops.concatenate(updates, axis=0),
        ops.concatenate(indices, axis=0),
        batch * height * width,
    )
    return ops.reshape(summed, ops.shape(images))


def gather_taps(images, row, col, layout="framed", deterministic=False):
    """The four bilinear taps around each point.

    Args:
        images: float tensor `(B, H, W, C)`.
        row, col: int32 `(B, H_out, W_out)`, the north-west tap in the
            zero-framed image (`sample_points`).
        layout: `"framed"` or `"clipped"` (`config.set_gather_layout`;
            `"split"` is `_gather_split`, a list of taps).
        deterministic: bool, whether the gradient w.r.t. `images` is
            bitwise reproducible (`config.set_deterministic`).
    Returns:
        Tensor `(B, H_out, W_out, 4, C)`, taps nw, ne, sw, se; taps outside
        the image read zero. Differentiable w.r.t. `images` (a scatter-add).
    """
    if layout == "clipped":
        return _gather_clipped(images, row, col, deterministic)
    channels = images.shape[-1]
    if channels is not None and channels <= tuning.CORNER_TABLE_MAX_CHANNELS:
        return _gather_corner_table(images, row, col, deterministic)
    return _gather_framed_image(images, row, col, deterministic)


def _bilinear_sample_core(
    images,
    grid,
    padding_mode,
    align_corners,
    layout,
    deterministic,
    channel_slice=None,
):
    """Bilinear sampling of float32/64 `images` at `grid`.

    The taps are gathered by differentiable ops (their gradient w.r.t. the
    images is the scatter-add, pruned when nobody asks for it); the kernel
    that combines them has the hand-written gradient. `channel_slice`: the
    width `_sum_over_channels` adds slices of in the grid gradient (None:
    one reduction).
    """
    _, height, width, _ = shapes.dims(images)
    points = sample_points(grid, height, width, padding_mode, align_corners)
    if layout == "split":
        taps = _gather_split(
            images,
            ops.stop_gradient(points["row"]),
            ops.stop_gradient(points["col"]),
            deterministic,
        )
        return _combine_split(
            *taps, grid, padding_mode=padding_mode,
            align_corners=align_corners, size=(height, width),
        )
    taps = gather_taps(
        images,
        ops.stop_gradient(points["row"]),
        ops.stop_gradient(points["col"]),
        layout,
        deterministic,
    )

    @ops.custom_gradient
    def _combine(taps, grid):
        pts = sample_points(grid, height, width, padding_mode, align_corners)
        output = _where_read(
            pts, ops.sum(taps * pts["weights"][..., None], axis=-2)
        )

        def _bilinear_sample_grad(*args, upstream=None):
            """Gradients of the bilinear kernel.

            With f = fx, g = fy, the taps v_nw, v_ne, v_sw, v_se have
            weights (1-f)(1-g), f(1-g), (1-f)g and fg, so
              d out / d v_tap = its weight,
              d out / d ix = sum over taps of v_tap * d weight / d f,
                with d weight / d f = (-(1-g), 1-g, -g, g),
              d out / d iy = sum over taps of v_tap * d weight / d g,
                with d weight / d g = (-(1-f), -f, 1-f, f),
            and d ix / d x is `dx` (scale, padding and validity). Both are
            written as sums over the tap axis, which XLA emits as one loop
            per point (four sliced taps recompute the gather and the index
            arithmetic for each use, several times slower on CPU).
            Differentiable ops of `taps` and `grid`, so second derivatives
            flow.
            """
            upstream = args[0] if upstream is None else upstream
            upstream = ops.cast(upstream, taps.dtype)
            points = _gradient_points(
                pts, grid, height, width, padding_mode, align_corners
            )
            fx, fy = points["fx"], points["fy"]
            d_weights_dx = ops.stack(
                [fy - 1.0, 1.0 - fy, -fy, fy], axis=-1
            ) * ops.expand_dims(points["dx"], -1)
            d_weights_dy = ops.stack(
                [fx - 1.0, -fx, 1.0 - fx, fx], axis=-1
            ) * ops.expand_dims(points["dy"], -1)
            d_weights = ops.stack([d_weights_dx, d_weights_dy], axis=-1)
            tap_upstream = _where_read(
                points,
                _sum_over_channels(
                    taps * upstream[..., None, :], channel_slice
                ),
            )
            grad_grid = ops.sum(tap_upstream[..., None] * d_weights, axis=-2)
            grad_taps = upstream[..., None, :] * points["weights"][..., None]
            return grad_taps, grad_grid

        return output, _bilinear_sample_grad

    return _combine(taps, grid)


def _sum_over_channels(values, width=None):
    """`ops.sum(values, axis=-1)`; from `2 * width` channels, the slices
    of that width added first, then one reduction over the width.

    XLA:CPU splits a long reduction over the minor axis into a windowed
    partial sum and a library reduction, and writes the whole array being
    reduced in between: in the grid gradient that is the gathered taps
    times the upstream, four times the output's size. Added slice by slice
    the taps are read where they are gathered, and the array written is
    `16 / C` of that (`benchmarks/channel_slices.py`: feat's training
    steps are faster, in both compile modes; narrower slices were slower
    than one reduction). Under JAX on a CPU the slices made the jitted
    step slower, so it keeps one reduction.
    """
    channels = values.shape[-1]
    if width is None or channels is None or channels < 2 * width:
        return ops.sum(values, axis=-1)
    whole = channels - channels % width
    slices = [values[..., i : i + width] for i in range(0, whole, width)]
    total = ops.sum(sum(slices[1:], slices[0]), axis=-1)
    if whole < channels:
        total = total + ops.sum(values[..., whole:], axis=-1)
    return total


def _gradient_points(points, grid, height, width, padding_mode, align_corners):
    """The forward pass's `sample_points`, for a custom gradient to use.

    Keras runs a custom gradient's forward untracked on PyTorch: its values
    are constants there, so the second derivative w.r.t. the grid needs
    them recomputed from `grid`.
    """
    if backend.CUSTOM_GRADIENT_FORWARD_UNTRACKED:
        return sample_points(grid, height, width, padding_mode, align_corners)
    return points


def _where_read(points, values):
    """`values` `(..., K)` for the points that read the image, else 0
    (`sample_points`' `reads`)."""
    return ops.where(points["reads"][..., None], values, 0.0)


def _outside_zero(values, inside):
    """`values` `(..., C)` where `inside` `(...)` holds, else exactly 0.

    The split taps are read at clipped indices; a select rather than a
    product with a 0/1 mask keeps a NaN or inf edge pixel from reaching
    the points outside the image (as in PyTorch, which skips those taps).
    Inside the combining function it is fused with the product it guards.
    """
    return ops.where(inside[..., None], values, ops.zeros_like(values))


def _combine_split(*taps_and_grid, padding_mode, align_corners, size):
    """The bilinear kernel on four separate taps, with the gradient of
    `_bilinear_sample_core`'s, written per tap (see there)."""
    height, width = size

    def inside_masks(points):
        """Per tap, a bool tensor, true where it lies in the image: the
        taps come in read at clipped indices (`_gather_split`)."""
        corners = _clipped_corners(
            points["row"], points["col"], height, width
        )
        return [inside for _, _, inside in corners]

    @ops.custom_gradient
    def _combine(nw, ne, sw, se, grid):
        taps = (nw, ne, sw, se)
        pts = sample_points(grid, height, width, padding_mode, align_corners)
        masks = inside_masks(pts)
        output = _where_read(
            pts,
            sum(
                _outside_zero(tap * weight[..., None], mask)
                for tap, weight, mask in zip(taps, pts["tap_weights"], masks)
            ),
        )

        def _bilinear_split_grad(*args, upstream=None):
            """d taps = upstream * weight; d grid from each tap's
            `sum_c tap * upstream` times its weight's slopes (zero for the
            taps outside the image, whose values are zero)."""
            upstream = args[0] if upstream is None else upstream
            upstream = ops.cast(upstream, nw.dtype)
            points = _gradient_points(
                pts, grid, height, width, padding_mode, align_corners
            )
            inside = inside_masks(points)
            fx, fy = points["fx"], points["fy"]
            slopes_x = (fy - 1.0, 1.0 - fy, -fy, fy)
            slopes_y = (fx - 1.0, -fx, 1.0 - fx, fx)
            tap_upstream = [
                ops.where(
                    points["reads"],
                    ops.sum(_outside_zero(tap * upstream, mask), axis=-1),
                    0.0,
                )
                for tap, mask in zip(taps, inside)
            ]
            grad_x = sum(t * k for t, k in zip(tap_upstream, slopes_x))
            grad_y = sum(t * k for t, k in zip(tap_upstream, slopes_y))
            grad_grid = ops.stack(
                [grad_x * points["dx"], grad_y * points["dy"]], axis=-1
            )
            grad_taps = [
                upstream * ops.where(mask, weight, 0.0)[..., None]
                for weight, mask in zip(points["tap_weights"], inside)
            ]
            return (*grad_taps, grad_grid)

        return output, _bilinear_split_grad

    return _combine(*taps_and_grid)




def plan(images, padding_mode, align_corners, deterministic):
    """The bilinear sampler of one call, as the keyword arguments of the
    kernel seam's `xla_compiled`: `key`, `fn(images, grid)` and, on
    TensorFlow on a CPU, the faster form of each of its three functions
    (`tuning.tensorflow_cpu_plan`: under op-level XLA the forward pass and
    the two gradients are separate functions).

    Args:
        images: float32/64 tensor `(B, H, W, C)`.
        padding_mode, align_corners, deterministic: as the sampler's.
    """
    on_gpu = backend.on_gpu(images)
    channels = images.shape[-1]
    layout = tuning.gather_layout(channels, 2, backend.name(), on_gpu)
    cpu_plan = backend.name() == "tensorflow" and not on_gpu
    channel_slice = tuning.CHANNEL_SLICE_WIDTH if cpu_plan else None

    def core_of(layout):
        return lambda i, g: _bilinear_sample_core(
            i, g, padding_mode, align_corners, layout, deterministic,
            channel_slice,
        )

    forward_layout = grid_layout = layout
    direct_gradient = None
    if cpu_plan and config.gather_layout() == "auto":
        forward_layout, grid_layout, direct = tuning.tensorflow_cpu_plan(
            channels
        )
        if direct and not deterministic:
            direct_gradient = lambda i, g, u: images_gradient(  # noqa: E731
                i, g, u, padding_mode, align_corners
            )
    key = (
        "bilinear", padding_mode, align_corners, layout, forward_layout,
        grid_layout, direct_gradient is not None, deterministic,
        channel_slice,
    )
    return {
        "key": key,
        "fn": core_of(layout),
        "forward_fn": core_of(forward_layout),
        "grid_fn": core_of(grid_layout),
        "images_gradient": direct_gradient,
    }
