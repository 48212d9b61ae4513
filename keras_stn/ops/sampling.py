"""Bilinear sampling with a hand-written gradient, and the sampler dispatch.

Convention: images are channels-last `(B, H, W, C)`; a grid is
`(B, H_out, W_out, 2)` holding `(x, y)` in `[-1, 1]` (see `coordinates`);
`padding_mode` and `align_corners` mean what they mean in PyTorch's
`grid_sample`, whose values and gradients this op reproduces.
"""

from keras import ops

from keras_stn import config
from keras_stn.ops import _backend
from keras_stn.utils import argument_validation
from keras_stn.ops import coordinates


def is_volume(images):
    """Whether `images` is a batch of volumes `(B, D, H, W, C)` (rank 5):
    the samplers hand those to `keras_stn.ops.volumes`."""
    shape = getattr(images, "shape", None)
    if shape is None:
        import numpy as np

        shape = np.shape(images)
    return len(shape) == 5


def check_sample_args(images, grid, padding_mode, align_corners=False):
    """Validates the arguments every sampler shares; returns tensors."""
    argument_validation.check_choice(
        padding_mode, coordinates.PADDING_MODES, "padding_mode"
    )
    argument_validation.check_bool(align_corners, "align_corners")
    images = argument_validation.as_float_tensor(images, "images")
    grid = argument_validation.as_float_tensor(grid, "grid")
    argument_validation.check_rank(images, 4, "images", "(B, H, W, C)")
    argument_validation.check_rank(grid, 4, "grid", "(B, H_out, W_out, 2)")
    argument_validation.check_last_dim(grid, 2, "grid", "(B, H_out, W_out, 2)")
    argument_validation.check_same_batch(images, grid, "images", "grid")
    for axis, name in ((1, "H"), (2, "W")):
        if images.shape[axis] == 0:
            raise ValueError(
                f"`images` must have a non-empty {name} axis. Received: "
                f"images.shape={tuple(images.shape)}"
            )
    # What the static checks could not see (None dims in a traced graph).
    grid = _backend.assert_dims(
        grid, {3: 2}, "`grid` must have shape (B, H_out, W_out, 2).", "grid"
    )
    grid = _backend.assert_dims(
        grid,
        {0: dims(images)[0]},
        "`images` and `grid` must have the same batch size.",
        "grid",
    )
    return images, grid


def dims(x):
    """Returns the shape of `x`, static ints where known, else tensors."""
    dynamic = ops.shape(x)
    return [s if s is not None else dynamic[i] for i, s in enumerate(x.shape)]


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
    x0 = ops.minimum(_backend.floor(ix), w - 1.0)
    y0 = ops.minimum(_backend.floor(iy), h - 1.0)
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
    taps = _backend.gather_pixels(table, row, col, deterministic)
    channels = images.shape[-1] or ops.shape(images)[-1]
    return ops.reshape(taps, (*ops.shape(row), 4, channels))


def _gather_framed_image(images, row, col, deterministic=False):
    """Four taps by one gather of `C` values at four indices per point from
    the zero-framed image: no table to build, the faster layout for many
    channels. Its gradient is one scatter of `4 * N` rows of `C`
    (`_backend.gather_quads`).
    """
    framed = ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    return _backend.gather_quads(framed, row, col, deterministic)


def _gather_clipped(images, row, col, deterministic=False):
    """Four taps read from the image itself at indices clipped into it,
    those outside zeroed: no framed copy of the image is written, and the
    gradient scatters straight onto its pixels (the faster layout on GPUs,
    where the copy costs as much as the gather).
    """
    _, height, width, _ = dims(images)
    corners = _clipped_corners(row, col, height, width)
    rows, cols, inside = (
        ops.stack([corner[k] for corner in corners], axis=-1)
        for k in range(3)
    )
    taps = _backend.gather_pixels(images, rows, cols, deterministic)
    return taps * ops.cast(inside, images.dtype)[..., None]


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
    Their transpose is one scatter-add (`_backend.gather_tap_major`). Taps
    outside the image are read at the clipped index, not zeroed:
    `_combine_split` gives them zero weight (zeroing `(..., C)` arrays
    here made XLA write each tap twice in a step, once as gathered and
    once masked).
    """
    _, height, width, _ = dims(images)
    corners = _clipped_corners(row, col, height, width)
    return _backend.gather_tap_major(
        images,
        ops.stack([rows for rows, _, _ in corners], axis=1),
        ops.stack([cols for _, cols, _ in corners], axis=1),
        deterministic,
    )


def _bilinear_images_gradient(
    images, grid, upstream, padding_mode, align_corners
):
    """The gradient of `bilinear_sample` w.r.t. `images`, written as the
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
    batch, height, width, channels = dims(images)
    points = sample_points(grid, height, width, padding_mode, align_corners)
    corners = _clipped_corners(points["row"], points["col"], height, width)
    updates, indices = [], []
    for (rows, cols, inside), weight in zip(corners, points["tap_weights"]):
        weight = ops.where(inside, weight, ops.zeros_like(weight))
        updates.append(
            ops.reshape(upstream * weight[..., None], (-1, channels))
        )
        index = _backend.flat_index(rows, cols, height, width)
        indices.append(ops.reshape(index, (-1,)))
    summed = _backend.scatter_add_rows(
        ops.concatenate(updates, axis=0),
        ops.concatenate(indices, axis=0),
        batch * height * width,
    )
    return ops.reshape(summed, ops.shape(images))


# Up to this many channels a corner table beats four gathers (measured with
# benchmarks/sampler_benchmark.py on a 2-core CPU: faster for mnist, C=1;
# slower for cub, C=3, and feat, C=64, forward and backward).
CORNER_TABLE_MAX_CHANNELS = 1


# From this many channels the split layout is the faster on CPUs too,
# forward and backward (measured with benchmarks/sampler_benchmark.py on a
# 2-core CPU: feat, C = 64, under TensorFlow's op-level XLA and JAX).
SPLIT_MIN_CHANNELS = 16


def resolve_layout(images):
    """`config.gather_layout()` with `"auto"` resolved for `images`: on a
    GPU `"split"`; on a CPU `"split"` from `SPLIT_MIN_CHANNELS` channels,
    else `"framed"`, except that JAX on a CPU takes `"split"` for images
    of any depth (measured with benchmarks/sampler_benchmark.py on a
    2-core CPU: there the other layouts' stacked `(..., 4, C)` gathers took
    5-15x as long, forward)."""
    layout = config.gather_layout()
    if layout != "auto":
        return layout
    channels = images.shape[-1]
    many = channels is not None and channels >= SPLIT_MIN_CHANNELS
    if len(images.shape) == 4 and _backend.is_jax_on_cpu():
        many = True
    return "split" if many or _backend.on_gpu(images) else "framed"


def tensorflow_cpu_plan(channels):
    """`(forward, grid, direct)`: the gather layouts of the forward pass and
    of the gradient w.r.t. the grid, and whether the gradient w.r.t. the
    images is `_bilinear_images_gradient` (else the autodiff of the
    layout's gather), for a sampler that TensorFlow compiles by itself
    on a CPU with `gather_layout("auto")`.

    Measured per function with benchmarks/sampler_benchmark.py on a
    2-core CPU: below `SPLIT_MIN_CHANNELS` channels four separate gathers
    are the faster forward pass and the framed layout the faster grid
    gradient; from there the clipped layout is as fast a forward pass and
    the faster grid gradient, and whole-step XLA then shares the two
    functions' gathers. The direct image gradient is faster than every
    layout's autodiff but the corner table's (one channel).
    """
    many = channels is not None and channels >= SPLIT_MIN_CHANNELS
    direct = channels is None or channels > CORNER_TABLE_MAX_CHANNELS
    if many:
        return "clipped", "clipped", direct
    return "split", "framed", direct


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
    if channels is not None and channels <= CORNER_TABLE_MAX_CHANNELS:
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
    _, height, width, _ = dims(images)
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
        output = ops.sum(taps * pts["weights"][..., None], axis=-2)

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
            tap_upstream = _sum_over_channels(
                taps * upstream[..., None, :], channel_slice
            )
            grad_grid = ops.sum(tap_upstream[..., None] * d_weights, axis=-2)
            grad_taps = upstream[..., None, :] * points["weights"][..., None]
            return grad_taps, grad_grid

        return output, _bilinear_sample_grad

    return _combine(taps, grid)


# Width of the slices `_sum_over_channels` adds before it reduces, on
# TensorFlow on a CPU (`bilinear_sample`).
CHANNEL_SLICE_WIDTH = 16


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
    if _backend.is_torch():
        return sample_points(grid, height, width, padding_mode, align_corners)
    return points


def _combine_split(*taps_and_grid, padding_mode, align_corners, size):
    """The bilinear kernel on four separate taps, with the gradient of
    `_bilinear_sample_core`'s, written per tap (see there)."""
    height, width = size

    def inside_masks(points):
        """Per tap, 1.0 where it lies in the image, else 0.0: the taps
        come in read at clipped indices (`_gather_split`)."""
        corners = _clipped_corners(
            points["row"], points["col"], height, width
        )
        dtype = points["fx"].dtype
        return [ops.cast(inside, dtype) for _, _, inside in corners]

    @ops.custom_gradient
    def _combine(nw, ne, sw, se, grid):
        taps = (nw, ne, sw, se)
        pts = sample_points(grid, height, width, padding_mode, align_corners)
        masks = inside_masks(pts)
        output = sum(
            tap * (weight * mask)[..., None]
            for tap, weight, mask in zip(taps, pts["tap_weights"], masks)
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
                ops.sum(tap * upstream, axis=-1) * mask
                for tap, mask in zip(taps, inside)
            ]
            grad_x = sum(t * k for t, k in zip(tap_upstream, slopes_x))
            grad_y = sum(t * k for t, k in zip(tap_upstream, slopes_y))
            grad_grid = ops.stack(
                [grad_x * points["dx"], grad_y * points["dy"]], axis=-1
            )
            grad_taps = [
                upstream * (weight * mask)[..., None]
                for weight, mask in zip(points["tap_weights"], inside)
            ]
            return (*grad_taps, grad_grid)

        return output, _bilinear_split_grad

    return _combine(*taps_and_grid)


def bilinear_sample(
    images, grid, padding_mode="zeros", align_corners=False, deterministic=None
):
    """Samples `images` at normalised `(x, y)` points with a bilinear kernel.

    The paper's sampler (Jaderberg et al., eq. 5): each output pixel is the
    bilinear interpolation of the four input pixels around its point. Values
    and gradients equal PyTorch's `grid_sample(mode="bilinear")`. The
    kernel's gradient is hand-written; the image gradient is the one
    scatter-add that transposes the tap gather, and it is pruned from the
    graph when only the grid's gradient is asked for.
    Convention: grid is `(x, y)` in `[-1, 1]`, channels-last; `padding_mode`
    and `align_corners` as in PyTorch.

    NaN grid points sample zeros and get zero gradients, and so do
    infinite ones under `"zeros"` and `"reflection"` padding (where
    PyTorch's answer is NaN); under `"border"` padding an infinite point
    reads the border, as in PyTorch, with a zero derivative along its
    infinite axis. The other points of the batch are unaffected. float16
    and bfloat16 inputs are computed in float32 and returned in the input
    dtype. Volumes `(B, D, H, W, C)` with grids `(B, D_out, H_out, W_out,
    3)` are sampled trilinearly (`volumes.trilinear_sample`, PyTorch's 5-D
    `grid_sample`).

    Args:
        images: float tensor `(B, H, W, C)`.
        grid: float tensor `(B, H_out, W_out, 2)`.
        padding_mode: str, `"zeros"`, `"border"` or `"reflection"`: what a
            point outside the image reads. Defaults to `"zeros"`.
        align_corners: bool. Defaults to `False`.
        deterministic: bool, whether the gradient w.r.t. `images` is
            bitwise reproducible on GPUs (an exact integer sum instead of
            float atomics); None (the default) follows
            `keras_stn.config.deterministic()`.
    Returns:
        Tensor `(B, H_out, W_out, C)` with the dtype of `images`.
    Raises:
        ValueError: wrong ranks, a grid not ending in 2, batch sizes that
            differ, non-float images, an unknown `padding_mode` or a
            `deterministic` that is not a bool or None.

    Example:
    >>> import numpy as np
    >>> images = np.arange(4.0, dtype="float32").reshape(1, 2, 2, 1)
    >>> grid = np.array([[[[0.0, 0.0]]]], dtype="float32")  # the centre
    >>> float(bilinear_sample(images, grid)[0, 0, 0, 0])
    1.5
    """
    if is_volume(images):
        from keras_stn.ops import volumes

        return volumes.trilinear_sample(
            images, grid, padding_mode, align_corners, deterministic
        )
    images, grid = check_sample_args(
        images, grid, padding_mode, align_corners
    )
    deterministic = config.resolve_deterministic(deterministic)
    out_dtype = images.dtype
    dtype = argument_validation.compute_dtype(images.dtype, grid.dtype)
    align_corners = bool(align_corners)
    layout = resolve_layout(images)

    cpu_plan = _backend.is_tensorflow() and not _backend.on_gpu(images)
    channel_slice = CHANNEL_SLICE_WIDTH if cpu_plan else None

    def core_of(layout):
        return lambda i, g: _bilinear_sample_core(
            i,
            g,
            padding_mode,
            align_corners,
            layout,
            deterministic,
            channel_slice,
        )

    # Under TensorFlow's op-level XLA the forward pass and the two
    # gradients are separate functions, each of the form that is the
    # fastest for it on a CPU (`tensorflow_cpu_plan`).
    forward_layout = grid_layout = layout
    images_gradient = None
    if config.gather_layout() == "auto" and cpu_plan:
        forward_layout, grid_layout, direct = tensorflow_cpu_plan(
            images.shape[-1]
        )
        if direct and not deterministic:
            images_gradient = lambda i, g, u: _bilinear_images_gradient(
                i, g, u, padding_mode, align_corners
            )
    core = _backend.xla_compiled(
        (
            "bilinear",
            padding_mode,
            align_corners,
            layout,
            forward_layout,
            grid_layout,
            images_gradient is not None,
            deterministic,
            channel_slice,
        ),
        core_of(layout),
        forward_fn=core_of(forward_layout),
        grid_fn=core_of(grid_layout),
        images_gradient=images_gradient,
    )
    output = core(ops.cast(images, dtype), ops.cast(grid, dtype))
    return ops.cast(output, out_dtype)
