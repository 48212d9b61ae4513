"""The whole spatial transformer module of the paper."""

import keras

from keras_stn.layers import bilinear_sampler
from keras_stn.layers import localization as localization_lib
from keras_stn.layers import localization_head
from keras_stn.utils import argument_validation
from keras_stn.ops import sampler
from keras_stn.ops import transforms


@keras.saving.register_keras_serializable(package="keras_stn")
class SpatialTransformer(keras.layers.Layer):
    """Localization network, grid generator and sampler in one layer.

    `theta = head(localization(inputs))`, `grid = T_theta(output grid)`,
    `outputs = sample(inputs, grid)` (Jaderberg et al., 2015, Fig. 2). The
    head starts at the identity, so a new layer returns its input (resampled
    to `output_size`). Works on images and on feature maps, in series and in
    `Sequential`, functional and subclassed models.
    Convention: theta maps output points to input points (see
    `keras_stn.ops`).

    Args:
        localization: a Keras layer or model mapping the input to features
            `(B, F)`; defaults to `default_localization()` (a small CNN).
        transform: str, a registered family name. Defaults to `"affine"`.
        output_size: `(H_out, W_out)`; defaults to the input's `(H, W)`.
        kernel: `"bilinear"` (default), `"nearest"` or `"bicubic"`.
        padding_mode: `"zeros"` (default), `"border"` or `"reflection"`.
        align_corners: bool. Defaults to `False`.
        antialias: bool or int supersampling factor. Defaults to `False`.
        lr_multiplier: float, the localization branch's gradient multiplier
            (a learning-rate multiplier under SGD; see `LocalizationHead`).
        return_theta: bool, also return theta `(B, P)`.
        return_grid: bool, also return the grid `(B, H_out, W_out, 2)`.
    Call arguments:
        inputs: float tensor `(B, H, W, C)`.
    Returns:
        `(B, H_out, W_out, C)`, or a tuple `(outputs, theta[, grid])` /
        `(outputs, grid)` when asked for.
    Raises:
        ValueError: bad arguments at construction; inputs that are not
            rank 4, an unknown spatial size with no `output_size`, or a
            localization whose output is not `(B, F)`, when built.

    Example:
    >>> import numpy as np
    >>> layer = SpatialTransformer(transform="attention", output_size=(8, 8))
    >>> layer(np.zeros((2, 16, 16, 3), "float32")).shape
    TensorShape([2, 8, 8, 3])
    """

    def __init__(
        self,
        localization=None,
        transform="affine",
        output_size=None,
        kernel="bilinear",
        padding_mode="zeros",
        align_corners=False,
        antialias=False,
        lr_multiplier=1.0,
        return_theta=False,
        return_grid=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.transform = localization_head.check_transform(transform)
        self.output_size = (
            None
            if output_size is None
            else argument_validation.check_size(output_size, "output_size")
        )
        bilinear_sampler.check_sampling_options(kernel, padding_mode, antialias)
        if localization is not None and not isinstance(
            localization, keras.layers.Layer
        ):
            raise ValueError(
                "`localization` must be a Keras layer or model mapping the "
                "input to (B, F) features, or None for the default. "
                f"Received: localization={localization!r}"
            )
        self.localization = (
            localization
            if localization is not None
            else localization_lib.default_localization(name="localization")
        )
        self.kernel = kernel
        self.padding_mode = padding_mode
        self.align_corners = bool(align_corners)
        self.antialias = antialias
        self.lr_multiplier = lr_multiplier
        self.return_theta = bool(return_theta)
        self.return_grid = bool(return_grid)
        self.heads = self._make_heads()

    def _head_names(self):
        """One name per head; subclasses with several heads override it."""
        return ["head"]

    def _make_heads(self):
        return [
            localization_head.LocalizationHead(
                self.transform,
                lr_multiplier=self.lr_multiplier,
                dtype=self.dtype_policy,
                name=name,
            )
            for name in self._head_names()
        ]

    def _sample_size(self, inputs_shape):
        if len(inputs_shape) != 4:
            raise ValueError(
                f"`inputs` of {type(self).__name__} must have shape "
                f"(B, H, W, C). Received: inputs.shape={tuple(inputs_shape)}"
            )
        if self.output_size is not None:
            return self.output_size
        if inputs_shape[1] is None or inputs_shape[2] is None:
            raise ValueError(
                "`output_size` must be given when the input's spatial size "
                f"is unknown. Received: inputs.shape={tuple(inputs_shape)}, "
                "output_size=None"
            )
        return (int(inputs_shape[1]), int(inputs_shape[2]))

    def build(self, inputs_shape):
        self._sample_size(inputs_shape)
        if not self.localization.built:
            self.localization.build(inputs_shape)
        features_shape = self.localization.compute_output_shape(inputs_shape)
        if len(features_shape) != 2:
            raise ValueError(
                "`localization` must map the input to features of shape "
                f"(B, F). Received: localization output shape "
                f"{tuple(features_shape)} for inputs.shape="
                f"{tuple(inputs_shape)}"
            )
        for head in self.heads:
            head.build(features_shape)

    def _transform(self, inputs, theta):
        size = self._sample_size(inputs.shape)
        grid = transforms.grid_for(
            self.transform, theta, size, self.align_corners
        )
        outputs = sampler.sample(
            inputs,
            grid,
            kernel=self.kernel,
            padding_mode=self.padding_mode,
            align_corners=self.align_corners,
            antialias=self.antialias,
        )
        return outputs, grid

    def call(self, inputs):
        features = self.localization(inputs)
        theta = self.heads[0](features)
        outputs, grid = self._transform(inputs, theta)
        return self._pack(outputs, theta, grid)

    def _pack(self, outputs, theta, grid):
        extra = []
        if self.return_theta:
            extra.append(theta)
        if self.return_grid:
            extra.append(grid)
        return (outputs, *extra) if extra else outputs

    def compute_output_shape(self, inputs_shape):
        size = self._sample_size(inputs_shape)
        batch = inputs_shape[0]
        outputs = (batch, *size, inputs_shape[-1])
        theta = (batch, transforms.get(self.transform).num_params)
        return self._pack(outputs, theta, (batch, *size, 2))

    def get_config(self):
        return {
            **super().get_config(),
            "localization": keras.saving.serialize_keras_object(
                self.localization
            ),
            "transform": self.transform,
            "output_size": self.output_size,
            "kernel": self.kernel,
            "padding_mode": self.padding_mode,
            "align_corners": self.align_corners,
            "antialias": self.antialias,
            "lr_multiplier": self.lr_multiplier,
            "return_theta": self.return_theta,
            "return_grid": self.return_grid,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["localization"] = keras.saving.deserialize_keras_object(
            config["localization"]
        )
        return cls(**config)
