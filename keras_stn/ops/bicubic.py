"""The bicubic kernel on 2-D images: PyTorch's `grid_sample(mode=
"bicubic")` (cubic convolution, `A = -0.75`, 4x4 taps), values and
gradients by automatic differentiation of the kernel weights (the taps'
indices are piecewise constant). `plan` builds the sampler for one call,
which `keras_stn.ops.sampling` compiles and runs.
"""

from keras import ops

from keras_stn.ops import backend
from keras_stn.ops import coordinates
from keras_stn.ops import gathers
from keras_stn.utils import shapes

# The cubic convolution constant PyTorch's bicubic mode uses.
CUBIC_A = -0.75


def _cubic_weights(t):
    """The four cubic-convolution weights for taps at -1, 0, 1, 2 of `t`."""
    a = CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a

    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


def _tap_index(tap, size, padding_mode, align_corners):
    """Integer pixel index of an integer-valued float tap, padding applied."""
    if padding_mode != "zeros":
        tap, _ = coordinates.apply_padding(
            tap, size, padding_mode, align_corners
        )
    return ops.cast(ops.round(tap), "int32")


def _bicubic_core(images, grid, padding_mode, align_corners, deterministic):
    """Bicubic sampling of float32/64 inputs, differentiable by autodiff."""
    dtype = images.dtype
    _, height, width, channels = shapes.dims(images)
    ix, iy, valid, _, _ = coordinates.pixel_indices(
        grid, height, width, align_corners
    )
    if padding_mode != "reflection":
        # Beyond these every tap is outside (zeros) or on the border (border):
        # clamping changes no value and keeps indices small.
        ix = ops.clip(ix, -3.0, ops.cast(width, dtype) + 2.0)
        iy = ops.clip(iy, -3.0, ops.cast(height, dtype) + 2.0)
    x0 = ops.stop_gradient(backend.floor(ix))
    y0 = ops.stop_gradient(backend.floor(iy))
    wx = _cubic_weights(ix - x0)
    wy = _cubic_weights(iy - y0)
    cols = [
        _tap_index(x0 + (k - 1.0), width, padding_mode, align_corners)
        for k in range(4)
    ]
    rows = [
        _tap_index(y0 + (k - 1.0), height, padding_mode, align_corners)
        for k in range(4)
    ]
    framed = gathers.frame(images)
    taps = ops.stack(
        [
            gathers.read_framed(framed, r, c, height, width, deterministic)
            for r in rows
            for c in cols
        ],
        axis=-2,
    )
    weights = ops.stack([a * b for a in wy for b in wx], axis=-1)
    weights = weights * ops.cast(valid, dtype)[..., None]
    return ops.sum(taps * weights[..., None], axis=-2)


def plan(images, padding_mode, align_corners, deterministic):
    """The bicubic sampler of one call, as the keyword arguments of the
    kernel seam's `xla_compiled` (`key`, `fn(images, grid)`)."""
    return {
        "key": ("bicubic", padding_mode, align_corners, deterministic),
        "fn": lambda i, g: _bicubic_core(
            i, g, padding_mode, align_corners, deterministic
        ),
    }
