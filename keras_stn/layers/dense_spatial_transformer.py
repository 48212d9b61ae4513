"""Warps images or volumes by a dense displacement field (registration)."""

import keras

from keras_stn.layers import _layout
from keras_stn.ops import coordinates
from keras_stn.ops import displacement as displacement_lib
from keras_stn.utils import argument_validation


@keras.saving.register_keras_serializable(package="keras_stn")
class DenseSpatialTransformer(keras.layers.Layer):
    """Warps `images` by a per-pixel displacement: VoxelMorph's transformer.

    `outputs[p] = images(p + displacement[p])` for every pixel (voxel) `p`
    of the image's own grid, 2-D or 3-D; the output has the input's size.
    Values and gradients come from `keras_stn.ops.warp` (the samplers'
    hand-written gradients), so a network that predicts the displacement
    learns through it.
    Convention: displacement in pixels; with `indexing="ij"` its channel k
    moves along spatial axis k (rows first, VoxelMorph/neurite's default),
    with `"xy"` the channels are x (columns), y (rows)[, z].

    Args:
        kernel: `"bilinear"` (trilinear for volumes) or `"nearest"` (for
            label maps; no displacement gradient). Defaults to
            `"bilinear"`.
        padding_mode: `"border"` (default: neurite's `fill_value=None`),
            `"zeros"` or `"reflection"`.
        indexing: `"ij"` (default) or `"xy"`.
        data_format: `"channels_last"` or `"channels_first"`, the layout
            of both `images` and `displacement` (channels-first: the field
            `(B, 2, H, W)`, as VoxelMorph's PyTorch code); defaults to
            `keras.config.image_data_format()`.
    Call arguments:
        inputs: a list `[images, displacement]`: float tensors
            `(B, H, W, C)` and `(B, H, W, 2)`, or `(B, D, H, W, C)` and
            `(B, D, H, W, 3)` (channels-first: `(B, C, ...)` and
            `(B, 2, ...)` or `(B, 3, ...)`).
    Returns:
        Tensor like `images`.
    Raises:
        ValueError: bad arguments; when built, shapes that do not match.

    Example:
    >>> import numpy as np
    >>> layer = DenseSpatialTransformer()
    >>> images = np.random.rand(2, 8, 8, 1).astype("float32")
    >>> zero = np.zeros((2, 8, 8, 2), "float32")
    >>> error = np.abs(np.asarray(layer([images, zero])) - images).max()
    >>> bool(error < 1e-6)  # float32 rounding of the sampling points
    True
    """

    def __init__(
        self,
        kernel="bilinear",
        padding_mode="border",
        indexing="ij",
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        argument_validation.check_choice(
            kernel, displacement_lib.KERNELS, "kernel"
        )
        argument_validation.check_choice(
            padding_mode, coordinates.PADDING_MODES, "padding_mode"
        )
        argument_validation.check_choice(
            indexing, displacement_lib.INDEXINGS, "indexing"
        )
        self.kernel = kernel
        self.padding_mode = padding_mode
        self.indexing = indexing
        self.data_format = _layout.standardize(data_format)

    def _shapes(self, inputs_shape):
        """The channels-last `(images, displacement)` shapes, checked."""
        if (
            not isinstance(inputs_shape, (list, tuple))
            or len(inputs_shape) != 2
        ):
            raise ValueError(
                "`inputs` of DenseSpatialTransformer must be a list "
                "[images, displacement]. Received: inputs with shape "
                f"{inputs_shape!r}"
            )
        images_shape, field_shape = (
            _layout.shape_to_channels_last(s, self.data_format)
            for s in inputs_shape
        )
        num_axes = len(field_shape) - 2
        if (
            num_axes not in (2, 3)
            or len(images_shape) != num_axes + 2
            or field_shape[-1] not in (None, num_axes)
            or any(
                a is not None and b is not None and a != b
                for a, b in zip(images_shape[:-1], field_shape[:-1])
            )
        ):
            raise ValueError(
                "`inputs` must be [images (B, *spatial, C), displacement "
                "(B, *spatial, N)] (channels-first: (B, C, *spatial) and "
                "(B, N, *spatial)) with N = 2 or 3 spatial axes and the "
                f"same batch and spatial sizes. Received: images.shape="
                f"{tuple(inputs_shape[0])}, displacement.shape="
                f"{tuple(inputs_shape[1])}, data_format="
                f"{self.data_format!r}"
            )
        return images_shape, field_shape

    def build(self, inputs_shape):
        self._shapes(inputs_shape)

    def call(self, inputs):
        # The ops read channels-last tensors: a channels-first layer pays
        # a transpose of each input and of the output (see `_layout`).
        images, displacement = (
            _layout.to_channels_last(x, self.data_format) for x in inputs
        )
        outputs = displacement_lib.warp(
            images,
            displacement,
            kernel=self.kernel,
            padding_mode=self.padding_mode,
            indexing=self.indexing,
        )
        return _layout.from_channels_last(outputs, self.data_format)

    def compute_output_shape(self, inputs_shape):
        images_shape, _ = self._shapes(inputs_shape)
        return _layout.shape_from_channels_last(images_shape, self.data_format)

    def get_config(self):
        return {
            **super().get_config(),
            "kernel": self.kernel,
            "padding_mode": self.padding_mode,
            "indexing": self.indexing,
            "data_format": self.data_format,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**_layout.saved_config(config))
