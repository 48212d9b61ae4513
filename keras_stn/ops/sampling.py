"""The entry of every sampler: one function validates, resolves the
switches and runs the kernel, for images and volumes alike.

An image and its grid go through `sample`: the arguments are checked once
(the input's rank decides 2-D or 3-D here and nowhere else), `deterministic`
is resolved, float16/bfloat16 are computed in float32, and the kernel comes
from the kernel seam (`keras_stn.ops.backend`: a framework's native
kernel where one serves the call) or from the package's own kernels
(`bilinear`, `trilinear`, `nearest`, `bicubic`), compiled by the seam
(op-level XLA on TensorFlow). The named samplers (`bilinear_sample`,
`trilinear_sample`, ...) are `sample` with their kernel.

Convention: channels-last images `(B, H, W, C)` with grids
`(B, H_out, W_out, 2)` of `(x, y)` in `[-1, 1]`; volumes
`(B, D, H, W, C)` with grids `(B, D_out, H_out, W_out, 3)` of `(x, y, z)`;
`padding_mode` and `align_corners` as in PyTorch's `grid_sample`, whose
values and gradients these reproduce.
"""

import numpy as np
from keras import ops

from keras_stn import config
from keras_stn.ops import antialias as antialias_lib
from keras_stn.ops import backend
from keras_stn.ops import bicubic
from keras_stn.ops import bilinear
from keras_stn.ops import coordinates
from keras_stn.ops import nearest
from keras_stn.ops import trilinear
from keras_stn.utils import argument_validation
from keras_stn.utils import shapes
from keras_stn.utils import types

KERNELS = ("bilinear", "nearest", "bicubic")

# Per number of spatial axes: the input's axes and the grid's.
_FORMS = {
    2: (("B", "H", "W", "C"), ("B", "H_out", "W_out", 2)),
    3: (("B", "D", "H", "W", "C"), ("B", "D_out", "H_out", "W_out", 3)),
}

# The package's own kernel per (kernel, spatial axes): its `plan`.
_PLANS = {
    ("bilinear", 2): bilinear.plan,
    ("bilinear", 3): trilinear.plan,
    ("nearest", 2): nearest.plan,
    ("nearest", 3): nearest.plan,
    ("bicubic", 2): bicubic.plan,
}


def spatial_axes(images: types.TensorLike) -> int | None:
    """2 for images `(B, H, W, C)`, 3 for volumes `(B, D, H, W, C)`, else
    None: the one place that tells images and volumes apart."""
    shape = getattr(images, "shape", None)
    rank = len(shape if shape is not None else np.shape(images))
    return {4: 2, 5: 3}.get(rank)


def _form(axes):
    return "(" + ", ".join(str(axis) for axis in axes) + ")"


def check_sample_args(
    images, grid, padding_mode, align_corners=False, num_axes=None,
    name=None,
):
    """Validates the arguments every sampler shares.

    Args:
        images, grid, padding_mode, align_corners: as `sample`'s.
        num_axes: 2 or 3 to require images or volumes; None takes either,
            by the rank of `images`.
        name: the input's name in messages (default: `"images"`, or
            `"volumes"` when `num_axes` is 3).
    Returns:
        `(images, grid, num_axes)`, the first two as float tensors.
    Raises:
        ValueError: naming the argument, its expected form and the value.
    """
    argument_validation.check_choice(
        padding_mode, coordinates.PADDING_MODES, "padding_mode"
    )
    argument_validation.check_bool(align_corners, "align_corners")
    name = name or ("volumes" if num_axes == 3 else "images")
    images = argument_validation.as_float_tensor(images, name)
    grid = argument_validation.as_float_tensor(grid, "grid")
    found = spatial_axes(images)
    if num_axes is None and found is None:
        raise ValueError(
            f"`{name}` must have shape {_form(_FORMS[2][0])} or "
            f"{_form(_FORMS[3][0])}. Received: {name}.shape="
            f"{tuple(images.shape)} (rank {len(images.shape)})"
        )
    num_axes = num_axes or found
    image_form, grid_form = _FORMS[num_axes]
    shapes.check_shapes((name, images, image_form), ("grid", grid, grid_form))
    for axis, size in zip(image_form[1:], images.shape[1:]):
        if size == 0:
            what = "channel" if axis == "C" else f"non-empty {axis}"
            raise ValueError(
                f"`{name}` must have a {what} axis of at least one entry: "
                f"shape {_form(image_form)}. Received: {name}.shape="
                f"{tuple(images.shape)}"
            )
    # What the static checks could not see (None dims in a traced graph).
    grid = backend.assert_dims(
        grid,
        {num_axes + 1: num_axes},
        f"`grid` must have shape {_form(grid_form)}.",
        "grid",
    )
    grid = backend.assert_dims(
        grid,
        {0: shapes.dims(images)[0]},
        f"`{name}` and `grid` must have the same batch size.",
        "grid",
    )
    return images, grid, num_axes


def sample(
    images: types.TensorLike,
    grid: types.TensorLike,
    kernel: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = False,
    antialias: bool | int = False,
    deterministic: bool | None = None,
) -> types.Tensor:
    """Samples `images` at `grid` with any kernel, optionally anti-aliased.

    With anti-aliasing, each output pixel averages `S x S` samples spread
    over its footprint in the input (`antialias.supersample_grid`), which
    removes the aliasing of a downsampling transform; it stays
    differentiable w.r.t. images and grid and costs `S^2` times the
    sampling.
    Convention: as `bilinear_sample`.

    Volumes `(B, D, H, W, C)` with grids `(B, D_out, H_out, W_out, 3)` are
    sampled trilinearly (`"bilinear"`) or at the nearest voxel.

    Args:
        images: float tensor `(B, H, W, C)` (or volumes `(B, D, H, W, C)`).
        grid: float tensor `(B, H_out, W_out, 2)` (volumes: `(B, D_out,
            H_out, W_out, 3)`).
        kernel: `"bilinear"` (the paper's), `"nearest"` or `"bicubic"`.
        padding_mode: `"zeros"`, `"border"` or `"reflection"`.
        align_corners: bool. Defaults to `False`.
        antialias: bool or int. `True` supersamples by
            `max(2, ceil(input size / output size))`; an int sets the
            factor; `False` (default) samples once per pixel.
        deterministic: bool, whether the gradient w.r.t. `images` is
            bitwise reproducible on GPUs; None (the default) follows
            `keras_stn.config.deterministic()`.
    Returns:
        Tensor `(B, H_out, W_out, C)` (volumes: `(B, D_out, H_out, W_out,
        C)`) with the dtype of `images`.
    Raises:
        ValueError: an unknown kernel, a bad `antialias`, bicubic or
            anti-aliased volumes, and as `bilinear_sample`.
    """
    return _sample(
        images, grid, kernel, padding_mode, align_corners, antialias,
        deterministic,
    )


def _sample(
    images, grid, kernel, padding_mode, align_corners, antialias,
    deterministic, num_axes=None,
):
    """`sample`; `num_axes` 2 or 3 requires images or volumes (the named
    samplers), and names the input `"volumes"` for 3."""
    argument_validation.check_choice(kernel, KERNELS, "kernel")
    images, grid, num_axes = check_sample_args(
        images, grid, padding_mode, align_corners, num_axes
    )
    if num_axes == 3:
        if kernel == "bicubic" or antialias not in (False, 0, 1):
            raise ValueError(
                "Volumes `(B, D, H, W, C)` are sampled with "
                "kernel='bilinear' (trilinear) or 'nearest', without "
                f"anti-aliasing. Received: kernel={kernel!r}, "
                f"antialias={antialias!r}"
            )
        factor = 1
    else:
        factor = antialias_lib.antialias_factor(
            antialias, tuple(images.shape[1:3]), tuple(grid.shape[1:3])
        )
    deterministic = config.resolve_deterministic(deterministic)
    if factor == 1:
        return _run(
            kernel, num_axes, images, grid, padding_mode, bool(align_corners),
            deterministic,
        )
    _, height, width, _ = shapes.dims(grid)
    fine = antialias_lib.supersample_grid(grid, factor)
    out = _run(
        kernel, num_axes, images, fine, padding_mode, bool(align_corners),
        deterministic,
    )
    channels = images.shape[-1] or ops.shape(images)[-1]
    out = ops.reshape(out, (-1, height, factor, width, factor, channels))
    # A sum, not ops.mean: Keras' JAX mean drops float64 to float32.
    return ops.sum(out, axis=(2, 4)) / float(factor * factor)


def _run(kernel, num_axes, images, grid, padding_mode, align_corners,
         deterministic):
    """One kernel on checked inputs: computed in float32 or float64,
    returned in the dtype of `images`."""
    out_dtype = images.dtype
    dtype = argument_validation.compute_dtype(images.dtype, grid.dtype)
    images, grid = ops.cast(images, dtype), ops.cast(grid, dtype)
    plan = _PLANS[(kernel, num_axes)](
        images, padding_mode, align_corners, deterministic
    )
    own = backend.xla_compiled(**plan)
    native = backend.native_sampler(
        kernel, num_axes, padding_mode, align_corners, images, deterministic
    )
    if native is not None:
        output = native(
            images, grid, kernel, padding_mode, align_corners, reference=own
        )
    else:
        output = own(images, grid)
    return ops.cast(output, out_dtype)


def bilinear_sample(
    images: types.TensorLike,
    grid: types.TensorLike,
    padding_mode: str = "zeros",
    align_corners: bool = False,
    deterministic: bool | None = None,
) -> types.Tensor:
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
    3)` are sampled trilinearly (`trilinear_sample`, PyTorch's 5-D
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
            differ, an empty spatial or channel axis, non-float images, an
            unknown `padding_mode` or a `deterministic` that is not a bool
            or None.

    Example:
    >>> import numpy as np
    >>> images = np.arange(4.0, dtype="float32").reshape(1, 2, 2, 1)
    >>> grid = np.array([[[[0.0, 0.0]]]], dtype="float32")  # the centre
    >>> float(bilinear_sample(images, grid)[0, 0, 0, 0])
    1.5
    """
    return sample(
        images, grid, "bilinear", padding_mode, align_corners,
        deterministic=deterministic,
    )


def trilinear_sample(
    volumes: types.TensorLike,
    grid: types.TensorLike,
    padding_mode: str = "zeros",
    align_corners: bool = False,
    deterministic: bool | None = None,
) -> types.Tensor:
    """Samples `volumes` at normalised `(x, y, z)` points, trilinearly.

    Each output voxel interpolates the eight input voxels around its point.
    Values and gradients (w.r.t. volumes and grid) equal PyTorch's
    `grid_sample(mode="bilinear")` on 5-D input. The kernel's gradient is
    hand-written and differentiable (second derivatives flow); the volume
    gradient is the scatter-add that transposes the tap gathers.
    Convention: grid is `(x, y, z)` in `[-1, 1]` (`x` along `W`, `z` along
    `D`), channels-last; `padding_mode` and `align_corners` as in PyTorch.

    NaN grid points sample zeros and get zero gradients, and so do
    infinite ones under `"zeros"` and `"reflection"` padding; under
    `"border"` padding an infinite point reads the border (as in 2-D and in
    PyTorch), with a zero derivative along its infinite axis. The other
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
            differ, an empty spatial or channel axis, non-float volumes, an
            unknown `padding_mode` or a non-bool `deterministic`.

    Example:
    >>> import numpy as np
    >>> volumes = np.arange(8.0, dtype="float32").reshape(1, 2, 2, 2, 1)
    >>> grid = np.zeros((1, 1, 1, 1, 3), dtype="float32")  # the centre
    >>> float(trilinear_sample(volumes, grid)[0, 0, 0, 0, 0])
    3.5
    """
    return _sample(
        volumes, grid, "bilinear", padding_mode, align_corners, False,
        deterministic, num_axes=3,
    )


def nearest_sample(
    images: types.TensorLike,
    grid: types.TensorLike,
    padding_mode: str = "zeros",
    align_corners: bool = False,
    deterministic: bool | None = None,
) -> types.Tensor:
    """Samples `images` at the pixel nearest each grid point.

    Volumes `(B, D, H, W, C)` go to `nearest_sample_3d`.

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
    return sample(
        images, grid, "nearest", padding_mode, align_corners,
        deterministic=deterministic,
    )


def nearest_sample_3d(
    volumes: types.TensorLike,
    grid: types.TensorLike,
    padding_mode: str = "zeros",
    align_corners: bool = False,
    deterministic: bool | None = None,
) -> types.Tensor:
    """Samples `volumes` at the voxel nearest each grid point.

    Values equal PyTorch's `grid_sample(mode="nearest")` on 5-D input (ties
    round to even). The gradient w.r.t. `volumes` is the scatter-add of the
    upstream gradient onto the chosen voxels; w.r.t. `grid` it is zero (the
    output is piecewise constant in the grid): use it for labels and
    inference. NaN points read zeros, and so do infinite ones except under
    `"border"` padding, where they read the border (as in 2-D and in
    PyTorch).
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
    return _sample(
        volumes, grid, "nearest", padding_mode, align_corners, False,
        deterministic, num_axes=3,
    )


def bicubic_sample(
    images: types.TensorLike,
    grid: types.TensorLike,
    padding_mode: str = "zeros",
    align_corners: bool = False,
    deterministic: bool | None = None,
) -> types.Tensor:
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
    return _sample(
        images, grid, "bicubic", padding_mode, align_corners, False,
        deterministic, num_axes=2,
    )
