"""TC: translated, cluttered MNIST.

Jaderberg et al., 2015, section 4.1: the digit at a uniformly random
position of a 60x60 canvas with 6 random 6x6 patches cut from other random
training digits (never covering the digit's central 8x8 pixels), pasted by
maximum. Parameters drawn with NumPy per batch (integer positions and
crops, exact), the patches composed on the host (uint8), the digit placed
on the backend's device (`placement.place`'s sampling).
"""

import numpy as np
from keras import ops

from keras_stn.experiments.data import distortions
from keras_stn.experiments.data import placement
from keras_stn.utils import argument_validation

DIGIT_SIZE = distortions.DIGIT_SIZE


class Clutter(distortions.Distortion):
    """TC: the digit at a uniformly random integer position of the
    canvas, `num_patches` crops of other training digits pasted by maximum,
    none on the digit's central `clear_centre` square.

    Parameters drawn: `top_left` int32 `(B, 2)`; `patch_index` int64
    `(B, P)`; `patch_crop` and `patch_top_left` int32 `(B, P, 2)`.
    """

    def __init__(
        self, canvas_size=60, num_patches=6, patch_size=6, clear_centre=8
    ):
        self.canvas_size = argument_validation.check_int_between(
            canvas_size, "canvas_size", DIGIT_SIZE, 2**15, "pixels"
        )
        self.num_patches = argument_validation.check_non_negative_int(
            num_patches, "num_patches"
        )
        self.patch_size = argument_validation.check_int_between(
            patch_size, "patch_size", 1, DIGIT_SIZE
        )
        self.clear_centre = argument_validation.check_int_between(
            clear_centre, "clear_centre", 0, DIGIT_SIZE
        )
        if self.clear_centre % 2:
            raise ValueError(
                f"`clear_centre` must be an even int in [0, {DIGIT_SIZE}]. "
                f"Received: clear_centre={clear_centre!r}"
            )
        self.output_size = self.canvas_size

    def draw(self, rng, count, pool_size, exclude=None):
        """One batch's parameters.

        Args:
            rng: `np.random.Generator`.
            count: int `B`.
            pool_size: int, the training digits patches come from.
            exclude: int array `(B,)`, each digit's own training index
                (patches come from other digits), or None.
        """
        shape = (count, self.num_patches)
        top_left = placement.uniform_position(
            rng, self.canvas_size - DIGIT_SIZE + 1, (count,)
        )
        if exclude is None:
            index = rng.integers(0, pool_size, shape)
        else:
            draws = rng.integers(0, pool_size - 1, shape)
            index = (np.asarray(exclude)[:, None] + 1 + draws) % pool_size
        size = self.patch_size
        low = top_left + (DIGIT_SIZE - self.clear_centre) // 2
        high = low + self.clear_centre
        crop = placement.uniform_position(rng, DIGIT_SIZE - size + 1, shape)
        # A patch at p covers [p, p + size): it meets [low, high) when p is
        # in [low - size + 1, high - 1] (straddles the point when empty).
        position = placement.uniform_position_outside(
            rng,
            self.canvas_size - size + 1,
            (low - size + 1)[:, None],
            (high - 1)[:, None],
            shape,
        )
        return {
            "top_left": top_left,
            "patch_index": index.astype(np.int64),
            "patch_crop": crop,
            "patch_top_left": position,
        }

    def patches(self, pool, params):
        """The patches alone on a blank canvas: uint8 `(B, S, S)`, overlaps
        combined by maximum (integer crops, NumPy)."""
        index = np.asarray(params["patch_index"])
        count = len(index)
        layer = np.zeros((count, self.canvas_size, self.canvas_size), np.uint8)
        if not self.num_patches:
            return layer
        steps = np.arange(self.patch_size)
        crop = np.asarray(params["patch_crop"])
        where = np.asarray(params["patch_top_left"])
        rows = (crop[..., 1:2] + steps)[..., :, None]  # (B, P, size, 1)
        cols = (crop[..., 0:1] + steps)[..., None, :]  # (B, P, 1, size)
        values = pool[index[..., None, None], rows, cols]
        batch = np.arange(count)[:, None, None, None]
        ys = (where[..., 1:2] + steps)[..., :, None]
        xs = (where[..., 0:1] + steps)[..., None, :]
        np.maximum.at(layer, (batch, ys, xs), values)
        return layer

    def inputs(self, params, pool):
        """`(theta, patches)`: the digit's placement and `patches`."""
        theta = placement.placement_matrix(
            params["top_left"], self.input_size, self.canvas_size
        )
        return theta, self.patches(pool, params)

    def apply(self, images, theta, patches):
        """The digits placed by theta, the uint8 patches `(B, S, S)` over
        them by maximum (the canvas stays in `[0, 1]`)."""
        canvas = super().apply(images, theta)
        return ops.maximum(canvas, distortions.unit_images(patches))

    def warp(self, images, params, pool):
        """A batch of canvases.

        Args:
            images: float tensor `(B, 28, 28, 1)` in `[0, 1]`.
            params: `draw`'s dict.
            pool: uint8 NumPy array `(N, 28, 28)`, the training digits.
        Returns:
            float32 tensor `(B, S, S, 1)` in `[0, 1]`.
        """
        return self.apply(images, *self.inputs(params, pool))
