"""Putting digits on canvases: placement thetas, random positions, boxes.

Convention: positions are pixels `(x, y)`, x right and y down. A digit's
`position` is the offset of its centre from the canvas centre; its
`top_left` is the canvas pixel of its top-left pixel. Angles are degrees;
a positive angle turns the digit clockwise as displayed, which is
counter-clockwise in `(x, y)` with y down (the package's convention).
theta maps output (canvas) points to input (digit) points in normalised
coordinates with `align_corners=False`, so `[-1, 1]` spans `S` pixels on the
canvas and `D` on the digit: the factor `S / D` below.
"""

import math

import tensorflow as tf

from keras_stn.ops import sampling
from keras_stn.ops import transforms


def similarity_theta(angle, scale, position, input_size, output_size):
    """The "similarity" theta that puts a turned, scaled input on a canvas.

    The input's pixel `p` (from its centre) lands on the canvas at
    `scale * R(angle) p + position` (from the canvas centre), so an output
    point `u` (normalised) samples the input at
    `v = S / (D s) R(-angle) u - 2 / (D s) R(-angle) position`.
    Convention: see the module docstring.

    Args:
        angle: float tensor `(B,)`, degrees.
        scale: float tensor `(B,)`, > 0.
        position: float tensor `(B, 2)`, pixels `(x, y)`.
        input_size: int `D`, the input's side.
        output_size: int `S`, the canvas' side.
    Returns:
        float32 tensor `(B, 4)`: `(scale, angle, tx, ty)` of the registered
        `"similarity"` family (its angle in radians, output to input).

    Example:
    >>> theta = similarity_theta([0.0], [1.0], [[0.0, 0.0]], 28, 42)
    >>> [round(float(t), 4) for t in theta[0]]
    [1.5, -0.0, -0.0, -0.0]
    """
    angle = tf.convert_to_tensor(angle, tf.float32)
    scale = tf.convert_to_tensor(scale, tf.float32)
    position = tf.convert_to_tensor(position, tf.float32)
    radians = -angle * (math.pi / 180.0)
    cos, sin = tf.cos(radians), tf.sin(radians)
    shift = -2.0 / (input_size * scale)
    tx = shift * (cos * position[:, 0] - sin * position[:, 1])
    ty = shift * (sin * position[:, 0] + cos * position[:, 1])
    zoom = output_size / (input_size * scale)
    return tf.stack([zoom, radians, tx, ty], axis=-1)


def warp_similarity(images, angle, scale, position, output_size):
    """Samples `images` turned, scaled and placed on a square canvas.

    Convention: see `similarity_theta`; bilinear, zeros outside.

    Args:
        images: float tensor `(B, D, D, C)`.
        angle, scale, position: as `similarity_theta`.
        output_size: int `S`.
    Returns:
        float32 tensor `(B, S, S, C)`.
    """
    theta = similarity_theta(
        angle, scale, position, images.shape[1], output_size
    )
    grid = transforms.grid_for("similarity", theta, (output_size, output_size))
    return sampling.sample(images, grid)


def place(images, top_left, canvas_size):
    """Pastes `images`, unscaled and upright, with their top-left pixel at
    the integer canvas pixel `top_left`; zeros elsewhere.

    The sampling points fall on pixel centres, so the digit's pixels are
    copied (to float32 rounding) and the rest of the canvas is zero.

    Args:
        images: float tensor `(B, D, D, C)`.
        top_left: int tensor `(B, 2)`, pixels `(x, y)`.
        canvas_size: int `S`.
    Returns:
        float32 tensor `(B, S, S, C)`.
    """
    size = images.shape[1]
    position = tf.cast(top_left, tf.float32) + (size - canvas_size) / 2.0
    batch = tf.shape(position)[0]
    zeros, ones = tf.zeros([batch]), tf.ones([batch])
    return warp_similarity(images, zeros, ones, position, canvas_size)


def uniform_position(seed, num_positions, count=None):
    """Top-left pixels `(x, y)` uniform on the integers `[0, n)^2`.

    Args:
        seed: int tensor `(2,)`, a stateless seed.
        num_positions: int or int scalar tensor `n`, >= 1.
        count: int or None, how many (independent) positions.
    Returns:
        int32 tensor `(2,)`, or `(count, 2)`.
    """
    shape = [2] if count is None else [count, 2]
    return tf.random.stateless_uniform(
        shape, seed, minval=0, maxval=num_positions, dtype=tf.int32
    )


def uniform_position_outside(seed, num_positions, low, high, count=None):
    """Top-left pixels `(x, y)` uniform on `[0, n)^2` outside a rectangle.

    Exact, without rejection: an integer `k` uniform on the allowed count
    is mapped to the `k`-th allowed position in row-major order. The
    forbidden positions are `x` in `[low[0], high[0]]` and `y` in
    `[low[1], high[1]]` (inclusive; clipped to the canvas, possibly empty).
    At least one position must stay allowed.

    Args:
        seed: int tensor `(2,)`, a stateless seed.
        num_positions: int `n`.
        low, high: int tensors `(2,)`, the forbidden rectangle `(x, y)`.
        count: int or None, how many (independent) positions.
    Returns:
        int32 tensor `(2,)`, or `(count, 2)`.

    Example:
    >>> xy = uniform_position_outside([0, 1], 3, [0, 0], [1, 1], count=50)
    >>> bool(((xy[:, 0] == 2) | (xy[:, 1] == 2)).numpy().all())
    True
    """
    n = tf.constant(num_positions, tf.int32)
    low = tf.clip_by_value(tf.cast(low, tf.int32), 0, n)
    high = tf.clip_by_value(tf.cast(high, tf.int32), -1, n - 1)
    count_xy = tf.maximum(high - low + 1, 0)  # forbidden values per axis
    x_low, y_low = low[0], low[1]
    x_count, y_count = count_xy[0], count_xy[1]
    row_width = tf.maximum(n - x_count, 1)  # allowed x in a band row
    before = y_low * n  # allowed positions in the rows above the band
    band = y_count * (n - x_count)
    total = n * n - x_count * y_count
    k = tf.random.stateless_uniform(
        [] if count is None else [count],
        seed,
        minval=0,
        maxval=total,
        dtype=tf.int32,
    )
    # Rows above the band, the band (x skips the forbidden run), below.
    k_band = k - before
    x_band = k_band % row_width
    x_band = tf.where(x_band >= x_low, x_band + x_count, x_band)
    y_band = y_low + k_band // row_width
    k_below = k - before - band
    y_below = y_low + y_count + k_below // n
    in_above = k < before
    in_band = k < before + band
    x = tf.where(in_above, k % n, tf.where(in_band, x_band, k_below % n))
    y = tf.where(in_above, k // n, tf.where(in_band, y_band, y_below))
    return tf.stack([x, y], axis=-1)


def boxes(top_left, size, canvas_size):
    """Normalised boxes `(y_min, x_min, y_max, x_max)` of placed squares.

    The tfds / `tf.image.draw_bounding_boxes` form: fractions of the canvas
    side, max exclusive (a box spans pixels `[min * S, max * S)`).

    Args:
        top_left: int tensor `(..., 2)`, pixels `(x, y)`.
        size: int, the square's side in pixels.
        canvas_size: int `S`.
    Returns:
        float32 tensor `(..., 4)`.
    """
    top_left = tf.cast(top_left, tf.float32)
    x, y = top_left[..., 0], top_left[..., 1]
    corners = [y, x, y + size, x + size]
    return tf.stack(corners, axis=-1) / float(canvas_size)
