"""TC, translated and cluttered MNIST: a digit on a canvas among patches.

The TC set of the paper (Jaderberg et al., 2015, appendix): the 28x28 digit
at a uniformly random integer position of a 60x60 canvas, with 6 random
6x6 patches cut from other random training digits at uniformly random
positions. The patches never cover the digit's centre: the central
`clear_centre x clear_centre` pixels of the digit's 28x28 frame (8x8 by
default; 0 means the centre point itself, which a patch may touch but not
straddle). Patch positions are drawn exactly uniformly among the positions
that keep clear of it (`placement.uniform_position_outside`). Overlaps
combine by maximum, so the canvas stays in `[0, 1]`.

The digit is placed with the package's grid and sampler
(`placement.place`); patches are integer crops, pasted by one-hot matrix
products.
Convention: as `placement` (pixels `(x, y)`, y down).
"""

import tensorflow as tf

from keras_stn.utils import argument_validation
from keras_stn.experiments.data import placement

DIGIT_SIZE = 28


class Clutter:
    """Draws and renders TC canvases.

    Args:
        canvas_size: int `S >= 28`. Defaults to 60.
        num_patches: int >= 0. Defaults to 6.
        patch_size: int in `[1, 28]`. Defaults to 6.
        clear_centre: even int in `[0, 28]`, the side of the digit's
            central square that no patch covers. Defaults to 8.
    Parameters drawn (`draw`):
        `top_left`: int32 `(2,)`, the digit's top-left pixel `(x, y)`;
        `patch_index`: int64 `(P,)`, the source digits' training indices;
        `patch_crop`: int32 `(P, 2)`, the crops' top-left in the source;
        `patch_top_left`: int32 `(P, 2)`, the patches' top-left pixels.
    """

    def __init__(
        self, canvas_size=60, num_patches=6, patch_size=6, clear_centre=8
    ):
        self.canvas_size = argument_validation.check_positive_int(
            canvas_size, "canvas_size"
        )
        if self.canvas_size < DIGIT_SIZE:
            raise ValueError(
                f"`canvas_size` must be >= {DIGIT_SIZE}. Received: "
                f"canvas_size={canvas_size!r}"
            )
        self.num_patches = argument_validation.check_non_negative_int(
            num_patches, "num_patches"
        )
        self.patch_size = argument_validation.check_positive_int(
            patch_size, "patch_size"
        )
        if self.patch_size > DIGIT_SIZE:
            raise ValueError(
                f"`patch_size` must be <= {DIGIT_SIZE}. Received: "
                f"patch_size={patch_size!r}"
            )
        self.clear_centre = argument_validation.check_non_negative_int(
            clear_centre, "clear_centre"
        )
        if self.clear_centre > DIGIT_SIZE or self.clear_centre % 2:
            raise ValueError(
                f"`clear_centre` must be an even int in [0, {DIGIT_SIZE}]. "
                f"Received: clear_centre={clear_centre!r}"
            )

    def centre_square(self, top_left):
        """The protected square `[low, high)` per axis, int32 `(2,)` each."""
        low = (
            tf.cast(top_left, tf.int32) + (DIGIT_SIZE - self.clear_centre) // 2
        )
        return low, low + self.clear_centre

    def draw(self, seed, pool_size, exclude=-1):
        """Draws one canvas' parameters.

        Args:
            seed: int tensor `(2,)`, a stateless seed.
            pool_size: int, the number of training digits patches come from.
            exclude: int64 scalar tensor, the digit's own training index
                (patches come from other digits), or -1.
        Returns:
            A dict, see the class docstring.
        """
        keys = tf.random.experimental.stateless_split(seed, 4)
        top_left = placement.uniform_position(
            keys[0], self.canvas_size - DIGIT_SIZE + 1
        )
        count = self.num_patches
        exclude = tf.cast(exclude, tf.int64)
        excluding = tf.cast(exclude >= 0, tf.int64)
        # Uniform on the other digits: count on from `exclude`, skipping it.
        draws = tf.random.stateless_uniform(
            [count],
            keys[1],
            minval=0,
            maxval=pool_size - excluding,
            dtype=tf.int64,
        )
        index = tf.where(exclude >= 0, (exclude + 1 + draws) % pool_size, draws)
        low, high = self.centre_square(top_left)
        # A patch at p covers [p, p + size): it meets [low, high) when p is
        # in [low - size + 1, high - 1] (straddles the point when empty).
        crop = placement.uniform_position(
            keys[2], DIGIT_SIZE - self.patch_size + 1, count
        )
        position = placement.uniform_position_outside(
            keys[3],
            self.canvas_size - self.patch_size + 1,
            low - self.patch_size + 1,
            high - 1,
            count,
        )
        return {
            "top_left": top_left,
            "patch_index": index,
            "patch_crop": crop,
            "patch_top_left": position,
        }

    def render(self, digits, pool, params):
        """Renders a batch of canvases.

        Args:
            digits: float tensor `(B, 28, 28, 1)` in `[0, 1]`.
            pool: uint8 tensor `(N, 28, 28, 1)`, the training digits.
            params: `draw`'s dict, batched.
        Returns:
            float32 tensor `(B, S, S, 1)` in `[0, 1]`.
        """
        canvas = placement.place(digits, params["top_left"], self.canvas_size)
        if not self.num_patches:
            return canvas
        size, side = self.patch_size, self.canvas_size
        index = tf.reshape(params["patch_index"], [-1])
        crop = tf.reshape(params["patch_crop"], [-1, 2])
        where = tf.reshape(params["patch_top_left"], [-1, 2])
        steps = tf.range(size)
        rows = crop[:, 1:2] + steps  # (B * P, size)
        cols = crop[:, 0:1] + steps
        sources = tf.gather(pool, index)  # (B * P, 28, 28, 1)
        patches = tf.gather(sources, rows, axis=1, batch_dims=1)
        patches = tf.gather(patches, cols, axis=2, batch_dims=1)
        patches = tf.cast(patches[..., 0], tf.float32) / 255.0
        # One-hot placement: canvas = E_y @ patch @ E_x^T.
        place_y = tf.one_hot(where[:, 1:2] + steps, side, axis=1)
        place_x = tf.one_hot(where[:, 0:1] + steps, side, axis=1)
        pasted = tf.matmul(
            tf.matmul(place_y, patches), place_x, transpose_b=True
        )
        pasted = tf.reshape(pasted, [-1, self.num_patches, side, side, 1])
        return tf.maximum(canvas, tf.reduce_max(pasted, axis=1))
