"""The trilinear kernel on volumes: PyTorch's 5-D `grid_sample(mode=
"bilinear")`, values and gradients, with a hand-written gradient.

Convention: volumes are channels-last `(B, D, H, W, C)`; a grid is
`(B, D_out, H_out, W_out, 3)` holding `(x, y, z)` in `[-1, 1]`, `x` along
`W`, `y` along `H`, `z` along `D`. `plan` builds the sampler for one
call, which `keras_stn.ops.sampling` (the entry of every sampler)
compiles and runs.
"""

import itertools

import numpy as np
from keras import ops

from keras_stn.ops import backend
from keras_stn.ops import coordinates
from keras_stn.ops import gathers
from keras_stn.ops import tuning
from keras_stn.utils import shapes


def _linear_taps(grid, sizes, padding_mode, align_corners):
    """Per axis, the lower tap and its fraction, as `bilinear.sample_points`
    does for two axes (PyTorch's conventions at the border; under border
    padding an infinite point reads the border, as in 2-D).

    Past one voxel outside, every tap reads the zero frame: the index is
    clamped there (its derivative is zero) so that taps stay in the frame.

    Args:
        grid: float tensor `(..., N)`.
        sizes: N ints or scalar tensors, the input's size per grid axis.
    Returns:
        `(lower, fractions, derivatives, valid, reads)`: N int32 tensors,
        the lower tap in the frame of one zero voxel (in `[0, size]`); N
        float fractions; N float d index / d grid coordinate (padding and
        validity included); the float mask (1.0 or 0.0) of valid points;
        the bool mask of the points that can read a voxel (valid, and no
        further than one voxel outside along any axis): the others' output
        is exactly 0, as PyTorch's, even next to a NaN or inf edge voxel.
    """
    dtype = grid.dtype
    indices, valid, scales = coordinates.axis_indices(
        grid, sizes, align_corners, clamp_infinite=padding_mode == "border"
    )
    zeros = ops.zeros_like(indices[0])
    lower, fractions, derivatives = [], [], []
    reads = valid
    for index, size, scale in zip(indices, sizes, scales):
        index, pad = coordinates.apply_padding(
            index, size, padding_mode, align_corners
        )
        n = ops.cast(size, dtype)
        inside = ops.logical_and(index >= -1.0, index < n)
        reads = ops.logical_and(reads, inside)
        index = ops.clip(index, -1.0, n)
        low = ops.minimum(backend.floor(index), n - 1.0)
        lower.append(ops.cast(low, "int32") + 1)
        fractions.append(index - low)
        derivatives.append(
            ops.where(ops.logical_and(valid, inside), pad * scale, zeros)
        )
    return lower, fractions, derivatives, ops.cast(valid, dtype), reads


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


def _gather_framed_slabs(volumes, lower, deterministic=False):
    """Eight taps as two 2x2 blocks (`gathers.gather_quads`) of the framed
    volume seen as an image of slabs: at the lower `z` and one slab
    further. No table to build: the layout for many channels."""
    _, _, height, _, channels = shapes.dims(volumes)
    x0, y0, z0 = lower
    row = z0 * (height + 2) + y0
    rows = ops.stack([row, row + (height + 2)], axis=-1)
    cols = ops.stack([x0, x0], axis=-1)
    taps = gathers.gather_quads(
        gathers.framed_slabs(volumes), rows, cols, deterministic
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
    _, depth, height, width, channels = shapes.dims(volumes)
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
    taps = gathers.gather_pixels(
        table, z0 * (height + 1) + y0, x0, deterministic
    )
    return ops.reshape(taps, (*ops.shape(x0), 8, channels))


def _gather_clipped(volumes, lower, deterministic=False):
    """Eight taps read from the volume itself at indices clipped into it,
    those outside zeroed: eight gathers and one scatter-add
    (`gathers.gather_tap_major`), no framed copy and no table (the layout
    for GPUs, where building either costs as much as the gathers)."""
    _, depth, height, width, channels = shapes.dims(volumes)
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
        masks.append(inside[..., None])
    taps = gathers.gather_tap_major(
        slabs, ops.stack(rows, axis=1), ops.stack(cols, axis=1), deterministic
    )
    # A select, not a product with the mask: a NaN or inf edge voxel read
    # at a clipped index must give 0 for the taps outside, as in PyTorch.
    return ops.stack(
        [ops.where(m, t, ops.zeros_like(t)) for t, m in zip(taps, masks)],
        axis=-2,
    )


def _gather_taps(volumes, lower, layout="framed", deterministic=False):
    """The eight trilinear taps around each point.

    Args:
        volumes: float tensor `(B, D, H, W, C)`.
        lower: int32 tensors `(x0, y0, z0)` `(B, ...)`, the lower taps in
            the frame of one zero voxel (`_linear_taps`).
        layout: `"framed"` (the corner table or the framed slabs, by
            channels, `tuning.CORNER_TABLE_MAX_CHANNELS_3D`: the CPU
            layouts) or `"clipped"` (`_gather_clipped`,
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
    if channels is not None and channels <= tuning.CORNER_TABLE_MAX_CHANNELS_3D:
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
    _, depth, height, width, _ = shapes.dims(volumes)
    sizes = (width, height, depth)
    lower = _linear_taps(grid, sizes, padding_mode, align_corners)[0]
    taps = _gather_taps(
        volumes, [ops.stop_gradient(i) for i in lower], layout, deterministic
    )

    @ops.custom_gradient
    def _combine(taps, grid):
        _, fractions, _, valid, reads = _linear_taps(
            grid, sizes, padding_mode, align_corners
        )
        weights = _tap_weights(fractions, valid)
        output = ops.sum(taps * weights[..., None], axis=-2)
        output = ops.where(reads[..., None], output, 0.0)

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
            _, fractions, derivatives, valid, reads = _linear_taps(
                grid, sizes, padding_mode, align_corners
            )
            tap_upstream = [
                ops.where(
                    reads, ops.sum(taps[..., tap, :] * upstream, axis=-1), 0.0
                )
                for tap in range(len(_TAP_BITS))
            ]
            grad_grid = _grid_gradient(tap_upstream, fractions, derivatives)
            weights = _tap_weights(fractions, valid)
            grad_taps = upstream[..., None, :] * weights[..., None]
            return grad_taps, grad_grid

        return output, _trilinear_sample_grad

    return _combine(taps, grid)


def plan(volumes, padding_mode, align_corners, deterministic):
    """The trilinear sampler of one call, as the keyword arguments of the
    kernel seam's `xla_compiled` (`key`, `fn(volumes, grid)`).

    Args:
        volumes: float32/64 tensor `(B, D, H, W, C)`.
        padding_mode, align_corners, deterministic: as the sampler's.
    """
    layout = tuning.gather_layout(
        volumes.shape[-1], 3, backend.name(), backend.on_gpu(volumes)
    )
    return {
        "key": (
            "trilinear", padding_mode, align_corners, layout, deterministic
        ),
        "fn": lambda v, g: _trilinear_sample_core(
            v, g, padding_mode, align_corners, layout, deterministic
        ),
    }
