"""Integrates a stationary velocity field into a diffeomorphic displacement."""

import keras

from keras_stn.layers import _layout
from keras_stn.ops import displacement as displacement_lib
from keras_stn.utils import argument_validation


@keras.saving.register_keras_serializable(package="keras_stn")
class VelocityIntegration(keras.layers.Layer):
    """Scaling and squaring of a velocity field: VoxelMorph's `VecInt`.

    `u = velocity / 2**steps`, then `steps` times `u = u + warp(u, u)`
    (`keras_stn.ops.integrate_velocity`): the displacement of the flow of
    the field over unit time, a diffeomorphism when the field is smooth, so
    a registration network that predicts a velocity and warps with
    `DenseSpatialTransformer` keeps its deformation invertible.
    Convention: as `DenseSpatialTransformer` (pixels, `indexing`).

    Args:
        steps: int >= 0, the number of squarings. Defaults to 7.
        indexing: `"ij"` (default) or `"xy"`, the field's channel order.
        data_format: `"channels_last"` or `"channels_first"` (the field
            `(B, 2, H, W)` or `(B, 3, D, H, W)`); defaults to
            `keras.config.image_data_format()`.
    Call arguments:
        velocity: float tensor `(B, H, W, 2)` or `(B, D, H, W, 3)`
            (channels-first: `(B, 2, H, W)` or `(B, 3, D, H, W)`).
    Returns:
        The displacement, a tensor like `velocity`.
    Raises:
        ValueError: bad arguments; a malformed velocity when built.

    Example:
    >>> import numpy as np
    >>> layer = VelocityIntegration(steps=5, data_format="channels_last")
    >>> tuple(layer(np.zeros((1, 6, 6, 2), "float32")).shape)
    (1, 6, 6, 2)

    Reference: Dalca et al., 2019, https://arxiv.org/abs/1903.03545
    """

    def __init__(self, steps=7, indexing="ij", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.steps = argument_validation.check_non_negative_int(steps, "steps")
        argument_validation.check_choice(
            indexing, displacement_lib.INDEXINGS, "indexing"
        )
        self.indexing = indexing
        self.data_format = _layout.standardize(data_format)

    def build(self, velocity_shape):
        num_axes = len(velocity_shape) - 2
        channels = velocity_shape[_layout.channel_axis(self.data_format)]
        if num_axes not in (2, 3) or channels not in (None, num_axes):
            form = "(B, H, W, 2) or (B, D, H, W, 3)"
            if self.data_format == "channels_first":
                form = "(B, 2, H, W) or (B, 3, D, H, W)"
            raise ValueError(
                f"`velocity` must have shape {form} "
                f"(data_format={self.data_format!r}). Received: "
                f"velocity.shape={tuple(velocity_shape)}"
            )

    def call(self, velocity):
        # The op reads channels-last fields: a channels-first layer pays a
        # transpose in and one out (see `_layout`).
        displacement = displacement_lib.integrate_velocity(
            _layout.to_channels_last(velocity, self.data_format),
            steps=self.steps,
            indexing=self.indexing,
        )
        return _layout.from_channels_last(displacement, self.data_format)

    def compute_output_shape(self, velocity_shape):
        return tuple(velocity_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "steps": self.steps,
            "indexing": self.indexing,
            "data_format": self.data_format,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**_layout.saved_config(config))
