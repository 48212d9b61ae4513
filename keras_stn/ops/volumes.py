"""3-D grids and sampling of volumes, PyTorch's 5-D `affine_grid` and
`grid_sample`.

Convention: volumes are channels-last `(B, D, H, W, C)`; a grid is
`(B, D_out, H_out, W_out, 3)` holding `(x, y, z)` in `[-1, 1]`, `x` along
`W`, `y` along `H`, `z` along `D`; theta `(B, 3, 4)` maps output points to
input points. `padding_mode` and `align_corners` mean what they mean in
PyTorch, whose values and gradients these ops reproduce.
"""

import itertools

import numpy as np
from keras import ops

from keras_stn import config

from keras_stn.ops import _backend
from keras_stn.ops import coordinates
from keras_stn.ops import grids
from keras_stn.ops import sampling
from keras_stn.utils import argument_validation

_THETA_FORM = "(B, 3, 4) or (B, 12)"
_VOLUMES_FORM = "(B, D, H, W, C)"
_GRID_FORM = "(B, D_out, H_out, W_out, 3)"


def _axis_coordinates(n, align_corners):
    """Normalised centres of `n` pixels, float64 `(n,)`: the `x` column of
    the 2-D identity grid of one row, so both grids place them alike."""
    return grids.base_grid_numpy((1, n), align_corners)[:, 0]


def base_grid_numpy_3d(size, align_corners):
    """The identity grid in homogeneous form, float64 `(D * H * W, 4)` rows
    `(x, y, z, 1)`, row-major over `(D, H, W)`."""
    depth, height, width = size
    z, y, x = np.meshgrid(
        _axis_coordinates(depth, align_corners),
        _axis_coordinates(height, align_corners),
        _axis_coordinates(width, align_corners),
        indexing="ij",
    )
    return np.stack([x, y, z, np.ones_like(x)], axis=-1).reshape(-1, 4)


def _matrix_theta_3d(theta):
    """Returns theta as float `(B, 3, 4)`, from that shape or `(B, 12)`."""
    theta = argument_validation.as_float_tensor(theta, "theta")
    argument_validation.check_rank(theta, (2, 3), "theta", _THETA_FORM)
    if len(theta.shape) == 2:
        argument_validation.check_last_dim(theta, 12, "theta", _THETA_FORM)
        return ops.reshape(theta, (-1, 3, 4))
    if tuple(theta.shape[1:]) != (3, 4):
        raise ValueError(
            f"`theta` must have shape {_THETA_FORM}. Received: theta.shape="
            f"{tuple(theta.shape)}"
        )
    return theta


def affine_grid_3d(theta, size, align_corners=False):
    """Maps the output voxel grid through 3x4 affine matrices.

    `grid[b, k, i, j] = theta[b] @ (x_j, y_i, z_k, 1)`: PyTorch's
    `affine_grid` for a 5-D size. The gradient is hand-written:
    `d theta[b] = sum_kij d grid[b, k, i, j] (x_j, y_i, z_k, 1)^T`. Samples
    whose theta holds NaN or inf get non-finite points (the samplers read
    zeros there) and a zero theta gradient (`grids.guard_non_finite`).
    Convention: theta maps output points to input points, in normalised
    coordinates; the grid's last axis is `(x, y, z)`.

    Args:
        theta: float tensor `(B, 3, 4)` or `(B, 12)` (row-major).
        size: `(D_out, H_out, W_out)`, three positive ints.
        align_corners: bool. Defaults to `False`.
    Returns:
        Tensor `(B, D_out, H_out, W_out, 3)` of `(x, y, z)` sampling
        points, in the dtype of theta (float32 for float16/bfloat16 theta).
    Raises:
        ValueError: if theta's shape or `size` is malformed.

    Example:
    >>> import numpy as np
    >>> theta = np.eye(3, 4, dtype="float32")[None]
    >>> grid = affine_grid_3d(theta, (2, 1, 3), align_corners=True)
    >>> ops.convert_to_numpy(grid)[0, :, 0, :, 0]
    array([[-1.,  0.,  1.],
           [-1.,  0.,  1.]], dtype=float32)
    """
    argument_validation.check_bool(align_corners, "align_corners")
    size = argument_validation.check_volume_size(size)
    theta = _matrix_theta_3d(theta)
    theta = grids.guard_non_finite(
        ops.cast(theta, argument_validation.compute_dtype(theta.dtype))
    )
    base = ops.convert_to_tensor(
        base_grid_numpy_3d(size, bool(align_corners)), dtype=theta.dtype
    )

    @ops.custom_gradient
    def _affine_3d(theta):
        points = grids.combine_points(base, ops.transpose(theta, (0, 2, 1)))

        def _affine_grid_3d_grad(*args, upstream=None):
            """d theta[b, i, k] = sum_p upstream[b, p, i] base[p, k]."""
            upstream = args[0] if upstream is None else upstream
            grad = grids.combine_points_gradient(base, upstream)
            return ops.transpose(grad, (0, 2, 1))

        return points, _affine_grid_3d_grad

    return ops.reshape(_affine_3d(theta), (-1, *size, 3))


def check_volume_sample_args(volumes, grid, padding_mode, align_corners=False):
    """Validates the arguments of the 3-D samplers; returns tensors."""
    argument_validation.check_choice(
        padding_mode, coordinates.PADDING_MODES, "padding_mode"
    )
    argument_validation.check_bool(align_corners, "align_corners")
    volumes = argument_validation.as_float_tensor(volumes, "volumes")
    grid = argument_validation.as_float_tensor(grid, "grid")
    argument_validation.check_rank(volumes, 5, "volumes", _VOLUMES_FORM)
    argument_validation.check_rank(grid, 5, "grid", _GRID_FORM)
    argument_validation.check_last_dim(grid, 3, "grid", _GRID_FORM)
    argument_validation.check_same_batch(volumes, grid, "volumes", "grid")
    argument_validation.check_non_empty_axes(
        volumes, (1, 2, 3), "volumes", _VOLUMES_FORM
    )
    return volumes, grid


def voxel_indices(grid, sizes, align_corners):
    """Unnormalises each axis of a grid, zeroing non-finite points.

    Args:
        grid: float tensor `(..., N)`, the last axis in the order of
            `sizes`.
        sizes: N ints or scalar tensors, the input's size along each grid
            axis (`(W, H, D)` for `(x, y, z)`).
        align_corners: bool.
    Returns:
        `(indices, valid, scales)`: N float tensors `grid.shape[:-1]` (0
        where any coordinate of the point, or its index, is not finite),
        the bool mask of finite points and the N scalars d index / d coord.
    """
    indices, scales = [], []
    for axis, size in enumerate(sizes):
        index, scale = coordinates.unnormalize(
            grid[..., axis], size, align_corners
        )
        indices.append(index)
        scales.append(scale)
    valid = ops.isfinite(indices[0])
    for index in indices[1:]:
        valid = ops.logical_and(valid, ops.isfinite(index))
    zeros = ops.zeros_like(indices[0])
    indices = [ops.where(valid, index, zeros) for index in indices]
    return indices, valid, scales


def _linear_taps(grid, sizes, padding_mode, align_corners):
    """Per axis, the lower tap and its fraction, as `sampling.sample_points`
    does for two axes (PyTorch's conventions at the border).

    Past one voxel outside, every tap reads the zero frame: the index is
    clamped there (its derivative is zero) so that taps stay in the frame.

    Args:
        grid: float tensor `(..., N)`.
        sizes: N ints or scalar tensors, the input's size per grid axis.
    Returns:
        `(lower, fractions, derivatives, valid)`: N int32 tensors, the
        lower tap in the frame of one zero voxel (in `[0, size]`); N float
        fractions; N float d index / d grid coordinate (padding and
        validity included); the float mask (1.0 or 0.0) of finite points.
    """
    dtype = grid.dtype
    indices, valid, scales = voxel_indices(grid, sizes, align_corners)
    zeros = ops.zeros_like(indices[0])
    lower, fractions, derivatives = [], [], []
    for index, size, scale in zip(indices, sizes, scales):
        index, pad = coordinates.apply_padding(
            index, size, padding_mode, align_corners
        )
        n = ops.cast(size, dtype)
        inside = ops.logical_and(index >= -1.0, index < n)
        index = ops.clip(index, -1.0, n)
        low = ops.minimum(_backend.floor(index), n - 1.0)
        lower.append(ops.cast(low, "int32") + 1)
        fractions.append(index - low)
        derivatives.append(
            ops.where(ops.logical_and(valid, inside), pad * scale, zeros)
        )
    return lower, fractions, derivatives, ops.cast(valid, dtype)


# The eight taps in the order of `_gather_taps`: bits `(z, y, x)`, tap
# `4 z + 2 y + x`, 1 meaning the upper neighbour along that axis.
_TAP_BITS = tuple(itertools.product((0, 1), repeat=3))
# Per grid axis `(x, y, z)`, the eight taps' bits along it, and the step in
# the tap number from a lower tap to the upper one along it.
_AXIS_BITS = tuple(
    np.array([bits[2 - axis] for bits in _TAP_BITS], "float32")
    for axis in range(3)
)
_AXIS_STRIDES = (1, 2, 4)


def _tap_factors(fractions):
    """Per axis `(x, y, z)`, each tap's factor of the trilinear weight.

    The factor of tap `t` along axis `a` is `1 - f_a` (lower tap) or `f_a`
    (upper), written `(1 - bit) + (2 bit - 1) f_a` with the taps' bits as a
    constant vector: a broadcast, which XLA:CPU vectorises over the eight
    taps, where a stack of eight tensors along the last axis is computed
    element by element and was several times slower.

    Args:
        fractions: three float tensors `(...)`, `(fx, fy, fz)`.
    Returns:
        Three float tensors `(..., 8)`.
    """
    factors = []
    for fraction, bits in zip(fractions, _AXIS_BITS):
        bits = ops.convert_to_tensor(bits, fraction.dtype)
        factors.append((1.0 - bits) + (2.0 * bits - 1.0) * fraction[..., None])
    return factors


def _tap_weights(fractions, valid):
    """`(..., 8)` trilinear weights from the fractions `(fx, fy, fz)`,
    zero where `valid` (float, 1.0 or 0.0) is zero."""
    fx, fy, fz = _tap_factors(fractions)
    return fx * fy * fz * valid[..., None]


def _grid_gradient(tap_upstream, fractions, derivatives):
    """`(..., 3)`: d out / d grid `(x, y, z)`, contracted with the upstream.

    Along axis `a` the weight of tap `t` has the derivative +-1 times the
    other two axes' factors, so the lower and upper taps along `a` pair up:
      d / d g_a = d_a * sum over lower taps t of
                  (u_{t + s_a} - u_t) * prod over the other axes of factors,
    with `u_t` the tap's value contracted with the upstream, `s_a` the step
    to the upper tap and `d_a` = d index / d coordinate. Written per tap on
    `(...)` tensors, one loop per point under XLA: with one channel, the
    same sums over a `(..., 8)` tap axis were several times slower on CPU
    (with eight channels a little faster, a step that is not the slow one).

    Args:
        tap_upstream: eight float tensors `(...)`, in the order of
            `_TAP_BITS`.
        fractions, derivatives: three float tensors `(...)` each, per axis
            `(x, y, z)` (`_linear_taps`).
    """
    factors = [(1.0 - f, f) for f in fractions]
    columns = []
    for axis, stride in enumerate(_AXIS_STRIDES):
        total = None
        for tap, bits in enumerate(_TAP_BITS):
            bits = bits[::-1]  # x, y, z
            if bits[axis]:
                continue
            term = tap_upstream[tap + stride] - tap_upstream[tap]
            for other in range(3):
                if other != axis:
                    term = term * factors[other][bits[other]]
            total = term if total is None else total + term
        columns.append(total * derivatives[axis])
    return ops.stack(columns, axis=-1)


def _framed_slabs(volumes):
    """Frames volumes with one voxel of zeros and views them as 2-D images
    `(B, (D + 2) * (H + 2), W + 2, C)`: row `z * (H + 2) + y`, column `x`."""
    framed = ops.pad(volumes, [[0, 0], [1, 1], [1, 1], [1, 1], [0, 0]])
    _, depth, height, width, channels = sampling.dims(framed)
    return ops.reshape(framed, (-1, depth * height, width, channels))


def _gather_framed_slabs(volumes, lower, deterministic=False):
    """Eight taps as two 2x2 blocks (`_backend.gather_quads`) of the framed
    volume seen as an image of slabs: at the lower `z` and one slab
    further. No table to build: the layout for many channels."""
    _, _, height, _, channels = sampling.dims(volumes)
    x0, y0, z0 = lower
    row = z0 * (height + 2) + y0
    rows = ops.stack([row, row + (height + 2)], axis=-1)
    cols = ops.stack([x0, x0], axis=-1)
    taps = _backend.gather_quads(
        _framed_slabs(volumes), rows, cols, deterministic
    )
    return ops.reshape(taps, (*ops.shape(x0), 8, channels))


def _gather_corner_table(volumes, lower, deterministic=False):
    """Eight taps by one gather of `8 C` values per point from a table that
    holds each framed voxel with its seven upper neighbours (the 3-D form
    of `sampling`'s corner table). One index per point instead of eight,
    and the frame is built into the table, not a separate copy; its
    gradient is one scatter of `8 C` rows, folded back onto the voxels by
    the autodiff of the table's slices. The table holds 8 times the
    volume."""
    framed = ops.pad(volumes, [[0, 0], [1, 1], [1, 1], [1, 1], [0, 0]])
    _, depth, height, width, channels = sampling.dims(volumes)
    # Along each axis, the lower taps are framed[:-1], the upper ones [1:].
    sides = (slice(None, -1), slice(1, None))
    table = ops.concatenate(
        [
            framed[:, sides[bz], sides[by], sides[bx]]
            for bz, by, bx in _TAP_BITS
        ],
        axis=-1,
    )
    table = ops.reshape(
        table, (-1, (depth + 1) * (height + 1), width + 1, 8 * channels)
    )
    x0, y0, z0 = lower
    taps = _backend.gather_pixels(
        table, z0 * (height + 1) + y0, x0, deterministic
    )
    return ops.reshape(taps, (*ops.shape(x0), 8, channels))


def _gather_clipped(volumes, lower, deterministic=False):
    """Eight taps read from the volume itself at indices clipped into it,
    those outside zeroed: eight gathers and one scatter-add
    (`_backend.gather_tap_major`), no framed copy and no table (the layout
    for GPUs, where building either costs as much as the gathers)."""
    _, depth, height, width, channels = sampling.dims(volumes)
    slabs = ops.reshape(volumes, (-1, depth * height, width, channels))
    # Back from the frame's coordinates.
    x0, y0, z0 = (index - 1 for index in lower)
    rows, cols, masks = [], [], []
    for bz, by, bx in _TAP_BITS:
        x, y, z = x0 + bx, y0 + by, z0 + bz
        inside = ops.logical_and(
            ops.logical_and(
                ops.logical_and(x >= 0, x < width),
                ops.logical_and(y >= 0, y < height),
            ),
            ops.logical_and(z >= 0, z < depth),
        )
        rows.append(
            ops.clip(z, 0, depth - 1) * height + ops.clip(y, 0, height - 1)
        )
        cols.append(ops.clip(x, 0, width - 1))
        masks.append(ops.cast(inside, volumes.dtype)[..., None])
    taps = _backend.gather_tap_major(
        slabs, ops.stack(rows, axis=1), ops.stack(cols, axis=1), deterministic
    )
    return ops.stack([t * m for t, m in zip(taps, masks)], axis=-2)


# Up to this many channels the taps come from the corner table (measured
# with benchmarks/volume_benchmark.py's workloads on a 2-core CPU under
# XLA: several times faster than the framed slabs for the forward pass and
# the volume gradient, C = 1 and C = 8). More channels take the slabs,
# which build no table of 8 times the volume.
CORNER_TABLE_MAX_CHANNELS = 8


def _gather_taps(volumes, lower, layout="framed", deterministic=False):
    """The eight trilinear taps around each point.

    Args:
        volumes: float tensor `(B, D, H, W, C)`.
        lower: int32 tensors `(x0, y0, z0)` `(B, ...)`, the lower taps in
            the frame of one zero voxel (`_linear_taps`).
        layout: `"framed"` (the corner table or the framed slabs, by
            channels: the CPU layouts) or `"clipped"` (`_gather_clipped`,
            the GPU layout).
        deterministic: bool, whether the volume gradient is bitwise
            reproducible (`config.set_deterministic`).
    Returns:
        Tensor `(B, ..., 8, C)` in the order of `_TAP_BITS`; taps outside
        the volume read zero. Differentiable w.r.t. `volumes` (the
        gathers' scatter-add).
    """
    if layout != "framed":
        return _gather_clipped(volumes, lower, deterministic)
    channels = volumes.shape[-1]
    if channels is not None and channels <= CORNER_TABLE_MAX_CHANNELS:
        return _gather_corner_table(volumes, lower, deterministic)
    return _gather_framed_slabs(volumes, lower, deterministic)


def _trilinear_sample_core(
    volumes, grid, padding_mode, align_corners, layout, deterministic
):
    """Trilinear sampling of float32/64 `volumes` at `grid`.

    The taps are gathered by differentiable ops (their gradient w.r.t. the
    volumes is the scatter-add); the kernel that combines them has the
    hand-written gradient.
    """
    _, depth, height, width, _ = sampling.dims(volumes)
    sizes = (width, height, depth)
    lower, _, _, _ = _linear_taps(grid, sizes, padding_mode, align_corners)
    taps = _gather_taps(
        volumes, [ops.stop_gradient(i) for i in lower], layout, deterministic
    )

    @ops.custom_gradient
    def _combine(taps, grid):
        _, fractions, _, valid = _linear_taps(
            grid, sizes, padding_mode, align_corners
        )
        weights = _tap_weights(fractions, valid)
        output = ops.sum(taps * weights[..., None], axis=-2)

        def _trilinear_sample_grad(*args, upstream=None):
            """Gradients of the trilinear kernel.

            With fractions f = (fx, fy, fz), tap t = (bz, by, bx) has the
            weight w_t = prod over axes a of (f_a if bit_a else 1 - f_a),
              d out / d v_t = w_t,
              d out / d grid_a = sum_t v_t * d w_t / d f_a * d i_a / d g_a
            (`_grid_gradient`), where d w_t / d f_a swaps that axis' factor
            for +-1 and d i_a / d g_a carries scale, padding and validity.
            Recomputed from `taps` and `grid` here (on PyTorch the forward
            pass runs untracked), in differentiable ops: second derivatives
            flow.
            """
            upstream = args[0] if upstream is None else upstream
            upstream = ops.cast(upstream, taps.dtype)
            _, fractions, derivatives, valid = _linear_taps(
                grid, sizes, padding_mode, align_corners
            )
            tap_upstream = [
                ops.sum(taps[..., tap, :] * upstream, axis=-1)
                for tap in range(len(_TAP_BITS))
            ]
            grad_grid = _grid_gradient(tap_upstream, fractions, derivatives)
            weights = _tap_weights(fractions, valid)
            grad_taps = upstream[..., None, :] * weights[..., None]
            return grad_taps, grad_grid

        return output, _trilinear_sample_grad

    return _combine(taps, grid)


def trilinear_sample(
    volumes, grid, padding_mode="zeros", align_corners=False, deterministic=None
):
    """Samples `volumes` at normalised `(x, y, z)` points, trilinearly.

    Each output voxel interpolates the eight input voxels around its point.
    Values and gradients (w.r.t. volumes and grid) equal PyTorch's
    `grid_sample(mode="bilinear")` on 5-D input. The kernel's gradient is
    hand-written and differentiable (second derivatives flow); the volume
    gradient is the scatter-add that transposes the tap gathers.
    Convention: grid is `(x, y, z)` in `[-1, 1]` (`x` along `W`, `z` along
    `D`), channels-last; `padding_mode` and `align_corners` as in PyTorch.

    Non-finite grid points sample zeros and get zero gradients; the other
    points of the batch are unaffected. float16 and bfloat16 inputs are
    computed in float32 and returned in the input dtype.

    Args:
        volumes: float tensor `(B, D, H, W, C)`.
        grid: float tensor `(B, D_out, H_out, W_out, 3)`.
        padding_mode: str, `"zeros"`, `"border"` or `"reflection"`: what a
            point outside the volume reads. Defaults to `"zeros"`.
        align_corners: bool. Defaults to `False`.
        deterministic: bool, whether the volume gradient is bitwise
            reproducible on GPUs (an exact integer sum instead of float
            atomics); None (the default) follows
            `keras_stn.config.deterministic()`.
    Returns:
        Tensor `(B, D_out, H_out, W_out, C)` with the dtype of `volumes`.
    Raises:
        ValueError: wrong ranks, a grid not ending in 3, batch sizes that
            differ, an empty spatial axis, non-float volumes, an unknown
            `padding_mode` or a non-bool `deterministic`.

    Example:
    >>> import numpy as np
    >>> volumes = np.arange(8.0, dtype="float32").reshape(1, 2, 2, 2, 1)
    >>> grid = np.zeros((1, 1, 1, 1, 3), dtype="float32")  # the centre
    >>> float(trilinear_sample(volumes, grid)[0, 0, 0, 0, 0])
    3.5
    """
    volumes, grid = check_volume_sample_args(
        volumes, grid, padding_mode, align_corners
    )
    deterministic = config.resolve_deterministic(deterministic)
    dtype = argument_validation.compute_dtype(volumes.dtype, grid.dtype)
    align_corners = bool(align_corners)
    layout = sampling.resolve_layout(volumes)
    if layout != "framed":
        layout = "clipped"
    core = _backend.xla_compiled(
        ("trilinear", padding_mode, align_corners, layout, deterministic),
        lambda v, g: _trilinear_sample_core(
            v, g, padding_mode, align_corners, layout, deterministic
        ),
    )
    output = core(ops.cast(volumes, dtype), ops.cast(grid, dtype))
    return ops.cast(output, volumes.dtype)


def _zero_link(grid):
    """Zeros `(B, 1, 1, 1, 1)` whose gradient w.r.t. `grid` is zero: added
    to an output, it makes tapes return a zero grid gradient, not None."""

    @ops.custom_gradient
    def _link(grid):
        def _zero_link_grad(*args, upstream=None):
            """d grid = 0."""
            return ops.zeros_like(grid)

        return ops.zeros_like(grid[:, :1, :1, :1, :1]), _zero_link_grad

    return _link(grid)


def _nearest_3d_core(volumes, grid, padding_mode, align_corners, deterministic):
    """Nearest sampling of float32/64 inputs. The gradient w.r.t. `volumes`
    is the gather's scatter-add; the grid only chooses indices, so its
    gradient is zero."""
    link = _zero_link(grid)
    grid = ops.stop_gradient(grid)
    _, depth, height, width, _ = sampling.dims(volumes)
    sizes = (width, height, depth)
    indices, valid, _ = voxel_indices(grid, sizes, align_corners)
    taps = []
    for index, size in zip(indices, sizes):
        if padding_mode != "zeros":
            index, _ = coordinates.apply_padding(
                index, size, padding_mode, align_corners
            )
        n = ops.cast(size, index.dtype)
        # Round half to even, as PyTorch's nearbyint; -1 and n are the
        # zero frame.
        tap = ops.cast(ops.clip(ops.round(index), -1.0, n), "int32")
        taps.append(tap)
    x, y, z = taps
    outside = ops.logical_not(valid)
    for tap, size in zip(taps, sizes):
        outside = ops.logical_or(outside, ops.logical_or(tap < 0, tap >= size))
    # Every point outside (or non-finite) reads the frame voxel (0, 0, 0).
    minus_one = -ops.ones_like(x)
    x, y, z = (ops.where(outside, minus_one, tap) for tap in (x, y, z))
    rows = (z + 1) * (height + 2) + (y + 1)
    out = _backend.gather_pixels(
        _framed_slabs(volumes), rows, x + 1, deterministic
    )
    return out + link


def nearest_sample_3d(
    volumes, grid, padding_mode="zeros", align_corners=False, deterministic=None
):
    """Samples `volumes` at the voxel nearest each grid point.

    Values equal PyTorch's `grid_sample(mode="nearest")` on 5-D input (ties
    round to even). The gradient w.r.t. `volumes` is the scatter-add of the
    upstream gradient onto the chosen voxels; w.r.t. `grid` it is zero (the
    output is piecewise constant in the grid): use it for labels and
    inference. Non-finite points read zeros.
    Convention: as `trilinear_sample`.

    Args:
        volumes: float tensor `(B, D, H, W, C)`.
        grid: float tensor `(B, D_out, H_out, W_out, 3)`.
        padding_mode: `"zeros"`, `"border"` or `"reflection"`.
        align_corners: bool. Defaults to `False`.
        deterministic: bool or None, as in `trilinear_sample`.
    Returns:
        Tensor `(B, D_out, H_out, W_out, C)` with the dtype of `volumes`.
    Raises:
        ValueError: as `trilinear_sample`.
    """
    volumes, grid = check_volume_sample_args(
        volumes, grid, padding_mode, align_corners
    )
    deterministic = config.resolve_deterministic(deterministic)
    dtype = argument_validation.compute_dtype(volumes.dtype, grid.dtype)
    align_corners = bool(align_corners)
    core = _backend.xla_compiled(
        ("nearest_3d", padding_mode, align_corners, deterministic),
        lambda v, g: _nearest_3d_core(
            v, g, padding_mode, align_corners, deterministic
        ),
    )
    output = core(ops.cast(volumes, dtype), ops.cast(grid, dtype))
    return ops.cast(output, volumes.dtype)
