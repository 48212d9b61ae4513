"""Geometry of the distortions, in NumPy: thetas, random positions, boxes.

Convention: positions are pixels `(x, y)`, x right and y down. A digit's
`position` is the offset of its centre from the canvas centre; its
`top_left` is the canvas pixel of its top-left pixel. Angles are degrees;
a positive angle turns the digit clockwise as displayed, which is
counter-clockwise in `(x, y)` with y down (the package's convention).
theta maps output (canvas) points to input (digit) points in normalised
coordinates with `align_corners=False`, so `[-1, 1]` spans `S` pixels on the
canvas and `D` on the digit: the factor `S / D` below.

Everything here runs on the host in float64 and returns float32 (or int32)
NumPy arrays: the parameters of a batch are computed once, the same for
every backend and adapter; the warp itself is `keras_stn.ops` (`place`,
`warp_similarity` and the distortions' `render`).
"""

import math

import numpy as np
from keras import ops

from keras_stn import ops as stn_ops

# The image's outer corners (x, y), normalised: top-left, top-right,
# bottom-right, bottom-left.
CORNERS = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])


def similarity_matrix(angle, scale, position, input_size, output_size):
    """The 2x3 matrices that put turned, scaled inputs on a canvas.

    The input's pixel `p` (from its centre) lands on the canvas at
    `scale * R(angle) p + position` (from the canvas centre), so an output
    point `u` (normalised) samples the input at
    `v = S / (D s) R(-angle) u - 2 / (D s) R(-angle) position`.

    Example:
    >>> theta = similarity_matrix([0.0], [1.0], [[0.0, 0.0]], 28, 42)
    >>> (theta[0] + 0.0).tolist()  # + 0.0: no signed zeros
    [[1.5, 0.0, 0.0], [0.0, 1.5, 0.0]]

    Args:
        angle: array `(B,)`, degrees, clockwise as displayed.
        scale: array `(B,)`, > 0.
        position: array `(B, 2)`, pixels `(x, y)`.
        input_size, output_size: ints `D`, `S`.
    Returns:
        float32 NumPy array `(B, 2, 3)`, output to input.
    """
    radians = -np.asarray(angle, np.float64) * (math.pi / 180.0)
    scale = np.asarray(scale, np.float64)
    position = np.asarray(position, np.float64)
    cos, sin = np.cos(radians), np.sin(radians)
    zoom = output_size / (input_size * scale)
    shift = -2.0 / (input_size * scale)
    tx = shift * (cos * position[:, 0] - sin * position[:, 1])
    ty = shift * (sin * position[:, 0] + cos * position[:, 1])
    rows = [
        [zoom * cos, -zoom * sin, tx],
        [zoom * sin, zoom * cos, ty],
    ]
    return np.stack([np.stack(row, -1) for row in rows], -2).astype(np.float32)


def homography_theta(targets, sources=CORNERS):
    """The projective theta taking four output points to input points
    (an 8x8 solve per example, float64).

    Args:
        targets: array `(B, 4, 2)`, output points `(x, y)`, normalised.
        sources: array `(4, 2)`. Defaults to the corners, `CORNERS`.
    Returns:
        float32 NumPy array `(B, 8)`, row-major 3x3, ninth entry 1.
    """
    targets = np.asarray(targets, np.float64)
    x, y = targets[..., 0], targets[..., 1]
    u = np.broadcast_to(sources[:, 0], x.shape)
    v = np.broadcast_to(sources[:, 1], x.shape)
    zero, one = np.zeros_like(x), np.ones_like(x)
    rows_u = np.stack([x, y, one, zero, zero, zero, -x * u, -y * u], -1)
    rows_v = np.stack([zero, zero, zero, x, y, one, -x * v, -y * v], -1)
    system = np.concatenate([rows_u, rows_v], axis=1)
    rhs = np.concatenate([u, v], axis=1)[..., None]
    return np.linalg.solve(system, rhs)[..., 0].astype(np.float32)


def placement_matrix(top_left, input_size, canvas_size):
    """The 2x3 matrices that paste inputs upright and unscaled with their
    top-left pixel at `top_left` (int `(B, 2)`, `(x, y)`).

    Returns:
        float32 NumPy array `(B, 2, 3)`.
    """
    position = np.asarray(top_left, np.float64)
    position = position + (input_size - canvas_size) / 2.0
    count = len(position)
    return similarity_matrix(
        np.zeros(count), np.ones(count), position, input_size, canvas_size
    )


def uniform_position(rng, num_positions, shape):
    """Top-left pixels `(x, y)` uniform on the integers `[0, n)^2`.

    Returns:
        int32 NumPy array `shape + (2,)`.
    """
    return rng.integers(0, num_positions, (*shape, 2)).astype(np.int32)


def uniform_position_outside(rng, num_positions, low, high, shape):
    """Top-left pixels uniform on `[0, n)^2` outside a rectangle: the
    `k`-th allowed position in row-major order, `k` uniform on their count
    (exact, no rejection). At least one position must stay allowed.

    Args:
        rng: `np.random.Generator`.
        num_positions: int `n`.
        low, high: int arrays broadcastable to `shape + (2,)`, the
            forbidden `x` and `y` ranges, inclusive (clipped to the canvas).
        shape: tuple, how many positions.
    Returns:
        int32 NumPy array `shape + (2,)`.
    """
    n = num_positions
    low = np.clip(np.asarray(low, np.int64), 0, n)
    high = np.clip(np.asarray(high, np.int64), -1, n - 1)
    count_xy = np.maximum(high - low + 1, 0)  # forbidden values per axis
    x_low, y_low = low[..., 0], low[..., 1]
    x_count, y_count = count_xy[..., 0], count_xy[..., 1]
    row_width = np.maximum(n - x_count, 1)  # allowed x in a band row
    before = y_low * n  # allowed positions in the rows above the band
    band = y_count * (n - x_count)
    total = np.broadcast_to(n * n - x_count * y_count, shape)
    k = rng.integers(0, total)
    k_band = k - before
    x_band = k_band % row_width
    x_band = np.where(x_band >= x_low, x_band + x_count, x_band)
    y_band = y_low + k_band // row_width
    k_below = k - before - band
    y_below = y_low + y_count + k_below // n
    in_above, in_band = k < before, k < before + band
    x = np.where(in_above, k % n, np.where(in_band, x_band, k_below % n))
    y = np.where(in_above, k // n, np.where(in_band, y_band, y_below))
    return np.stack([x, y], axis=-1).astype(np.int32)


def boxes(top_left, size, canvas_size):
    """Normalised boxes `(y_min, x_min, y_max, x_max)` of placed squares:
    the tfds / `tf.image.draw_bounding_boxes` form, fractions of the canvas
    side, max exclusive (a box spans pixels `[min * S, max * S)`).

    Returns:
        float32 NumPy array `top_left.shape[:-1] + (4,)`.
    """
    top_left = np.asarray(top_left, np.float32)
    x, y = top_left[..., 0], top_left[..., 1]
    corners = np.stack([y, x, y + size, x + size], axis=-1)
    return corners / np.float32(canvas_size)


def warp_similarity(images, angle, scale, position, output_size):
    """Samples `images` turned, scaled and placed on a square canvas.

    Convention: see `similarity_matrix`; bilinear, zeros outside.

    Args:
        images: float tensor `(B, D, D, C)`.
        angle, scale, position: array-likes `(B,)`, `(B,)`, `(B, 2)` (host
            values: NumPy or eager tensors), as `similarity_matrix`.
        output_size: int `S`.
    Returns:
        float32 tensor `(B, S, S, C)`.
    """
    theta = similarity_matrix(
        ops.convert_to_numpy(angle),
        ops.convert_to_numpy(scale),
        ops.convert_to_numpy(position),
        images.shape[1],
        output_size,
    )
    grid = stn_ops.affine_grid(theta, (output_size, output_size))
    return stn_ops.sample(images, grid)


def place(images, theta, canvas_size):
    """Pastes `images` `(B, D, D, C)` on an `S x S` canvas through the
    `placement_matrix` theta `(B, 2, 3)`; zeros elsewhere. The sampling
    points fall on pixel centres, so the pixels are copied (to float32
    rounding)."""
    grid = stn_ops.affine_grid(theta, (canvas_size, canvas_size))
    return stn_ops.sample(images, grid)
