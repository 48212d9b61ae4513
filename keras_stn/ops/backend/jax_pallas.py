"""A Pallas kernel for bilinear (and trilinear) sampling under JAX: the
native sampler of the JAX backend on GPUs (Triton lowering), run in
interpret mode on CPUs.

Convention (PyTorch's `grid_sample(mode="bilinear")`): images channels-last
`(B, H, W, C)`; a grid `(B, H_out, W_out, 2)` of `(x, y)` in `[-1, 1]`
(volumes `(B, D, H, W, C)`, grids `(B, D_out, H_out, W_out, 3)` of `(x, y,
z)`); `padding_mode` and `align_corners` as in PyTorch.

Design:
- One kernel serves N = 2 or 3 spatial axes (`2^N` taps, the way
  `jax.scipy.ndimage.map_coordinates` writes them). The forward pass: each
  program takes a block of points and every channel, computes the taps'
  indices and weights once per point and reads each tap as a `(points,
  channels)` gather.
- The backward pass is one kernel too: per point it reads the upstream
  gradient and the taps once and writes both gradients. The grid's
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
`keras_stn.ops.bilinear.sample_points` (with `coordinates.pixel_indices`
and `coordinates.apply_padding`); `_point_math` repeats it in `jax.numpy`
primitives that Triton lowers (`floor`, `rem`, selects).
"""

import functools
import itertools

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
        mode: str, `"auto"` (the default: on GPUs, for bilinear and
            trilinear sampling without `deterministic`), `"pallas"`
            (wherever it applies, in interpret mode on CPUs: for tests) or
            `"xla"` (never).
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
        kernel: str, the sampler's kernel (only `"bilinear"` is served:
            trilinear on volumes).
        num_axes: int, the number of spatial axes (2 or 3).
        padding_mode: str.
        align_corners: bool (every value is served).
        images: the images `(B, H, W, C)` or volumes `(B, D, H, W, C)`
            (their dtype and size decide).
        deterministic: bool, whether the images' gradient must be bitwise
            reproducible (not with GPU atomics).
    Returns:
        bool.
    """
    del align_corners
    chosen = mode()
    if chosen == "xla" or kernel != "bilinear" or num_axes not in (2, 3):
        return False
    if padding_mode not in PADDING_MODES:
        return False
    shape = tuple(images.shape)
    if len(shape) != num_axes + 2 or any(not isinstance(s, int) for s in shape):
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
    images,
    grid,
    kernel="bilinear",
    padding_mode="zeros",
    align_corners=False,
    reference=None,
):
    """Bilinear (trilinear) sampling of `images` at `grid` with the Pallas
    kernels.

    Values and both gradients are those of `keras_stn.ops.bilinear_sample`
    (PyTorch's `grid_sample`): non-finite points (NaN; inf except under
    border padding) sample zeros with zero gradient; under border padding
    an infinite point reads the border with a zero derivative along its
    axis; a point further than one pixel outside reads exactly zero, even
    next to a non-finite edge pixel.
    Convention: grid is `(x, y)` (volumes: `(x, y, z)`) in `[-1, 1]`,
    channels-last.

    Args:
        images: float32 or float64 array `(B, H, W, C)`, or volumes
            `(B, D, H, W, C)`.
        grid: float array `(B, H_out, W_out, 2)`, or `(B, D_out, H_out,
            W_out, 3)`.
        kernel: str, `"bilinear"` (trilinear for volumes).
        padding_mode: str, `"zeros"`, `"border"` or `"reflection"`.
        align_corners: bool.
        reference: the package's own sampler (the kernel seam passes it to
            every native sampler); unused here: second derivatives go
            through this module's `jnp` twin.
    Returns:
        Array `(B, H_out, W_out, C)` (`(B, D_out, H_out, W_out, C)`) with
        the dtype of `images`.
    Raises:
        ValueError: on another kernel or padding mode, or shapes that do
            not fit.
    """
    del reference
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
    num_axes = images.ndim - 2
    if (
        num_axes not in (2, 3)
        or grid.ndim != images.ndim
        or grid.shape[-1] != num_axes
        or grid.shape[0] != images.shape[0]
    ):
        raise ValueError(
            "`images` must be (B, H, W, C) with `grid` (B, H_out, W_out, 2), "
            "or (B, D, H, W, C) with `grid` (B, D_out, H_out, W_out, 3), "
            f"with the same B. Received: images.shape={images.shape}, "
            f"grid.shape={grid.shape}"
        )
    channels = images.shape[-1]
    out_shape = (*grid.shape[:-1], channels)
    if _size(out_shape) > _MAX_ELEMENTS or _size(grid.shape) > _MAX_ELEMENTS:
        raise ValueError(
            f"The output must have at most {_MAX_ELEMENTS} elements (int32 "
            f"offsets). Received: grid.shape={grid.shape}, channels="
            f"{channels}"
        )
    if _size(out_shape) == 0:
        return jnp.zeros(out_shape, images.dtype)
    config = _Config(
        images.shape[0],
        tuple(reversed(images.shape[1:-1])),  # (W, H) or (W, H, D)
        channels,
        _size(grid.shape[1:-1]),
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
    can be a `nondiff_argnums` argument). `sizes` are the spatial sizes in
    the grid's coordinate order: `(W, H)` or `(W, H, D)`."""

    __slots__ = ()
    _fields = (
        "batch",
        "sizes",
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
    def num_axes(self):
        return len(self.sizes)

    @property
    def num_points(self):
        return self.batch * self.points_per_image

    def strides(self):
        """Pixels between neighbours along each grid axis (x: 1, y: W,
        z: W * H)."""
        strides, stride = [], 1
        for size in self.sizes:
            strides.append(stride)
            stride *= size
        return strides

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
    # `bilinear.sample_points`: past one pixel outside every tap reads
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


def _point_math(coords, sizes, padding_mode, align_corners):
    """The `2^N` taps of each point: in the kernels on a block of points,
    in `_reference_sample` on whole arrays.

    Args:
        coords: N float arrays of one shape, the normalised coordinates in
            the grid's order (`x`, `y`[, `z`]).
        sizes: N Python ints, the spatial sizes in the same order.
    Returns:
        `(taps, fracs, slopes)`: `taps` a list of `(indices, weight,
        active, signs)`, per tap (offsets 0 or 1 along each axis, x
        fastest) the int32 indices clipped into the image, the weight, and
        whether the tap is read at all (a valid point within one pixel of
        the image and a tap inside it), and the offsets as signs -1 / +1;
        `fracs` the fractional parts and `slopes` d index / d coordinate,
        per axis.
    """
    if padding_mode == "border":
        nan = jnp.isnan(coords[0])
        for coord in coords[1:]:
            nan = jnp.logical_or(nan, jnp.isnan(coord))
        valid = jnp.logical_not(nan)
    else:
        valid = jnp.isfinite(coords[0])
        for coord in coords[1:]:
            valid = jnp.logical_and(valid, jnp.isfinite(coord))
    lows, fracs, slopes = [], [], []
    near = valid
    for coord, size in zip(coords, sizes):
        low, frac, slope, inside = _axis_math(
            coord, size, valid, padding_mode, align_corners
        )
        lows.append(low.astype(jnp.int32))
        fracs.append(frac)
        slopes.append(slope)
        near = jnp.logical_and(near, inside)
    taps = []
    for offsets in itertools.product((0, 1), repeat=len(coords)):
        offsets = offsets[::-1]  # x fastest: nw, ne, sw, se in 2-D
        indices, weight, active = [], None, near
        for low, frac, size, offset in zip(lows, fracs, sizes, offsets):
            index = low + offset
            factor = frac if offset else 1.0 - frac
            weight = factor if weight is None else weight * factor
            active = active & (index >= 0) & (index < size)
            indices.append(jnp.minimum(jnp.maximum(index, 0), size - 1))
        signs = tuple(1.0 if offset else -1.0 for offset in offsets)
        taps.append((indices, weight, active, signs))
    return taps, fracs, slopes


def _weight_slope(fracs, signs, axis):
    """d weight / d frac along `axis` of the tap with `signs`: the other
    axes' factors, times +1 (upper tap) or -1 (lower tap)."""
    slope = None
    for other, (frac, sign) in enumerate(zip(fracs, signs)):
        if other == axis:
            continue
        factor = frac if sign > 0 else 1.0 - frac
        slope = factor if slope is None else slope * factor
    if slope is None:  # one axis
        return signs[axis]
    return slope if signs[axis] > 0 else -slope


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
    """The taps of a block of points, with each tap's flat offset."""
    n = config.num_axes
    coords = [grid_ref[n * points + axis] for axis in range(n)]
    taps, fracs, slopes = _point_math(
        coords, config.sizes, config.padding_mode, config.align_corners
    )
    pixels = _size(config.sizes)
    image = points // config.points_per_image
    offsets = []
    for indices, _, _, _ in taps:
        pixel = image * pixels
        for index, stride in zip(indices, config.strides()):
            pixel = pixel + index * stride
        offsets.append(pixel * config.channels)
    return taps, offsets, fracs, slopes


def _forward_kernel(images_ref, grid_ref, out_ref, *, config):
    points, point_ok, lanes, lane_ok = _block(config, backward=False)
    taps, offsets, _, _ = _load_points(grid_ref, points, config)
    total = jnp.zeros((points.shape[0], lanes.shape[0]), out_ref.dtype)
    for (_, weight, active, _), offset in zip(taps, offsets):
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
    """d images += upstream * weight at each read tap (atomics); d grid,
    per axis, = sum over taps and channels of tap * upstream * d weight /
    d frac, times d index / d coordinate (twin: `bilinear`'s
    `_bilinear_sample_grad`)."""
    del _  # the zeros that `d_images_ref` aliases
    points, point_ok, lanes, lane_ok = _block(config, backward=True)
    taps, offsets, fracs, slopes = _load_points(grid_ref, points, config)
    mask = point_ok[:, None] & lane_ok[None, :]
    upstream = plgpu.load(
        upstream_ref.at[points[:, None] * config.channels + lanes[None, :]],
        mask=mask,
        other=0.0,
    )
    grads = [jnp.zeros(points.shape, d_grid_ref.dtype) for _ in fracs]
    for (_, weight, active, signs), offset in zip(taps, offsets):
        address = offset[:, None] + lanes[None, :]
        read = active[:, None] & mask
        values = jnp.where(read, images_ref[address], 0.0)
        tap_upstream = jnp.sum(values * upstream, axis=1)
        for axis in range(len(grads)):
            grads[axis] = grads[axis] + tap_upstream * _weight_slope(
                fracs, signs, axis
            )
        update = jnp.where(read, upstream * weight[:, None], 0.0)
        # Interpret mode cannot emulate a masked atomic; its blocks hold
        # no spare lane (see `_Config`), and `update` is zero off `read`.
        plgpu.atomic_add(
            d_images_ref,
            address,
            update,
            mask=None if config.interpret else read,
        )
    n = config.num_axes
    for axis, (grad, slope) in enumerate(zip(grads, slopes)):
        plgpu.store(
            d_grid_ref.at[n * points + axis], grad * slope, mask=point_ok
        )


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
    first derivatives (the index's derivative is `_point_math`'s slope,
    with zero second derivative: the index is piecewise linear).
    Autodiff of this gives the backward kernel's derivatives."""
    points = grid.reshape(-1, config.num_axes)
    coords = [points[:, axis] for axis in range(config.num_axes)]
    taps, fracs, slopes = _point_math(
        [lax.stop_gradient(c) for c in coords],
        config.sizes,
        config.padding_mode,
        config.align_corners,
    )
    # The fractions as functions of the grid, with the kernel's
    # derivatives (a select keeps inf - inf out of a non-finite point's
    # zero gradient).
    fracs = [
        frac + slope * _zero_offset(coord)
        for frac, slope, coord in zip(fracs, slopes, coords)
    ]
    table = images.reshape(-1, config.channels)
    image = jnp.arange(points.shape[0]) // config.points_per_image
    total = 0.0
    for indices, _, active, signs in taps:
        pixel = image * _size(config.sizes)
        for index, stride in zip(indices, config.strides()):
            pixel = pixel + index * stride
        weight = None
        for frac, sign in zip(fracs, signs):
            factor = frac if sign > 0 else 1.0 - frac
            weight = factor if weight is None else weight * factor
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
