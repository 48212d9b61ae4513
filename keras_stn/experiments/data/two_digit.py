"""Two-digit MNIST sets for parallel spatial transformers.

- `mnist_addition`: the paper's MNIST addition (Jaderberg et al., 2015,
  appendix): two RTS digits, each in its own 42x42 channel; the label is
  their sum, 19 classes.
- `two_digit_canvas`: a co-localisation-style canvas: two upright digits at
  random non-overlapping positions of one 84x84 canvas, with their boxes,
  so that each transformer's attention can be scored by IoU.

Example `i` pairs digit `i` of the split with a digit drawn uniformly from
the rest of the same split. Determinism and options as `distorted_mnist`.
"""

import tensorflow as tf

from keras_stn.utils import argument_validation
from keras_stn.experiments.data import _pipeline
from keras_stn.experiments.data import distortions
from keras_stn.experiments.data import mnist
from keras_stn.experiments.data import placement

DIGIT_SIZE = 28


def _source(name, split, data_dir, manual_dir, seed, training):
    """The split's arrays, its `(index, seed)` dataset and the partner
    draw shared by both sets."""
    argument_validation.check_tensorflow_backend(name)
    seed = argument_validation.check_seed(seed)
    training = _pipeline.resolve_training(training, str(split))
    source = mnist.load_split(split, data_dir, manual_dir)
    start, stop = source.start, source.stop
    if stop - start < 2:
        raise ValueError(
            f"`split` must hold at least 2 digits to pair them. Received: "
            f"split={split!r} ({stop - start} digit)"
        )
    seeds = _pipeline.example_seeds(
        start, stop, training, seed, f"{name}/{source.base}"
    )

    def pair(index, seed):
        """`(index, partner)`: the partner uniform on the split's others."""
        size = stop - start
        draw = tf.random.stateless_uniform(
            [], seed, minval=0, maxval=size - 1, dtype=tf.int64
        )
        return tf.stack([index, start + (index - start + 1 + draw) % size])

    return source, seeds, pair


def _check_batching(batch_size, drop_remainder, with_params):
    return (
        argument_validation.check_positive_int(batch_size, "batch_size"),
        argument_validation.check_bool(drop_remainder, "drop_remainder"),
        argument_validation.check_bool(with_params, "with_params"),
    )


def mnist_addition(
    split="train",
    batch_size=128,
    data_dir=None,
    manual_dir=None,
    seed=None,
    training=None,
    drop_remainder=False,
    with_params=False,
    angle_range=(-45.0, 45.0),
    scale_range=(0.7, 1.2),
    canvas_size=42,
):
    """MNIST addition: two RTS digits in two channels, label their sum.

    Each channel holds one digit distorted as the RTS set (its own angle,
    scale and position; see `distortions.RotationScaleTranslation`).

    Args:
        split, batch_size, data_dir, manual_dir, seed, training,
            drop_remainder, with_params: as `distorted_mnist`.
        angle_range, scale_range, canvas_size: the RTS settings. Default to
            the paper's `(-45, 45)` degrees, `(0.7, 1.2)` and 42.
    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32
        `(B, S, S, 2)` in `[0, 1]` (channel k holds digit k) and int64
        `(B,)` in `[0, 18]`; with `with_params`, also a dict of `index`
        `(B,)`, `pair_index` int64 `(B, 2)`, `digit_labels` int64 `(B, 2)`,
        `angle`, `scale` float32 `(B, 2)` and `position` float32
        `(B, 2, 2)`.
    Raises:
        ValueError, FileNotFoundError, RuntimeError: as `distorted_mnist`.
    """
    batch_size, drop_remainder, with_params = _check_batching(
        batch_size, drop_remainder, with_params
    )
    rts = distortions.RotationScaleTranslation(
        angle_range, scale_range, canvas_size
    )
    source, seeds, pair = _source(
        "mnist_addition", split, data_dir, manual_dir, seed, training
    )
    images, labels = tf.constant(source.images), tf.constant(source.labels)
    side = rts.output_size

    def draw(index, seed):
        keys = tf.random.experimental.stateless_split(seed, 3)
        first, second = rts.draw(keys[1]), rts.draw(keys[2])
        params = {k: tf.stack([first[k], second[k]]) for k in first}
        return {"pair_index": pair(index, keys[0]), **params}

    def render(index, params):
        pair_index = params["pair_index"]
        digits = _pipeline.to_unit_float(
            tf.gather(images, tf.reshape(pair_index, [-1]))
        )
        flat = {
            "angle": tf.reshape(params["angle"], [-1]),
            "scale": tf.reshape(params["scale"], [-1]),
            "position": tf.reshape(params["position"], [-1, 2]),
        }
        warped = tf.reshape(rts.warp(digits, flat), [-1, 2, side, side])
        out = _pipeline.clip_unit(tf.transpose(warped, [0, 2, 3, 1]))
        digit_labels = tf.gather(labels, pair_index)
        total = tf.reduce_sum(digit_labels, axis=-1)
        return out, total, {"digit_labels": digit_labels}

    return _pipeline.build(
        seeds, draw, render, batch_size, drop_remainder, with_params
    )


def two_digit_canvas(
    split="train",
    batch_size=128,
    data_dir=None,
    manual_dir=None,
    seed=None,
    training=None,
    drop_remainder=False,
    with_params=False,
    canvas_size=84,
):
    """Two upright digits at random non-overlapping places of one canvas.

    The first digit's top-left pixel is uniform on the canvas; the second's
    is uniform on the positions where the two 28x28 frames do not overlap
    (`placement.uniform_position_outside`). Pixels are copied exactly
    (integer positions); the frames never overlap, so the canvas is their
    sum. The boxes are the 28x28 frames.

    Args:
        split, batch_size, data_dir, manual_dir, seed, training,
            drop_remainder, with_params: as `distorted_mnist`.
        canvas_size: int `S >= 83`, so that the second digit always fits
            beside the first. Defaults to 84.
    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32 `(B, S, S, 1)` in
        `[0, 1]` and int64 `(B, 2)`, the two digits' classes in drawing
        order; with `with_params`, also a dict of `index` `(B,)`,
        `pair_index` int64 `(B, 2)`, `top_left` int32 `(B, 2, 2)` (pixels
        `(x, y)`) and `boxes` float32 `(B, 2, 4)`, normalised
        `(y_min, x_min, y_max, x_max)` as `tf.image.draw_bounding_boxes`
        takes them.
    Raises:
        ValueError, FileNotFoundError, RuntimeError: as `distorted_mnist`.
    """
    batch_size, drop_remainder, with_params = _check_batching(
        batch_size, drop_remainder, with_params
    )
    side = argument_validation.check_positive_int(canvas_size, "canvas_size")
    if side < 3 * DIGIT_SIZE - 1:
        raise ValueError(
            f"`canvas_size` must be >= {3 * DIGIT_SIZE - 1} so that two "
            f"{DIGIT_SIZE}x{DIGIT_SIZE} digits always fit side by side. "
            f"Received: canvas_size={canvas_size!r}"
        )
    source, seeds, pair = _source(
        "two_digit_canvas", split, data_dir, manual_dir, seed, training
    )
    images, labels = tf.constant(source.images), tf.constant(source.labels)
    positions = side - DIGIT_SIZE + 1

    def draw(index, seed):
        keys = tf.random.experimental.stateless_split(seed, 3)
        first = placement.uniform_position(keys[1], positions)
        # The frames overlap when |x2 - x1| < 28 and |y2 - y1| < 28.
        second = placement.uniform_position_outside(
            keys[2],
            positions,
            first - (DIGIT_SIZE - 1),
            first + (DIGIT_SIZE - 1),
        )
        return {
            "pair_index": pair(index, keys[0]),
            "top_left": tf.stack([first, second]),
        }

    def render(index, params):
        pair_index = params["pair_index"]
        digits = _pipeline.to_unit_float(
            tf.gather(images, tf.reshape(pair_index, [-1]))
        )
        top_left = tf.reshape(params["top_left"], [-1, 2])
        placed = placement.place(digits, top_left, side)
        placed = tf.reshape(placed, [-1, 2, side, side, 1])
        out = _pipeline.clip_unit(tf.reduce_sum(placed, axis=1))
        boxes = placement.boxes(params["top_left"], DIGIT_SIZE, side)
        return out, tf.gather(labels, pair_index), {"boxes": boxes}

    return _pipeline.build(
        seeds, draw, render, batch_size, drop_remainder, with_params
    )
