"""The sampler as a layer: reads images or volumes at grid points."""

import keras

from keras_stn.layers import _layout
from keras_stn.ops import coordinates
from keras_stn.ops import sampling
from keras_stn.utils import argument_validation


@keras.saving.register_keras_serializable(package="keras_stn")
class BilinearSampler(keras.layers.Layer):
    """Samples `images` at normalised points (the paper's sampler).

    Bilinear by default (trilinear on volumes), with a hand-written
    gradient equal to PyTorch's `grid_sample`; `"nearest"` and `"bicubic"`
    kernels and anti-aliasing by supersampling are options (on images;
    volumes take `"bilinear"` or `"nearest"` without anti-aliasing).
    Convention: grid is `(x, y)` (volumes `(x, y, z)`) in `[-1, 1]`, its
    last axis the coordinates whatever `data_format` says (as PyTorch's
    `grid_sample`); `padding_mode` and `align_corners` as in PyTorch.

    Args:
        kernel: `"bilinear"`, `"nearest"` or `"bicubic"`.
        padding_mode: `"zeros"`, `"border"` or `"reflection"`.
        align_corners: bool. Defaults to `False`.
        antialias: bool or int supersampling factor. Defaults to `False`.
        deterministic: bool, whether the image gradient is bitwise
            reproducible on GPUs (`keras_stn.config.set_deterministic`);
            None (the default) follows `keras_stn.config.deterministic()`
            when the layer is traced.
        data_format: `"channels_last"` (`images` `(B, H, W, C)`) or
            `"channels_first"` (`(B, C, H, W)`); defaults to
            `keras.config.image_data_format()`.
    Call arguments:
        images: float tensor `(B, H, W, C)` or `(B, D, H, W, C)`
            (channels-first: `(B, C, H, W)` or `(B, C, D, H, W)`).
        grid: float tensor `(B, H_out, W_out, 2)` or
            `(B, D_out, H_out, W_out, 3)`.
    Returns:
        Tensor `(B, H_out, W_out, C)` or `(B, D_out, H_out, W_out, C)`
        (channels-first: channels at axis 1) in the layer's compute dtype.
    Raises:
        ValueError: an unknown kernel, padding mode or data format, a
            non-bool `align_corners`, a bad `antialias`; when built,
            `images` and `grid` whose ranks do not match, a grid whose
            last axis is not the number of spatial axes, or a volume with
            `"bicubic"` or anti-aliasing.

    Example:
    >>> import numpy as np
    >>> volumes = np.zeros((1, 4, 5, 6, 2), "float32")
    >>> grid = np.zeros((1, 2, 3, 4, 3), "float32")
    >>> layer = BilinearSampler(data_format="channels_last")
    >>> tuple(layer(volumes, grid).shape)
    (1, 2, 3, 4, 2)
    """

    def __init__(
        self,
        kernel="bilinear",
        padding_mode="zeros",
        align_corners=False,
        antialias=False,
        deterministic=None,
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_sampling_options(kernel, padding_mode, antialias)
        self.kernel = kernel
        self.padding_mode = padding_mode
        self.align_corners = argument_validation.check_bool(
            align_corners, "align_corners"
        )
        self.antialias = antialias
        if deterministic is not None:
            argument_validation.check_bool(deterministic, "deterministic")
        self.deterministic = deterministic
        self.data_format = _layout.standardize(data_format)

    def build(self, images_shape, grid_shape):
        images_shape = _layout.shape_to_channels_last(
            images_shape, self.data_format
        )
        check_sample_shapes(
            images_shape, grid_shape, self.kernel, self.antialias
        )

    def call(self, images, grid):
        # The ops read channels-last images: a channels-first layer pays
        # one transpose in and one out (see `_layout`).
        outputs = sampling.sample(
            _layout.to_channels_last(images, self.data_format),
            grid,
            kernel=self.kernel,
            padding_mode=self.padding_mode,
            align_corners=self.align_corners,
            antialias=self.antialias,
            deterministic=self.deterministic,
        )
        return _layout.from_channels_last(outputs, self.data_format)

    def compute_output_shape(self, images_shape, grid_shape):
        images_shape = _layout.shape_to_channels_last(
            images_shape, self.data_format
        )
        batch = images_shape[0] if grid_shape[0] is None else grid_shape[0]
        return _layout.shape_from_channels_last(
            (batch, *grid_shape[1:-1], images_shape[-1]), self.data_format
        )

    def get_config(self):
        return {
            **super().get_config(),
            "kernel": self.kernel,
            "padding_mode": self.padding_mode,
            "align_corners": self.align_corners,
            "antialias": self.antialias,
            "deterministic": self.deterministic,
            "data_format": self.data_format,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**_layout.saved_config(config))


def check_sampling_options(kernel, padding_mode, antialias):
    """Validates sampler options at construction time (the layers' checks
    of the arguments `sampling.sample` takes)."""
    argument_validation.check_choice(kernel, sampling.KERNELS, "kernel")
    argument_validation.check_choice(
        padding_mode, coordinates.PADDING_MODES, "padding_mode"
    )
    argument_validation.check_antialias(antialias)


def check_sample_shapes(images_shape, grid_shape, kernel, antialias):
    """Checks channels-last `images` and `grid` shapes for `sampler.sample`
    at build time, so that a symbolic call fails as an eager one does.

    Raises:
        ValueError: `images` not `(B, H, W, C)` or `(B, D, H, W, C)`, a
            `grid` of another rank or whose last axis is not the number of
            spatial axes, or a volume with `"bicubic"` or anti-aliasing.
    """
    images_shape, grid_shape = tuple(images_shape), tuple(grid_shape)
    rank = len(images_shape)
    if rank not in (4, 5):
        raise ValueError(
            "`images` must have shape (B, H, W, C) or (B, D, H, W, C) "
            "(channels-last; channels-first layers take (B, C, ...)). "
            f"Received: images.shape={images_shape}"
        )
    if len(grid_shape) != rank or grid_shape[-1] not in (None, rank - 2):
        form = (
            "(B, H_out, W_out, 2)"
            if rank == 4
            else "(B, D_out, H_out, W_out, 3)"
        )
        raise ValueError(
            f"`grid` must have shape {form} for images of rank {rank}. "
            f"Received: grid.shape={grid_shape}, "
            f"images.shape={images_shape}"
        )
    if rank == 5 and (kernel == "bicubic" or antialias not in (False, 0, 1)):
        raise ValueError(
            "Volumes are sampled with kernel='bilinear' (trilinear) or "
            "'nearest', without anti-aliasing. Received: "
            f"kernel={kernel!r}, antialias={antialias!r}"
        )
