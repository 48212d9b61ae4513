"""PyTorch's own `grid_sample` and `affine_grid` under the package's
contracts, for Keras' PyTorch backend.

The package's conventions are PyTorch's (`padding_mode`, `align_corners`,
the kernels' values and gradients), so on the torch backend the samplers can
run torch's native kernels. What this module adds on top of them:

- the layout: images are channels-last `(B, *spatial, C)`; torch's kernels
  take channels-first tensors, which a permuted view of the same memory is
  (no copy: the kernels read any strides). Their output, and the image
  gradient, come back as channels-first memory, returned as channels-last
  views (no copy either; `.contiguous()` is the caller's choice);
- the package's contract on non-finite points: NaN points sample zeros with
  zero gradient; so do infinite ones and those whose index overflows,
  except under border padding (bilinear/trilinear and nearest), where an
  infinite index reads the border with a zero derivative along that axis,
  as in PyTorch, in 2-D and 3-D alike. PyTorch itself gives NaN, or reads
  out of bounds, at such points: they are moved out of the input before
  the kernel runs and masked after it;
- second derivatives: the first-order gradient is torch's native backward;
  when a derivative of it is wanted (`create_graph=True`) it is recomputed
  by differentiable ops (`sample`'s `reference`, else torch's own).

Convention: as `keras_stn.ops.sampling`: a grid is `(B, *out_spatial, N)`
holding `(x, y)` (N = 2) or `(x, y, z)` (N = 3) in `[-1, 1]`, `x` along
the last spatial axis.
"""

import math
import warnings

import torch
from torch.nn import functional

# The interpolation and padding enums of ATen's grid sampler (the ints
# `torch.nn.functional.grid_sample` passes down).
_MODES = {"bilinear": 0, "nearest": 1, "bicubic": 2}
_PADDINGS = {"zeros": 0, "border": 1, "reflection": 2}

# Where an invalid point is moved before the kernel reads it: along every
# axis of more than one pixel its index is -4 or less, so that every tap,
# bicubic's included (two pixels each side), lies outside the input.
_FAR = -8.0

# `torch.compiler.is_compiling` appeared in torch 2.3 (the package allows
# 2.1, which has no `torch.compiler` check to make).
_is_compiling = getattr(
    getattr(torch, "compiler", None), "is_compiling", lambda: False
)


def supports(
    kernel, num_axes, padding_mode, align_corners, images, deterministic
):
    """Whether torch's native kernel serves this sampler call.

    Args:
        kernel: `"bilinear"`, `"nearest"` or `"bicubic"`.
        num_axes: 2 (images) or 3 (volumes).
        padding_mode: `"zeros"`, `"border"` or `"reflection"`.
        align_corners: bool (every value is served).
        images: the images tensor `(B, *spatial, C)` (its device and size
            are read).
        deterministic: bool, whether the image gradient must be bitwise
            reproducible.
    Returns:
        bool.
    """
    del align_corners
    if kernel not in _MODES or padding_mode not in _PADDINGS:
        return False
    # PyTorch has no 3-D bicubic mode.
    if num_axes not in (2, 3) or (kernel == "bicubic" and num_axes != 2):
        return False
    # Empty inputs (C = 0 or an empty axis) keep the package's own path and
    # its errors.
    if not isinstance(images, torch.Tensor) or images.numel() == 0:
        return False
    # `deterministic=True` promises more than reproducible bits: sums
    # exact to float32 rounding however many updates a pixel receives
    # (the package's integer sum). ATen's CPU backward is reproducible
    # (one thread sums each sample, in a fixed order) but rounds every
    # addition: 184 ulps on a heavy zoom (determinism_test). CUDA's adds
    # with float atomics. Both keep the package's path then, and so does
    # torch's own deterministic mode on CUDA (which refuses that backward).
    if deterministic:
        return False
    if images.device.type == "cpu":
        return True
    if images.device.type == "cuda":
        return not torch.are_deterministic_algorithms_enabled()
    return False


def sample(images, grid, kernel, padding_mode, align_corners, reference=None):
    """Samples channels-last `images` at `grid` with torch's native kernel.

    Values and both gradients are torch's `grid_sample`'s at finite points;
    see the module docstring for non-finite ones. float16 and bfloat16 are
    computed in float32 (float64 if either input is float64) and returned
    in the dtype of `images`.

    Args:
        images: float tensor `(B, H, W, C)` or `(B, D, H, W, C)`.
        grid: float tensor `(B, H_out, W_out, 2)` or
            `(B, D_out, H_out, W_out, 3)`.
        kernel: `"bilinear"`, `"nearest"` or `"bicubic"` (2-D only).
        padding_mode: `"zeros"`, `"border"` or `"reflection"`.
        align_corners: bool.
        reference: optional differentiable function `(images, grid) ->
            output` computing the same thing (the package's generic
            sampler): the gradient is recomputed through it when a
            derivative of the gradient is asked for (`create_graph=True`).
            Without it, torch's own differentiable `grid_sample` is used,
            whose second derivatives need torch 2.12 or later.
    Returns:
        Tensor `(B, *out_spatial, C)` with the dtype of `images`, a
        channels-last view of channels-first memory.
    """
    dtype = (
        torch.float64
        if torch.float64 in (images.dtype, grid.dtype)
        else torch.float32
    )
    output = _GridSample.apply(
        images.to(dtype),
        grid.to(dtype),
        kernel,
        padding_mode,
        bool(align_corners),
        reference,
    )
    return output.to(images.dtype)


def affine_grid(theta, size, align_corners):
    """Torch's `affine_grid` with the package's contract on non-finite
    theta (`grids.guard_non_finite`): a sample whose theta holds NaN or inf
    anywhere gets NaN at every point (which every sampler and padding
    reads as zeros; torch's own grid would keep the coordinates that the
    bad entry does not touch, and an infinite one would read the border)
    and a zero theta gradient, so it cannot poison the batch.

    Convention: theta maps output points to input points, in normalised
    coordinates; the grid's last axis is `(x, y)` or `(x, y, z)`.

    Args:
        theta: float32/64 tensor `(B, 2, 3)` or `(B, 3, 4)`.
        size: `(H_out, W_out)` or `(D_out, H_out, W_out)`, positive ints.
        align_corners: bool.
    Returns:
        Tensor `(B, *size, N)`, N = 2 or 3, in the dtype of theta.
    """
    theta = _GuardNonFinite.apply(theta)
    size = (theta.shape[0], 1, *size)
    with warnings.catch_warnings():
        # Torch warns on every 1-pixel axis with align_corners=True that
        # its coordinate changed in torch 1.3 (to 0, the package's).
        warnings.filterwarnings("ignore", "Since version 1.3.0, affine_grid")
        return functional.affine_grid(
            theta, size, align_corners=bool(align_corners)
        )


def _finite_samples(theta):
    """Bool `(B, 1, ...)`: the samples whose theta `(B, ...)` is finite."""
    finite = torch.isfinite(theta).flatten(1).all(dim=1)
    return finite.reshape(-1, *([1] * (theta.dim() - 1)))


class _GuardNonFinite(torch.autograd.Function):
    """Theta `(B, ...)` with every entry of a non-finite sample NaN; its
    gradient is zero for those samples."""

    @staticmethod
    def forward(ctx, theta):
        finite = _finite_samples(theta)
        ctx.save_for_backward(finite)
        return theta.masked_fill(~finite, math.nan)

    @staticmethod
    def backward(ctx, upstream):
        """d theta = upstream where the sample's theta is finite, else 0
        (a `where`, differentiable for second derivatives)."""
        (finite,) = ctx.saved_tensors
        return torch.where(finite, upstream, torch.zeros_like(upstream))


def _all_points_valid(grid):
    """Whether no point of `grid` needs the non-finite handling, found in
    one pass over it: the sum of squares is finite exactly when every
    coordinate is, and small enough (|x| < 1e19 in float32) that no index
    overflows. Squares cannot cancel; when the sum itself overflows the
    careful path runs and gives the same answer. Only on a CPU, where the
    read-back costs nothing: on a GPU it would wait for the device, and
    under `torch.compile` it would break the graph, so there the careful
    path always runs."""
    if grid.device.type != "cpu" or _is_compiling():
        return False
    flat = grid.reshape(-1)
    return math.isfinite(torch.dot(flat, flat).item())


def _valid_points(grid, sizes, clamps_infinite, align_corners):
    """The points the package samples, bool `(B, *out_spatial)`.

    A point is valid when each of its indices, unnormalised as
    `coordinates.unnormalize` does, is finite; where `clamps_infinite`
    (border padding), when none is NaN: an infinite index reads the border.

    Args:
        grid: float tensor `(B, *out_spatial, N)`.
        sizes: N ints, the input's size along each grid axis (`(W, H)` or
            `(W, H, D)`).
    """
    valid = None
    for axis, size in enumerate(sizes):
        coord = grid[..., axis]
        if align_corners:
            index = (coord + 1.0) * ((size - 1) / 2.0)
        else:
            index = ((coord + 1.0) * size - 1.0) / 2.0
        ok = ~torch.isnan(index) if clamps_infinite else torch.isfinite(index)
        valid = ok if valid is None else valid & ok
    return valid


def _masks_output(sizes, padding_mode, align_corners):
    """Whether a point moved to `_FAR` can read a pixel, so that the output
    must be masked: under border and reflection padding, and under zero
    padding when every axis has one pixel with `align_corners=True` (every
    index is then 0)."""
    if padding_mode != "zeros":
        return True
    return align_corners and all(size == 1 for size in sizes)


def _native(images, grid, kernel, padding_mode, align_corners):
    """Torch's kernel on channels-last `images`; channels-first output."""
    forward = (
        torch.ops.aten.grid_sampler_2d
        if grid.shape[-1] == 2
        else torch.ops.aten.grid_sampler_3d
    )
    return forward(
        images.movedim(-1, 1),
        grid,
        _MODES[kernel],
        _PADDINGS[padding_mode],
        align_corners,
    )


class _GridSample(torch.autograd.Function):
    """Torch's grid sampler with the package's contracts (`sample`)."""

    @staticmethod
    def forward(
        ctx, images, grid, kernel, padding_mode, align_corners, reference
    ):
        sizes = tuple(images.shape[1:-1])[::-1]
        valid = safe = None
        mask_output = False
        if not _all_points_valid(grid):
            clamps = padding_mode == "border" and kernel != "bicubic"
            valid = _valid_points(grid, sizes, clamps, align_corners)
            safe = torch.where(valid[..., None], grid, _FAR)
            mask_output = _masks_output(sizes, padding_mode, align_corners)
        output = _native(
            images,
            grid if safe is None else safe,
            kernel,
            padding_mode,
            align_corners,
        )
        if mask_output:
            output.masked_fill_(~valid.unsqueeze(1), 0.0)
        ctx.save_for_backward(images, grid, safe, valid)
        ctx.settings = (
            kernel,
            padding_mode,
            align_corners,
            mask_output,
            reference,
        )
        return output.movedim(1, -1)

    @staticmethod
    def backward(ctx, upstream):
        """Torch's native backward; a differentiable recomputation when
        the gradient is itself differentiated (grad mode is on inside a
        backward only under `create_graph=True`)."""
        images, grid, safe, valid = ctx.saved_tensors
        needs = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():
            grads = _differentiable_gradients(
                images, grid, upstream, needs, valid, ctx.settings
            )
        else:
            grads = _native_gradients(
                images, grid, safe, valid, upstream, needs, ctx.settings
            )
        return (*grads, None, None, None, None)


def _native_gradients(images, grid, safe, valid, upstream, needs, settings):
    """`(d images, d grid)` by ATen's backward kernel (None where not
    needed), invalid points contributing nothing."""
    kernel, padding_mode, align_corners, mask_output, _ = settings
    upstream = upstream.movedim(-1, 1)
    if mask_output:
        upstream = upstream.masked_fill(~valid.unsqueeze(1), 0.0)
    backward = (
        torch.ops.aten.grid_sampler_2d_backward
        if grid.shape[-1] == 2
        else torch.ops.aten.grid_sampler_3d_backward
    )
    d_images, d_grid = backward(
        upstream,
        images.movedim(-1, 1),
        grid if safe is None else safe,
        _MODES[kernel],
        _PADDINGS[padding_mode],
        align_corners,
        [needs[0], needs[1]],
    )
    d_images = d_images.movedim(1, -1) if needs[0] else None
    if not needs[1]:
        d_grid = None
    elif valid is not None:
        # Even a point moved outside gets NaN from a non-finite pixel
        # times its zero upstream.
        d_grid = d_grid.masked_fill(~valid[..., None], 0.0)
    return d_images, d_grid


def _differentiable_gradients(images, grid, upstream, needs, valid, settings):
    """`(d images, d grid)` as differentiable functions of the inputs and
    of `upstream` (None where not needed): the output recomputed by
    `reference`, else by torch's own differentiable sampler, and
    differentiated with `create_graph=True`."""
    kernel, padding_mode, align_corners, mask_output, reference = settings
    if reference is not None:
        output = reference(images, grid)
    else:
        safe = grid
        if valid is not None:
            safe = torch.where(valid[..., None], grid, _FAR)
        output = _native(images, safe, kernel, padding_mode, align_corners)
        if mask_output:
            output = output.masked_fill(~valid.unsqueeze(1), 0.0)
        output = output.movedim(1, -1)
    inputs = [t for t, need in zip((images, grid), needs) if need]
    grads = iter(
        torch.autograd.grad(
            output, inputs, upstream, create_graph=True, allow_unused=True
        )
    )
    result = []
    for tensor, need in zip((images, grid), needs):
        grad = next(grads) if need else None
        if need and grad is None:  # e.g. nearest: no path to the grid
            grad = torch.zeros_like(tensor)
        result.append(grad)
    return tuple(result)
