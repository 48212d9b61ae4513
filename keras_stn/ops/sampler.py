"""One entry point for every sampling kernel, with optional anti-aliasing.

Convention: as `sampling.bilinear_sample` (channels-last images, grid
`(B, H_out, W_out, 2)` of `(x, y)` in `[-1, 1]`, PyTorch's `padding_mode`
and `align_corners`).
"""

from keras import ops

from keras_stn import config
from keras_stn.utils import argument_validation
from keras_stn.ops import antialias as antialias_lib
from keras_stn.ops import kernels
from keras_stn.ops import sampling

KERNELS = ("bilinear", "nearest", "bicubic")


def _sample_volumes(
    volumes, grid, kernel, padding_mode, align_corners, antialias, deterministic
):
    """`sample` on volumes: trilinear or nearest, no anti-aliasing."""
    from keras_stn.ops import volumes as volumes_lib

    if kernel == "bicubic" or antialias not in (False, 0, 1):
        raise ValueError(
            "Volumes `(B, D, H, W, C)` are sampled with kernel='bilinear' "
            "(trilinear) or 'nearest', without anti-aliasing. Received: "
            f"kernel={kernel!r}, antialias={antialias!r}"
        )
    if kernel == "nearest":
        return volumes_lib.nearest_sample_3d(
            volumes, grid, padding_mode, align_corners, deterministic
        )
    return volumes_lib.trilinear_sample(
        volumes, grid, padding_mode, align_corners, deterministic
    )


def sample(
    images,
    grid,
    kernel="bilinear",
    padding_mode="zeros",
    align_corners=False,
    antialias=False,
    deterministic=None,
):
    """Samples `images` at `grid` with any kernel, optionally anti-aliased.

    With anti-aliasing, each output pixel averages `S x S` samples spread
    over its footprint in the input (`antialias.supersample_grid`), which
    removes the aliasing of a downsampling transform; it stays
    differentiable w.r.t. images and grid and costs `S^2` times the
    sampling.
    Convention: as `sampling.bilinear_sample`.

    Volumes `(B, D, H, W, C)` with grids `(B, D_out, H_out, W_out, 3)` are
    sampled trilinearly (`"bilinear"`) or at the nearest voxel.

    Args:
        images: float tensor `(B, H, W, C)`.
        grid: float tensor `(B, H_out, W_out, 2)`.
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
        Tensor `(B, H_out, W_out, C)` with the dtype of `images`.
    Raises:
        ValueError: an unknown kernel, a bad `antialias`, and as
            `bilinear_sample`.
    """
    argument_validation.check_choice(kernel, KERNELS, "kernel")
    if sampling.is_volume(images):
        return _sample_volumes(
            images,
            grid,
            kernel,
            padding_mode,
            align_corners,
            antialias,
            deterministic,
        )
    images, grid = sampling.check_sample_args(
        images, grid, padding_mode, align_corners
    )
    samplers = {
        "bilinear": sampling.bilinear_sample,
        "nearest": kernels.nearest_sample,
        "bicubic": kernels.bicubic_sample,
    }
    factor = antialias_lib.antialias_factor(
        antialias, tuple(images.shape[1:3]), tuple(grid.shape[1:3])
    )
    deterministic = config.resolve_deterministic(deterministic)
    if factor == 1:
        return samplers[kernel](
            images, grid, padding_mode, align_corners, deterministic
        )
    _, height, width, _ = sampling.dims(grid)
    fine = antialias_lib.supersample_grid(grid, factor)
    out = samplers[kernel](
        images, fine, padding_mode, align_corners, deterministic
    )
    channels = images.shape[-1] or ops.shape(images)[-1]
    out = ops.reshape(out, (-1, height, factor, width, factor, channels))
    # A sum, not ops.mean: Keras' JAX mean drops float64 to float32.
    return ops.sum(out, axis=(2, 4)) / float(factor * factor)
