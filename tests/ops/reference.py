"""Plain-autodiff twins of the samplers and grids (TensorFlow only).

Written the straightforward way, with no custom gradient, so that
`tf.GradientTape` differentiates them: the independent reference the
hand-written gradients are tested against, and the plain-TensorFlow
baseline of the benchmarks. Not for production use: the image gradient of
`bilinear_sample` here is four scatters, and `tf.where` / clip gradients
follow TensorFlow's conventions at the kinks (at integer points and on the
border) rather than PyTorch's.
Convention: as `keras_stn.ops` (channels-last, grid `(x, y)` in `[-1, 1]`).
"""

import tensorflow as tf


def _unnormalize(coord, size, align_corners):
    size = tf.cast(size, coord.dtype)
    if align_corners:
        return (coord + 1.0) / 2.0 * (size - 1.0)
    return ((coord + 1.0) * size - 1.0) / 2.0


def _pad(index, size, padding_mode, align_corners):
    size = tf.cast(size, index.dtype)
    if padding_mode == "reflection":
        low = 0.0 if align_corners else -0.5
        span = size - 1.0 if align_corners else size
        if align_corners and span == 0:
            return tf.zeros_like(index)
        t = tf.abs(index - low)
        flips = tf.floor(t / span)
        extra = t - flips * span
        index = tf.where(
            tf.math.floormod(flips, 2.0) == 0, extra + low, span - extra + low
        )
    if padding_mode in ("border", "reflection"):
        index = tf.clip_by_value(index, 0.0, size - 1.0)
    return index


def bilinear_sample(images, grid, padding_mode="zeros", align_corners=False):
    """Bilinear sampling, four `gather_nd(batch_dims=1)` taps, autodiff.

    Args:
        images: float tensor `(B, H, W, C)`.
        grid: float tensor `(B, H_out, W_out, 2)`, finite.
    Returns:
        Tensor `(B, H_out, W_out, C)`.
    """
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    x = _pad(
        _unnormalize(grid[..., 0], width, align_corners),
        width,
        padding_mode,
        align_corners,
    )
    y = _pad(
        _unnormalize(grid[..., 1], height, align_corners),
        height,
        padding_mode,
        align_corners,
    )
    x0 = tf.floor(x)
    y0 = tf.floor(y)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    x0 = tf.cast(x0, tf.int32)
    y0 = tf.cast(y0, tf.int32)

    def tap(yy, xx):
        inside = (xx >= 0) & (xx < width) & (yy >= 0) & (yy < height)
        idx = tf.stack(
            [
                tf.clip_by_value(yy, 0, height - 1),
                tf.clip_by_value(xx, 0, width - 1),
            ],
            axis=-1,
        )
        values = tf.gather_nd(images, idx, batch_dims=1)
        return values * tf.cast(inside, images.dtype)[..., None]

    return (
        (1.0 - fx) * (1.0 - fy) * tap(y0, x0)
        + fx * (1.0 - fy) * tap(y0, x0 + 1)
        + (1.0 - fx) * fy * tap(y0 + 1, x0)
        + fx * fy * tap(y0 + 1, x0 + 1)
    )


def _base_points(size, align_corners, dtype):
    height, width = size

    def axis(n):
        if n == 1:
            return tf.zeros((1,), dtype)
        if align_corners:
            return tf.linspace(tf.constant(-1.0, dtype), 1.0, n)
        return (2.0 * tf.range(n, dtype=dtype) + 1.0) / n - 1.0

    y, x = tf.meshgrid(axis(height), axis(width), indexing="ij")
    return tf.stack([x, y, tf.ones_like(x)], axis=-1)


def affine_grid(theta, size, align_corners=False):
    """`(B, 2, 3)` theta -> `(B, H_out, W_out, 2)` grid, by autodiff."""
    base = _base_points(size, align_corners, theta.dtype)
    return tf.einsum("hwk,bik->bhwi", base, theta)


def projective_grid(theta, size, align_corners=False):
    """`(B, 3, 3)` theta -> grid, `(u/w, v/w)`, by autodiff (finite w)."""
    base = _base_points(size, align_corners, theta.dtype)
    uvw = tf.einsum("hwk,bik->bhwi", base, theta)
    return uvw[..., :2] / uvw[..., 2:]


def tps_grid(theta, size, control_points, align_corners=False):
    """TPS grid solving the spline system in TensorFlow (`tf.linalg.solve`).

    Args:
        theta: `(B, K, 2)`; control_points: `(K, 2)`.
    """
    dtype = theta.dtype
    c = tf.constant(control_points, dtype)
    k = c.shape[0]

    def features(p):
        d2 = tf.reduce_sum((p[:, None] - c[None]) ** 2, axis=-1)
        u = tf.where(d2 > 0, d2 * tf.math.log(tf.where(d2 > 0, d2, 1.0)), 0.0)
        return tf.concat([u, tf.ones_like(p[:, :1]), p], axis=-1)

    top = features(c)
    bottom = tf.concat([tf.transpose(top[:, k:]), tf.zeros((3, 3), dtype)], 1)
    system = tf.concat([top, bottom], axis=0)
    rhs = tf.concat(
        [
            tf.transpose(theta, [1, 0, 2]),
            tf.zeros((3,) + tuple(theta.shape[:1]) + (2,), dtype),
        ],
        axis=0,
    )
    rhs = tf.reshape(rhs, (k + 3, -1))
    coefficients = tf.linalg.solve(system, rhs)
    points = tf.reshape(
        _base_points(size, align_corners, dtype)[..., :2], (-1, 2)
    )
    grid = tf.reshape(features(points) @ coefficients, (points.shape[0], -1, 2))
    grid = tf.transpose(grid, [1, 0, 2])
    return tf.reshape(grid, (-1, *size, 2))
