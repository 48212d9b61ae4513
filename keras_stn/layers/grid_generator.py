"""The grid generator as a layer: theta to sampling grid."""

import keras

from keras_stn.ops import transforms
from keras_stn.utils import argument_validation


@keras.saving.register_keras_serializable(package="keras_stn")
class GridGenerator(keras.layers.Layer):
    """Maps theta through a family's T_theta onto the output pixel grid.

    Image families give 2-D grids, volume families (`"affine3d"`) 3-D
    ones. The grid is coordinates, not an image: its last axis holds them
    whatever Keras' `image_data_format()` says (as PyTorch's
    `affine_grid`), so the layer takes no `data_format`; `BilinearSampler`
    reads it as it is in either format.
    Convention: theta maps output points to input points; the grid is
    `(x, y)` (volumes `(x, y, z)`) in `[-1, 1]` (see `keras_stn.ops`).

    Args:
        output_size: `(H_out, W_out)`, two positive ints, or for a volume
            family `(D_out, H_out, W_out)`.
        transform: str, a registered family name. Defaults to `"affine"`.
        align_corners: bool. Defaults to `False`.
    Call arguments:
        theta: float tensor `(B, P)`.
    Returns:
        Tensor `(B, H_out, W_out, 2)` or `(B, D_out, H_out, W_out, 3)`.
    Raises:
        ValueError: an `output_size` with the wrong number of entries for
            the family, an unknown family, a non-bool `align_corners`, or
            theta of the wrong size for it.

    Example:
    >>> import numpy as np
    >>> layer = GridGenerator((2, 3, 4), transform="affine3d")
    >>> theta = np.eye(3, 4, dtype="float32").reshape(1, 12)
    >>> tuple(layer(theta).shape)
    (1, 2, 3, 4, 3)
    """

    def __init__(
        self, output_size, transform="affine", align_corners=False, **kwargs
    ):
        super().__init__(**kwargs)
        self.transform = transforms.check_name(transform)
        self.output_size = _check_output_size(
            output_size, transforms.get(self.transform).spatial_dims
        )
        self.align_corners = argument_validation.check_bool(
            align_corners, "align_corners"
        )

    def build(self, theta_shape):
        num_params = transforms.get(self.transform).num_params
        argument_validation.check_shape(
            theta_shape, 2, "theta", f"(B, {num_params})", "GridGenerator"
        )
        if theta_shape[-1] not in (None, num_params):
            raise ValueError(
                f"`theta` of GridGenerator must have shape (B, {num_params})"
                f" for transform {self.transform!r}. Received: "
                f"theta.shape={tuple(theta_shape)}"
            )

    def call(self, theta):
        return transforms.grid_for(
            self.transform, theta, self.output_size, self.align_corners
        )

    def compute_output_shape(self, theta_shape):
        spatial_dims = transforms.get(self.transform).spatial_dims
        return (theta_shape[0], *self.output_size, spatial_dims)

    def get_config(self):
        return {
            **super().get_config(),
            "output_size": self.output_size,
            "transform": self.transform,
            "align_corners": self.align_corners,
        }


def _check_output_size(output_size, spatial_dims):
    """`output_size` as a tuple of `spatial_dims` positive ints."""
    if spatial_dims == 3:
        return argument_validation.check_volume_size(output_size, "output_size")
    return argument_validation.check_size(output_size, "output_size")
