"""The grid generator as a layer: theta to sampling grid."""

import keras

from keras_stn.ops import transforms
from keras_stn.utils import argument_validation


@keras.saving.register_keras_serializable(package="keras_stn")
class GridGenerator(keras.layers.Layer):
    """Maps theta through a family's T_theta onto the output pixel grid.

    Convention: theta maps output points to input points; the grid is
    `(x, y)` in `[-1, 1]` (see `keras_stn.ops`).

    Args:
        output_size: `(H_out, W_out)`, two positive ints.
        transform: str, a registered family name. Defaults to `"affine"`.
        align_corners: bool. Defaults to `False`.
    Call arguments:
        theta: float tensor `(B, P)`.
    Returns:
        Tensor `(B, H_out, W_out, 2)`.
    Raises:
        ValueError: a bad `output_size`, an unknown family, a non-bool
            `align_corners`, or theta of the wrong size for it.
    """

    def __init__(
        self, output_size, transform="affine", align_corners=False, **kwargs
    ):
        super().__init__(**kwargs)
        self.output_size = argument_validation.check_size(
            output_size, "output_size"
        )
        self.transform = transforms.check_name(transform)
        self.align_corners = argument_validation.check_bool(
            align_corners, "align_corners"
        )

    def call(self, theta):
        return transforms.grid_for(
            self.transform, theta, self.output_size, self.align_corners
        )

    def compute_output_shape(self, theta_shape):
        return (theta_shape[0], *self.output_size, 2)

    def get_config(self):
        return {
            **super().get_config(),
            "output_size": self.output_size,
            "transform": self.transform,
            "align_corners": self.align_corners,
        }
