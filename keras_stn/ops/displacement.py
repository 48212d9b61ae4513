"""Dense displacement fields: warps of 2-D images and 3-D volumes, velocity
integration, point warps and composition (VoxelMorph's and neurite's
`SpatialTransformer`, `VecInt` and `compose`).

Convention: a displacement is `(B, *spatial, N)` in pixel (voxel) units,
N = 2 or 3 spatial axes, the same spatial shape as what it warps. Output
pixel `p` (its integer index on the image's own grid) samples the input at
`p + displacement[p]`. With `indexing="ij"` channel k moves along spatial
axis k (rows first, VoxelMorph's default); with `"xy"` the channels are
`(x, y[, z])`: columns, rows[, slices]. Warps go through the samplers with
`align_corners=True` (pixel `i` of `n` is the normalised point
`2 i / (n - 1) - 1`), so `"reflection"` mirrors about the centres of the
border pixels and every gradient is the samplers' hand-written one.
"""

from keras import ops

from keras_stn.ops import coordinates
from keras_stn.ops import sampling
from keras_stn.utils import argument_validation
from keras_stn.utils import shapes
from keras_stn.utils import types

INDEXINGS = ("ij", "xy")
KERNELS = ("bilinear", "nearest")
_FIELD_FORM = "(B, H, W, 2) or (B, D, H, W, 3)"


def _check_field(field, name):
    """Returns `field` as a float tensor `(B, *spatial, N)`, and N."""
    field = argument_validation.as_float_tensor(field, name)
    argument_validation.check_rank(field, (4, 5), name, _FIELD_FORM)
    num_axes = len(field.shape) - 2
    form = "(B, H, W, 2)" if num_axes == 2 else "(B, D, H, W, 3)"
    argument_validation.check_last_dim(field, num_axes, name, form)
    return field, num_axes


def _check_images(images, displacement, num_axes):
    """Checks `images` against a displacement of N spatial axes."""
    form = "(B, H, W, C)" if num_axes == 2 else "(B, D, H, W, C)"
    images = argument_validation.as_float_tensor(images, "images")
    argument_validation.check_rank(
        images, num_axes + 2, "images", f"{form} (as the displacement)"
    )
    argument_validation.check_same_batch(
        images, displacement, "images", "displacement"
    )
    argument_validation.check_same_spatial_shape(
        images, displacement, "images", "displacement"
    )
    argument_validation.check_non_empty_axes(
        images, range(1, num_axes + 1), "images", form
    )
    return images


def _spatial_sizes(field, num_axes):
    """The N spatial sizes of `field`, static ints where known."""
    return shapes.dims(field)[1 : num_axes + 1]


def _to_axis_order(field, indexing):
    """The channels of `field` in spatial-axis order (rows first)."""
    if indexing == "ij":
        return field
    return ops.flip(field, axis=-1)


def _to_grid(locations, sizes):
    """Pixel locations, channels in spatial-axis order, as a normalised
    `(x, y[, z])` grid for `align_corners=True`.

    Channel k (axis of `n` pixels) becomes `location * 2 / (n - 1) - 1`;
    exact for integer locations where `n - 1` is a power of two. An axis
    of one pixel maps every location to -1: with `align_corners=True` the
    samplers read that pixel wherever the point lies.
    """
    channels = []
    for k, size in enumerate(sizes):
        if isinstance(size, int):
            scale = 2.0 / max(size - 1, 1)
        else:  # a dynamic size: the same in tensor ops
            steps = ops.maximum(ops.cast(size, "int32") - 1, 1)
            scale = 2.0 / ops.cast(steps, locations.dtype)
        channels.append(locations[..., k] * scale - 1.0)
    return ops.stack(channels[::-1], axis=-1)


def _pixel_locations(displacement, sizes):
    """`p + displacement[p]`, channels in spatial-axis order."""
    dtype = displacement.dtype
    num_axes = len(sizes)
    channels = []
    for k, size in enumerate(sizes):
        shape = [1] * (num_axes + 1)
        shape[k + 1] = -1
        index = ops.reshape(ops.arange(size, dtype=dtype), shape)
        channels.append(displacement[..., k] + index)
    return ops.stack(channels, axis=-1)


def _sample(images, grid, kernel, padding_mode):
    """`sampling.sample` (images or volumes), `align_corners=True`."""
    return sampling.sample(images, grid, kernel, padding_mode, True)


def warp(
    images: types.TensorLike,
    displacement: types.TensorLike,
    kernel: str = "bilinear",
    padding_mode: str = "border",
    indexing: str = "ij",
) -> types.Tensor:
    """Warps images or volumes by a dense displacement field.

    `output[p] = images(p + displacement[p])`, read with `kernel` (bilinear
    means trilinear for volumes) and `padding_mode` outside: VoxelMorph's
    `SpatialTransformer`. The output has the input's size. Differentiable
    w.r.t. images and displacement through the samplers' hand-written
    gradients (the displacement gradient is zero for `"nearest"`).
    Convention: displacement in pixels, channel order set by `indexing`
    (see the module docstring); align_corners=True sampling.

    Args:
        images: float tensor `(B, H, W, C)` or `(B, D, H, W, C)`.
        displacement: float tensor `(B, H, W, 2)` or `(B, D, H, W, 3)`,
            the same batch and spatial shape.
        kernel: `"bilinear"` or `"nearest"`. Defaults to `"bilinear"`.
        padding_mode: `"zeros"`, `"border"` or `"reflection"`: what a
            point outside reads. Defaults to `"border"` (VoxelMorph's
            nearest-value extrapolation).
        indexing: `"ij"` (channel k along spatial axis k) or `"xy"`
            (`x`, `y`[, `z`]). Defaults to `"ij"`.
    Returns:
        Tensor like `images`, in its dtype.
    Raises:
        ValueError: if a rank, the last axis of `displacement`, the batch
            or spatial sizes do not match, or an option is unknown.

    Example:
    >>> import numpy as np
    >>> images = np.arange(5.0, dtype="float32").reshape(1, 1, 5, 1)
    >>> shift = np.zeros((1, 1, 5, 2), dtype="float32")
    >>> shift[..., 1] = 1.0  # each pixel reads its right neighbour
    >>> ops.convert_to_numpy(warp(images, shift))[0, 0, :, 0]
    array([1., 2., 3., 4., 4.], dtype=float32)
    """
    argument_validation.check_choice(kernel, KERNELS, "kernel")
    argument_validation.check_choice(
        padding_mode, coordinates.PADDING_MODES, "padding_mode"
    )
    argument_validation.check_choice(indexing, INDEXINGS, "indexing")
    displacement, num_axes = _check_field(displacement, "displacement")
    images = _check_images(images, displacement, num_axes)
    dtype = argument_validation.compute_dtype(images.dtype, displacement.dtype)
    sizes = _spatial_sizes(displacement, num_axes)
    field = _to_axis_order(ops.cast(displacement, dtype), indexing)
    grid = _to_grid(_pixel_locations(field, sizes), sizes)
    return _sample(images, grid, kernel, padding_mode)


def integrate_velocity(
    velocity: types.TensorLike, steps: int = 7, indexing: str = "ij"
) -> types.Tensor:
    """Integrates a stationary velocity field by scaling and squaring.

    VoxelMorph's `VecInt`: `u = velocity / 2**steps`, then `steps` times
    `u = u + warp(u, u)` (bilinear, border padding), which approximates the
    displacement of the flow of `velocity` over unit time, a diffeomorphism
    for a smooth, small enough field. `steps=0` returns the velocity.
    Convention: as `warp`; the output has the velocity's channel order.

    Args:
        velocity: float tensor `(B, H, W, 2)` or `(B, D, H, W, 3)`, pixels.
        steps: int >= 0, the number of squarings. Defaults to 7.
        indexing: `"ij"` or `"xy"`, the channel order. Defaults to `"ij"`.
    Returns:
        The displacement, a tensor like `velocity`.
    Raises:
        ValueError: a malformed velocity, `steps` not an int >= 0, or an
            unknown `indexing`.

    Reference: Dalca et al., 2019, https://arxiv.org/abs/1903.03545
    """
    steps = argument_validation.check_non_negative_int(steps, "steps")
    argument_validation.check_choice(indexing, INDEXINGS, "indexing")
    velocity, _ = _check_field(velocity, "velocity")
    displacement = velocity * (0.5**steps)
    for _ in range(steps):
        displacement = displacement + warp(
            displacement, displacement, "bilinear", "border", indexing
        )
    return displacement


def warp_points(
    points: types.TensorLike,
    displacement: types.TensorLike,
    indexing: str = "ij",
) -> types.Tensor:
    """Moves points by a displacement field, as `warp` moves pixels.

    `points + displacement(points)`, the field read bilinearly (border
    padding) at each point. At an integer point `p` this is the input
    location that output pixel `p` of `warp(images, displacement)` samples,
    so a landmark on the warped image maps to where its value came from.
    Convention: points in pixel coordinates, in the field's channel order
    (`indexing`).

    Args:
        points: float tensor `(B, M, N)`.
        displacement: float tensor `(B, H, W, 2)` or `(B, D, H, W, 3)`.
        indexing: `"ij"` or `"xy"`. Defaults to `"ij"`.
    Returns:
        Tensor `(B, M, N)` in the dtype of `points`.
    Raises:
        ValueError: if shapes do not match or `indexing` is unknown.
    """
    argument_validation.check_choice(indexing, INDEXINGS, "indexing")
    displacement, num_axes = _check_field(displacement, "displacement")
    points = argument_validation.as_float_tensor(points, "points")
    form = f"(B, M, {num_axes}) (N = {num_axes} as the displacement)"
    argument_validation.check_rank(points, 3, "points", form)
    argument_validation.check_last_dim(points, num_axes, "points", form)
    argument_validation.check_same_batch(
        points, displacement, "points", "displacement"
    )
    dtype = argument_validation.compute_dtype(points.dtype, displacement.dtype)
    sizes = _spatial_sizes(displacement, num_axes)
    located = _to_axis_order(ops.cast(points, dtype), indexing)
    grid = _to_grid(located, sizes)
    # Points as a `(B, M, 1[, 1], N)` grid.
    grid = ops.reshape(
        grid, (*ops.shape(grid)[:2], *([1] * (num_axes - 1)), num_axes)
    )
    moved = _sample(ops.cast(displacement, dtype), grid, "bilinear", "border")
    moved = ops.reshape(moved, ops.shape(points))
    return ops.cast(ops.cast(points, dtype) + moved, points.dtype)


def compose_displacements(
    first: types.TensorLike, second: types.TensorLike, indexing: str = "ij"
) -> types.Tensor:
    """The displacement of warping by `first`, then by `second`.

    `warp(warp(images, first), second)` reads, at output pixel p, the input
    at `q + first(q)` with `q = p + second(p)`: one warp by
    `second + warp(first, second)` (bilinear, border padding). The two
    differ by interpolation error only: the composed field interpolates
    `first` once and the image once, where warping twice interpolates the
    warped image again; for an image linear in `p` (and points that stay
    inside) they agree to rounding.
    Convention: as `warp`; both fields in the same channel order.

    Args:
        first: float tensor `(B, H, W, 2)` or `(B, D, H, W, 3)`, applied
            first.
        second: float tensor of the same shape, applied second.
        indexing: `"ij"` or `"xy"`. Defaults to `"ij"`.
    Returns:
        Tensor like `second`.
    Raises:
        ValueError: if the fields are malformed or differ in shape.
    """
    argument_validation.check_choice(indexing, INDEXINGS, "indexing")
    first, _ = _check_field(first, "first")
    second, _ = _check_field(second, "second")
    if len(first.shape) != len(second.shape):
        raise ValueError(
            "`first` and `second` must have the same shape (B, *spatial, N). "
            f"Received: first.shape={tuple(first.shape)}, second.shape="
            f"{tuple(second.shape)}"
        )
    argument_validation.check_same_batch(first, second, "first", "second")
    argument_validation.check_same_spatial_shape(
        first, second, "first", "second"
    )
    moved = warp(first, second, "bilinear", "border", indexing)
    return second + ops.cast(moved, second.dtype)
