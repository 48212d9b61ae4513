"""Two-digit MNIST sets for parallel spatial transformers.

- `MNISTAddition`: the paper's MNIST addition (Jaderberg et al., 2015,
  appendix): two RTS digits, each in its own 42x42 channel; the label is
  their sum, 19 classes.
- `TwoDigitCanvas`: a co-localisation-style canvas: two upright digits at
  random non-overlapping positions of one 84x84 canvas, with their boxes,
  so that each transformer's attention can be scored by IoU.

Example `i` pairs digit `i` of the split with a digit drawn uniformly from
the rest of the same split. Determinism, options and adapters as
`distorted.DistortedMNIST`.
"""

import numpy as np
from keras import ops

from keras_stn.experiments.data import batches
from keras_stn.experiments.data import distortions
from keras_stn.experiments.data import placement
from keras_stn.utils import argument_validation

DIGIT_SIZE = distortions.DIGIT_SIZE


class MNISTAddition(batches.Batches):
    """MNIST addition: two RTS digits in two channels, label their sum.

    Digit `i` of the split with a partner drawn uniformly from the split's
    others, each warped as the RTS set in its own channel; 19 classes.

    Args:
        split, batch_size, data_dir, manual_dir, seed, training,
            drop_remainder, with_params, epochs, initial_epoch: as
            `batches.Batches`.
        angle_range, scale_range, canvas_size: the RTS settings. Default to
            `(-45, 45)` degrees, `(0.7, 1.2)` and 42.
    Items:
        `(images, labels)`: float32 `(B, S, S, 2)` in `[0, 1]` (channel k
        holds digit k) and int64 `(B,)` in `[0, 18]`; with `with_params`,
        a dict of `index`, `pair_index` int64 `(B, 2)`, `digit_labels`
        int64 `(B, 2)`, `angle`, `scale` `(B, 2)`, `position` `(B, 2, 2)`.
    """

    def __init__(
        self,
        split="train",
        batch_size=128,
        data_dir=None,
        manual_dir=None,
        seed=0,
        training=None,
        drop_remainder=False,
        with_params=False,
        epochs=None,
        initial_epoch=0,
        angle_range=(-45.0, 45.0),
        scale_range=(0.7, 1.2),
        canvas_size=42,
    ):
        self.distortion = distortions.RotationScaleTranslation(
            angle_range, scale_range, canvas_size
        )
        super().__init__(
            "mnist_addition",
            split,
            batch_size,
            data_dir,
            manual_dir,
            seed,
            training,
            drop_remainder,
            with_params,
            epochs,
            initial_epoch,
        )
        self.check_pairs()

    def draw(self, indices, rng):
        pair_index = self.pair(indices, rng)
        count = len(indices)
        flat = self.distortion.draw(rng, 2 * count)
        inputs = (
            self.images[pair_index.reshape(-1)],
            self.distortion.theta(flat),
        )
        digit_labels = self.labels[pair_index]
        params = {
            "pair_index": pair_index,
            "digit_labels": digit_labels,
            "angle": flat["angle"].reshape(count, 2),
            "scale": flat["scale"].reshape(count, 2),
            "position": flat["position"].reshape(count, 2, 2),
        }
        return inputs, digit_labels.sum(axis=-1), params

    def render(self, digits, theta):
        side = self.distortion.output_size
        digits = distortions.unit_images(digits)
        warped = self.distortion.apply(digits, theta)
        warped = ops.reshape(warped, (-1, 2, side, side))
        return distortions.clip_unit(ops.transpose(warped, (0, 2, 3, 1)))


class TwoDigitCanvas(batches.Batches):
    """Two upright digits at random non-overlapping places of one canvas.

    The first digit's top-left pixel uniform on the canvas, the second's
    uniform where the two 28x28 frames do not overlap; pixels copied
    (integer positions), the canvas their sum; the boxes are the frames.

    Args:
        split, batch_size, data_dir, manual_dir, seed, training,
            drop_remainder, with_params, epochs, initial_epoch: as
            `batches.Batches`.
        canvas_size: int `S >= 83`. Defaults to 84.
    Items:
        `(images, labels)`: float32 `(B, S, S, 1)` in `[0, 1]` and int64
        `(B, 2)`, the digits' classes in drawing order; with `with_params`,
        a dict of `index`, `pair_index` int64 `(B, 2)`, `top_left` int32
        `(B, 2, 2)` (pixels `(x, y)`) and `boxes` float32 `(B, 2, 4)`,
        normalised `(y_min, x_min, y_max, x_max)`.
    """

    def __init__(
        self,
        split="train",
        batch_size=128,
        data_dir=None,
        manual_dir=None,
        seed=0,
        training=None,
        drop_remainder=False,
        with_params=False,
        epochs=None,
        initial_epoch=0,
        canvas_size=84,
    ):
        self.canvas_size = argument_validation.check_int_between(
            canvas_size,
            "canvas_size",
            3 * DIGIT_SIZE - 1,
            2**15,
            "two digits always fit side by side from 83",
        )
        super().__init__(
            "two_digit_canvas",
            split,
            batch_size,
            data_dir,
            manual_dir,
            seed,
            training,
            drop_remainder,
            with_params,
            epochs,
            initial_epoch,
        )
        self.check_pairs()

    def draw(self, indices, rng):
        pair_index = self.pair(indices, rng)
        count, side = len(indices), self.canvas_size
        positions = side - DIGIT_SIZE + 1
        first = placement.uniform_position(rng, positions, (count,))
        # The frames overlap when |x2 - x1| < 28 and |y2 - y1| < 28.
        second = placement.uniform_position_outside(
            rng,
            positions,
            first - (DIGIT_SIZE - 1),
            first + (DIGIT_SIZE - 1),
            (count,),
        )
        top_left = np.stack([first, second], axis=1)
        theta = placement.placement_matrix(
            top_left.reshape(-1, 2), DIGIT_SIZE, side
        )
        params = {
            "pair_index": pair_index,
            "top_left": top_left,
            "boxes": placement.boxes(top_left, DIGIT_SIZE, side),
        }
        digits = self.images[pair_index.reshape(-1)]
        return (digits, theta), self.labels[pair_index], params

    def render(self, digits, theta):
        side = self.canvas_size
        placed = placement.place(distortions.unit_images(digits), theta, side)
        placed = ops.reshape(placed, (-1, 2, side, side, 1))
        return distortions.clip_unit(ops.sum(placed, axis=1))
