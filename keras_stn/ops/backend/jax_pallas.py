"""A Pallas kernel for bilinear sampling under JAX: the native sampler of
the JAX backend on GPUs (Triton lowering), run in interpret mode on CPUs.

Convention (PyTorch's `grid_sample(mode="bilinear")`): images channels-last
`(B, H, W, C)`; a grid `(B, H_out, W_out, 2)` of `(x, y)` in `[-1, 1]`;
`padding_mode` and `align_corners` as in PyTorch.

Design:
- The forward pass is one kernel: each program takes a block of points and
  every channel, computes the four taps' indices and weights once per point
  and reads each tap as a `(points, channels)` gather.
- The backward pass is one kernel too: per point it reads the upstream
  gradient and the four taps once and writes both gradients. The grid's
  gradient is a per-point reduction over channels (no conflicts). The
  images' gradient is a scatter-add, done with float atomics
  (`plgpu.atomic_add`): a gather-based transpose needs, per input pixel,
  the list of points that read it, which an arbitrary grid does not give
  without a sort of every point (as expensive as the step itself). Atomics
  make the sum's order, and so its last bits, vary from run to run:
  `supports` leaves `deterministic=True` to the package's exact
  integer-sum path.
- Both are wrapped in `jax.custom_vjp`. The backward kernel is itself a
  `jax.custom_vjp` whose own backward (second derivatives) differentiates
  `_reference_sample`, a plain-`jax.numpy` twin of the kernel built on the
  same point arithmetic (`_point_math`): Pallas kernels have no derivative
  rules of their own, and the backward-of-backward is rare (gradient
  penalties), so it runs on XLA. Forward-mode derivatives (`jax.jvp`,
  `jax.hessian`) are not available through `custom_vjp`.

Pallas' interpret mode runs the same kernels on a CPU (the tests), with
blocks that fit it (`_Config`): one point per program in the backward pass,
since interpret mode emulates an atomic add of a block by a gather and a
scatter, which loses the sum of two lanes that hit the same pixel (on a
GPU each lane's add is atomic), and no spare lanes. The ragged blocks and
masks of the GPU's blocks are therefore exercised on GPUs only.

The twin of the point arithmetic in the package's XLA path is
`keras_stn.ops.sampling.sample_points` (with `coordinates.pixel_indices`
and `coordinates.apply_padding`); `_point_math` repeats it in `jax.numpy`
primitives that Triton lowers (`floor`, `rem`, selects).
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

MODES = ("auto", "pallas", "xla")
PADDING_MODES = ("zeros", "border", "reflection")

# The most channels one program holds (a `(points, channels)` block of
# about this many elements per program keeps a GPU's registers busy).
_MAX_CHANNELS = 1024
_BLOCK_ELEMENTS = 1024
_NUM_WARPS = 4
# Flat int32 offsets address the images, the grid and the output.
_MAX_ELEMENTS = 2**31 - 1

_state = {"mode": "auto"}


def set_mode(mode):
    """Chooses when the JAX backend samples with the Pallas kernel.

    Args:
        mode: str, `"auto"` (the default: on GPUs, for 2-D bilinear
            sampling without `deterministic`), `"pallas"` (wherever it
            applies, in interpret mode on CPUs: for tests) or `"xla"`
            (never).
    Raises:
        ValueError: if `mode` is not one of `MODES`.
    """
    if mode not in MODES:
        raise ValueError(
            f"`mode` must be one of {MODES}. Received: mode={mode!r}"
        )
    _state["mode"] = mode


def mode():
    """Returns the mode given to `set_mode` (`"auto"` by default)."""
    return _state["mode"]


def supports(
    kernel, num_axes, padding_mode, align_corners, images, deterministic
):
    """Whether `sample` serves this call.

    Args:
        kernel: str, the sampler's kernel (only `"bilinear"` is served).
        num_axes: int, the number of spatial axes (only 2).
        padding_mode: str.
        align_corners: bool (every value is served).
        images: the images `(B, H, W, C)` (their dtype and size decide).
        deterministic: bool, whether the images' gradient must be bitwise
            reproducible (not with GPU atomics).
    Returns:
        bool.
    """
    del align_corners
    chosen = mode()
    if chosen == "xla" or kernel != "bilinear" or num_axes != 2:
        return False
    if padding_mode not in PADDING_MODES:
        return False
    shape = tuple(images.shape)
    if len(shape) != 4 or any(not isinstance(s, int) for s in shape):
        return False
    if str(images.dtype) not in ("float32", "float64"):
        return False
    if shape[-1] > _MAX_CHANNELS or _size(shape) > _MAX_ELEMENTS:
        return False
    on_gpu = jax.default_backend() == "gpu"
    if deterministic and on_gpu:
        return False
    return chosen == "pallas" or on_gpu


def _size(shape):
    size = 1
    for s in shape:
        size *= s
    return size


def sample(
    images, grid, kernel="bilinear", padding_mode="zeros", align_corners=False
):
    """Bilinear sampling of `images` at `grid` with the Pallas kernels.

    Values and both gradients are those of `keras_stn.ops.bilinear_sample`
    (PyTorch's `grid_sample`): non-finite points (NaN; inf except under
    border padding) sample zeros with zero gradient; under border padding
    an infinite point reads the border with a zero derivative along its
    axis; a point further than one pixel outside reads exactly zero, even
    next to a non-finite edge pixel.
    Convention: grid is `(x, y)` in `[-1, 1]`, channels-last.

    Args:
        images: float32 or float64 array `(B, H, W, C)`.
        grid: float array `(B, H_out, W_out, 2)`.
        kernel: str, `"bilinear"`.
        padding_mode: str, `"zeros"`, `"border"` or `"reflection"`.
        align_corners: bool.
    Returns:
        Array `(B, H_out, W_out, C)` with the dtype of `images`.
    Raises:
        ValueError: on another kernel or padding mode, or shapes that do
            not fit.
    """
    if kernel != "bilinear":
        raise ValueError(
            f"`kernel` must be 'bilinear'. Received: kernel={kernel!r}"
        )
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"`padding_mode` must be one of {PADDING_MODES}. Received: "
            f"padding_mode={padding_mode!r}"
        )
    images = jnp.asarray(images)
    grid = jnp.asarray(grid, images.dtype)
    if images.ndim != 4 or grid.ndim != 4 or grid.shape[-1] != 2:
        raise ValueError(
            "`images` must be (B, H, W, C) and `grid` (B, H_out, W_out, 2) "
            f"with the same B. Received: images.shape={images.shape}, "
            f"grid.shape={grid.shape}"
        )
    if grid.shape[0] != images.shape[0]:
        raise ValueError(
            "`images` and `grid` must have the same batch size. Received: "
            f"images.shape={images.shape}, grid.shape={grid.shape}"
        )
    batch, height, width, channels = images.shape
    out_shape = (*grid.shape[:3], channels)
    if _size(out_shape) > _MAX_ELEMENTS or _size(grid.shape) > _MAX_ELEMENTS:
        raise ValueError(
            f"The output must have at most {_MAX_ELEMENTS} elements (int32 "
            f"offsets). Received: grid.shape={grid.shape}, channels="
            f"{channels}"
        )
    if _size(out_shape) == 0:
        return jnp.zeros(out_shape, images.dtype)
    config = _Config(
        batch,
        height,
        width,
        channels,
        grid.shape[1] * grid.shape[2],
        padding_mode,
        bool(align_corners),
        _interpret(),
    )
    output = _sample(images.reshape(-1), grid.reshape(-1), config)
    return output.reshape(out_shape)


def _interpret():
    """Whether the kernels run in Pallas' interpret mode: off GPUs."""
    return jax.default_backend() != "gpu"


class _Config(tuple):
    """The static description of one sampling call (hashable, so that it
    can be a `nondiff_argnums` argument)."""

    __slots__ = ()
    _fields = (
        "batch",
        "height",
        "width",
        "channels",
        "points_per_image",
        "padding_mode",
        "align_corners",
        "interpret",
    )

    def __new__(cls, *values):
        return super().__new__(cls, values)

    def __getattr__(self, name):
        try:
            return self[self._fields.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    @property
    def num_points(self):
        return self.batch * self.points_per_image

    def block_channels(self):
        # Triton's blocks have power-of-two shapes (the spare lanes are
        # masked). Interpret mode takes the exact width, so that an atomic
        # add of a block never holds two lanes at one address.
        if self.interpret:
            return self.channels
        return pl.next_power_of_2(self.channels)

    def block_points(self, backward=False):
        if self.interpret and backward:
            return 1  # see the module docstring
        if self.interpret:
            # Interpret mode emulates a masked store by a gather and a
            # scatter: the clipped lanes of a ragged block would write
            # stale values over a real one. Blocks that divide the points.
            return max(b for b in (8, 4, 2, 1) if self.num_points % b == 0)
        return max(8, _BLOCK_ELEMENTS // self.block_channels())


# The point arithmetic -------------------------------------------------------


def _reflect(index, size, align_corners):
    """PyTorch's `reflect_coordinates` (twin: `coordinates._reflect`):
    the reflected index and its derivative (+1 or -1, 0 on a degenerate
    axis). `size` is a Python int."""
    low = 0.0 if align_corners else -0.5
    span = float(size - 1) if align_corners else float(size)
    if span <= 0:
        zeros = jnp.zeros_like(index)
        return zeros, zeros
    shifted = index - low
    sign = jnp.where(shifted < 0, -1.0, 1.0).astype(index.dtype)
    shifted = jnp.abs(shifted)
    flips = jnp.floor(shifted / span)
    extra = lax.rem(shifted, jnp.asarray(span, index.dtype))
    even = lax.rem(flips, jnp.asarray(2.0, index.dtype)) == 0
    reflected = jnp.where(even, extra + low, span - extra + low)
    return reflected, jnp.where(even, sign, -sign)


def _axis_math(coord, size, valid, padding_mode, align_corners):
    """One axis of `_point_math`: `(low, frac, slope, inside)` with `low`
    the float index of the lower tap, `frac` the weight of the upper one,
    `slope` d index / d coordinate (padding and validity included) and
    `inside` whether the point lies within one pixel of the image."""
    dtype = coord.dtype
    # `coordinates.unnormalize`
    if align_corners:
        scale = (size - 1) / 2.0
        index = (coord + 1.0) * scale
    else:
        scale = size / 2.0
        index = ((coord + 1.0) * size - 1.0) / 2.0
    index = jnp.where(valid, index, jnp.zeros_like(index))
    if padding_mode == "border":
        # `pixel_indices(clamp_infinite=True)`: an infinite index reads
        # one pixel past the border, which the clip below takes back.
        index = jnp.minimum(jnp.maximum(index, -1.0), float(size))
    # `coordinates.apply_padding`
    derivative = jnp.ones_like(index)
    if padding_mode != "zeros":
        if padding_mode == "reflection":
            index, derivative = _reflect(index, size, align_corners)
        interior = jnp.logical_and(index > 0, index < size - 1.0)
        derivative = jnp.where(interior, derivative, jnp.zeros_like(index))
        index = jnp.minimum(jnp.maximum(index, 0.0), size - 1.0)
    # `sampling.sample_points`: past one pixel outside every tap reads
    # zero, so the index is clamped there with a zero derivative.
    inside = jnp.logical_and(index >= -1.0, index < float(size))
    index = jnp.minimum(jnp.maximum(index, -1.0), float(size))
    low = jnp.minimum(jnp.floor(index), size - 1.0)
    frac = index - low
    slope = jnp.where(
        jnp.logical_and(valid, inside),
        derivative * jnp.asarray(scale, dtype),
        jnp.zeros_like(index),
    )
    return low, frac, slope, inside


def _point_math(gx, gy, height, width, padding_mode, align_corners):
    """The four taps of each point: in the kernels on a block of points,
    in `_reference_sample` on whole arrays.

    Args:
        gx, gy: float arrays of one shape, the normalised coordinates.
        height, width: Python ints.
    Returns:
        `(taps, fx, fy, dx, dy)`: `taps` a list of four `(row, col,
        weight, active)` for nw, ne, sw, se (int32 indices clipped into
        the image, the bilinear weight, and whether the tap is read at
        all: a valid point within one pixel of the image and a tap inside
        it); `fx`, `fy` the fractional parts; `dx`, `dy` d index / d
        coordinate.
    """
    if padding_mode == "border":
        valid = jnp.logical_not(jnp.logical_or(jnp.isnan(gx), jnp.isnan(gy)))
    else:
        valid = jnp.logical_and(jnp.isfinite(gx), jnp.isfinite(gy))
    x0, fx, dx, x_in = _axis_math(gx, width, valid, padding_mode, align_corners)
    y0, fy, dy, y_in = _axis_math(
        gy, height, valid, padding_mode, align_corners
    )
    near = jnp.logical_and(valid, jnp.logical_and(x_in, y_in))
    col0 = x0.astype(jnp.int32)
    row0 = y0.astype(jnp.int32)
    taps = []
    for drow, dcol, weight in (
        (0, 0, (1.0 - fx) * (1.0 - fy)),
        (0, 1, fx * (1.0 - fy)),
        (1, 0, (1.0 - fx) * fy),
        (1, 1, fx * fy),
    ):
        row, col = row0 + drow, col0 + dcol
        active = near & (row >= 0) & (row < height) & (col >= 0) & (col < width)
        row = jnp.minimum(jnp.maximum(row, 0), height - 1)
        col = jnp.minimum(jnp.maximum(col, 0), width - 1)
        taps.append((row, col, weight, active))
    return taps, fx, fy, dx, dy


# d weight / d fx and d weight / d fy of the taps nw, ne, sw, se.
def _slopes(fx, fy):
    return (
        (fy - 1.0, 1.0 - fy, -fy, fy),
        (fx - 1.0, -fx, 1.0 - fx, fx),
    )


# The kernels ----------------------------------------------------------------


def _block(config, backward):
    """The program's points and channel lanes, and their masks."""
    block_points = config.block_points(backward)
    # int32 throughout (under x64 `arange` would give int64 offsets): the
    # flat offsets fit (`supports` checks `_MAX_ELEMENTS`).
    points = pl.program_id(0) * block_points + jnp.arange(
        block_points, dtype=jnp.int32
    )
    point_ok = points < config.num_points
    points = jnp.minimum(points, config.num_points - 1)
    lanes = jnp.arange(config.block_channels(), dtype=jnp.int32)
    lane_ok = lanes < config.channels
    lanes = jnp.minimum(lanes, config.channels - 1)
    return points, point_ok, lanes, lane_ok


def _load_points(grid_ref, points, config):
    gx = grid_ref[2 * points]
    gy = grid_ref[2 * points + 1]
    taps, fx, fy, dx, dy = _point_math(
        gx,
        gy,
        config.height,
        config.width,
        config.padding_mode,
        config.align_corners,
    )
    image = points // config.points_per_image
    offsets = [
        ((image * config.height + row) * config.width + col) * config.channels
        for row, col, _, _ in taps
    ]
    return taps, offsets, fx, fy, dx, dy


def _forward_kernel(images_ref, grid_ref, out_ref, *, config):
    points, point_ok, lanes, lane_ok = _block(config, backward=False)
    taps, offsets, _, _, _, _ = _load_points(grid_ref, points, config)
    total = jnp.zeros((points.shape[0], lanes.shape[0]), out_ref.dtype)
    for (_, _, weight, active), offset in zip(taps, offsets):
        values = images_ref[offset[:, None] + lanes[None, :]]
        # A select, not a product: a tap that is not read must not carry
        # an inf or NaN pixel into the sum through a zero weight.
        total = total + jnp.where(
            active[:, None], values * weight[:, None], 0.0
        )
    mask = point_ok[:, None] & lane_ok[None, :]
    plgpu.store(
        out_ref.at[points[:, None] * config.channels + lanes[None, :]],
        total,
        mask=mask,
    )


def _backward_kernel(
    images_ref, grid_ref, upstream_ref, _, d_grid_ref, d_images_ref, *, config
):
    """d images += upstream * weight at each read tap (atomics); d grid =
    sum over taps and channels of tap * upstream * d weight / d (fx, fy),
    times d index / d coordinate (twin: `sampling._bilinear_sample_grad`).
    """
    del _  # the zeros that `d_images_ref` aliases
    points, point_ok, lanes, lane_ok = _block(config, backward=True)
    taps, offsets, fx, fy, dx, dy = _load_points(grid_ref, points, config)
    mask = point_ok[:, None] & lane_ok[None, :]
    upstream = plgpu.load(
        upstream_ref.at[points[:, None] * config.channels + lanes[None, :]],
        mask=mask,
        other=0.0,
    )
    slopes_x, slopes_y = _slopes(fx, fy)
    grad_x = jnp.zeros(points.shape, d_grid_ref.dtype)
    grad_y = jnp.zeros(points.shape, d_grid_ref.dtype)
    for (_, _, weight, active), offset, kx, ky in zip(
        taps, offsets, slopes_x, slopes_y
    ):
        address = offset[:, None] + lanes[None, :]
        read = active[:, None] & mask
        values = jnp.where(read, images_ref[address], 0.0)
        tap_upstream = jnp.sum(values * upstream, axis=1)
        grad_x = grad_x + tap_upstream * kx
        grad_y = grad_y + tap_upstream * ky
        update = jnp.where(read, upstream * weight[:, None], 0.0)
        # Interpret mode cannot emulate a masked atomic; its blocks hold
        # no spare lane (see `_Config`), and `update` is zero off `read`.
        plgpu.atomic_add(
            d_images_ref,
            address,
            update,
            mask=None if config.interpret else read,
        )
    plgpu.store(d_grid_ref.at[2 * points], grad_x * dx, mask=point_ok)
    plgpu.store(d_grid_ref.at[2 * points + 1], grad_y * dy, mask=point_ok)


def _call(kernel, config, out_shape, backward, **kwargs):
    blocks = pl.cdiv(config.num_points, config.block_points(backward))
    if not config.interpret:
        # Triton's parameters also pin the Triton lowering: JAX may lower
        # a `pallas_call` without them with Mosaic GPU, which has no
        # gathers or masked loads.
        kwargs["compiler_params"] = plgpu.CompilerParams(
            num_warps=_NUM_WARPS, num_stages=1
        )
    return pl.pallas_call(
        functools.partial(kernel, config=config),
        out_shape=out_shape,
        grid=(blocks,),
        interpret=config.interpret,
        **kwargs,
    )


def _forward(images, grid, config):
    out = jax.ShapeDtypeStruct(
        (config.num_points * config.channels,), images.dtype
    )
    return _call(_forward_kernel, config, out, backward=False)(images, grid)


def _backward(images, grid, upstream, config):
    outs = (
        jax.ShapeDtypeStruct(grid.shape, grid.dtype),
        jax.ShapeDtypeStruct(images.shape, images.dtype),
    )
    d_grid, d_images = _call(
        _backward_kernel,
        config,
        outs,
        backward=True,
        input_output_aliases={3: 1},
    )(images, grid, upstream, jnp.zeros_like(images))
    return d_images, d_grid


# The derivatives ------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _sample(images, grid, config):
    return _forward(images, grid, config)


# Each rule's forward calls the custom_vjp function, not the kernel: under
# an outer derivative (second derivatives) the forward runs on that level's
# tracers, and the kernel itself has no derivative rule.
def _sample_fwd(images, grid, config):
    return _sample(images, grid, config), (images, grid)


def _sample_bwd(config, residuals, upstream):
    images, grid = residuals
    return _gradients(images, grid, upstream.astype(images.dtype), config)


_sample.defvjp(_sample_fwd, _sample_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _gradients(images, grid, upstream, config):
    """`(d images, d grid)` of `_sample` by the backward kernel; its own
    derivatives (second derivatives of the sampler) come from the twin."""
    return _backward(images, grid, upstream, config)


def _gradients_fwd(images, grid, upstream, config):
    gradients = _gradients(images, grid, upstream, config)
    return gradients, (images, grid, upstream)


def _gradients_bwd(config, residuals, cotangents):
    def twin_gradients(images, grid, upstream):
        _, pull = jax.vjp(
            lambda i, g: _reference_sample(i, g, config), images, grid
        )
        return pull(upstream)

    _, pull = jax.vjp(twin_gradients, *residuals)
    return pull(cotangents)


_gradients.defvjp(_gradients_fwd, _gradients_bwd)


def _reference_sample(images, grid, config):
    """The kernel in plain `jax.numpy` on the flat arrays, with the same
    first derivatives (the index's derivative is `_point_math`'s `dx`,
    `dy`, with zero second derivative: the index is piecewise linear).
    Autodiff of this gives the backward kernel's derivatives."""
    points = grid.reshape(-1, 2)
    gx, gy = points[:, 0], points[:, 1]
    taps, fx, fy, dx, dy = _point_math(
        lax.stop_gradient(gx),
        lax.stop_gradient(gy),
        config.height,
        config.width,
        config.padding_mode,
        config.align_corners,
    )
    # fx, fy as functions of the grid, with the kernel's derivatives (a
    # select keeps inf - inf out of a non-finite point's zero gradient).
    fx = fx + dx * _zero_offset(gx)
    fy = fy + dy * _zero_offset(gy)
    weights = (
        (1.0 - fx) * (1.0 - fy),
        fx * (1.0 - fy),
        (1.0 - fx) * fy,
        fx * fy,
    )
    table = images.reshape(-1, config.channels)
    image = jnp.arange(points.shape[0]) // config.points_per_image
    total = 0.0
    for (row, col, _, active), weight in zip(taps, weights):
        pixel = (image * config.height + row) * config.width + col
        # Zeroed before the product: a NaN pixel times a zero cotangent
        # would spread NaN into the weight's gradient.
        values = jnp.where(active[:, None], table[pixel], 0.0)
        total = total + values * weight[:, None]
    return total.reshape(-1)


def _zero_offset(coord):
    """Zero in value, with derivative 1 w.r.t. finite `coord` (else 0)."""
    finite = jnp.isfinite(coord)
    safe = jnp.where(finite, coord, 0.0)
    return safe - lax.stop_gradient(safe)
