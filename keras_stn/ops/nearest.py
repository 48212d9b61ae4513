"""Nearest-neighbour sampling of images and volumes: PyTorch's
`grid_sample(mode="nearest")` on 4-D and 5-D input.

The output is piecewise constant in the grid: its gradient w.r.t. the grid
is zero, w.r.t. the input the scatter-add of the upstream onto the pixels
chosen. Ties round to even, as PyTorch's `nearbyint`. `plan` builds the
sampler for one call, which `keras_stn.ops.sampling` compiles and runs.
"""

from keras import ops

from keras_stn.ops import coordinates
from keras_stn.ops import gathers
from keras_stn.utils import shapes


def _zero_link(grid):
    """Zeros `(B, 1, ..., 1)` of the grid's rank whose gradient w.r.t.
    `grid` is zero: added to an output, it makes tapes return a zero grid
    gradient, not None."""
    corner = (slice(None),) + (slice(0, 1),) * (len(grid.shape) - 1)

    @ops.custom_gradient
    def _link(grid):
        def _zero_link_grad(*args, upstream=None):
            """d grid = 0."""
            return ops.zeros_like(grid)

        return ops.zeros_like(grid[corner]), _zero_link_grad

    return _link(grid)


def _nearest_core(images, grid, padding_mode, align_corners, deterministic):
    """Nearest sampling of float32/64 inputs. The gradient w.r.t. `images`
    is the gather's scatter-add; the grid only chooses indices, so its
    gradient is zero."""
    link = _zero_link(grid)
    grid = ops.stop_gradient(grid)
    _, height, width, _ = shapes.dims(images)
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
    taps = gathers.read_framed(
        gathers.frame(images), rows, cols, height, width, deterministic
    )
    return taps + link


def _nearest_3d_core(volumes, grid, padding_mode, align_corners, deterministic):
    """Nearest sampling of float32/64 inputs. The gradient w.r.t. `volumes`
    is the gather's scatter-add; the grid only chooses indices, so its
    gradient is zero."""
    link = _zero_link(grid)
    grid = ops.stop_gradient(grid)
    _, depth, height, width, _ = shapes.dims(volumes)
    sizes = (width, height, depth)
    indices, valid, _ = coordinates.axis_indices(
        grid, sizes, align_corners, clamp_infinite=padding_mode == "border"
    )
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
    # Every point outside (or invalid: NaN; infinite but under border
    # padding) reads the frame voxel (0, 0, 0).
    minus_one = -ops.ones_like(x)
    x, y, z = (ops.where(outside, minus_one, tap) for tap in (x, y, z))
    rows = (z + 1) * (height + 2) + (y + 1)
    out = gathers.gather_pixels(
        gathers.framed_slabs(volumes), rows, x + 1, deterministic
    )
    return out + link


def plan(images, padding_mode, align_corners, deterministic):
    """The nearest sampler of one call, for images `(B, H, W, C)` or
    volumes `(B, D, H, W, C)`, as the keyword arguments of the kernel
    seam's `xla_compiled` (`key`, `fn(images, grid)`)."""
    num_axes = len(images.shape) - 2
    core = _nearest_core if num_axes == 2 else _nearest_3d_core
    return {
        "key": ("nearest", num_axes, padding_mode, align_corners,
                deterministic),
        "fn": lambda i, g: core(
            i, g, padding_mode, align_corners, deterministic
        ),
    }
