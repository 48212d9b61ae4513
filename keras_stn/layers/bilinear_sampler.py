"""The sampler as a layer: reads images at grid points."""

import keras

from keras_stn.ops import coordinates
from keras_stn.ops import sampling
from keras_stn.utils import argument_validation


@keras.saving.register_keras_serializable(package="keras_stn")
class BilinearSampler(keras.layers.Layer):
    """Samples `images` at normalised `(x, y)` points (the paper's sampler).

    Bilinear by default, with a hand-written gradient equal to PyTorch's
    `grid_sample`; `"nearest"` and `"bicubic"` kernels and anti-aliasing by
    supersampling are options.
    Convention: grid is `(x, y)` in `[-1, 1]`, channels-last;
    `padding_mode` and `align_corners` as in PyTorch.

    Args:
        kernel: `"bilinear"`, `"nearest"` or `"bicubic"`.
        padding_mode: `"zeros"`, `"border"` or `"reflection"`.
        align_corners: bool. Defaults to `False`.
        antialias: bool or int supersampling factor. Defaults to `False`.
        deterministic: bool, whether the image gradient is bitwise
            reproducible on GPUs (`keras_stn.config.set_deterministic`);
            None (the default) follows `keras_stn.config.deterministic()`
            when the layer is traced.
    Call arguments:
        images: float tensor `(B, H, W, C)`.
        grid: float tensor `(B, H_out, W_out, 2)`.
    Returns:
        Tensor `(B, H_out, W_out, C)` in the layer's compute dtype.
    Raises:
        ValueError: an unknown kernel or padding mode, a non-bool
            `align_corners`, a bad `antialias`, or malformed inputs.
    """

    def __init__(
        self,
        kernel="bilinear",
        padding_mode="zeros",
        align_corners=False,
        antialias=False,
        deterministic=None,
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

    def call(self, images, grid):
        return sampling.sample(
            images,
            grid,
            kernel=self.kernel,
            padding_mode=self.padding_mode,
            align_corners=self.align_corners,
            antialias=self.antialias,
            deterministic=self.deterministic,
        )

    def compute_output_shape(self, images_shape, grid_shape):
        return (*grid_shape[:3], images_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "kernel": self.kernel,
            "padding_mode": self.padding_mode,
            "align_corners": self.align_corners,
            "antialias": self.antialias,
            "deterministic": self.deterministic,
        }


def check_sampling_options(kernel, padding_mode, antialias):
    """Validates sampler options at construction time (the layers' checks
    of the arguments `sampling.sample` takes)."""
    argument_validation.check_choice(kernel, sampling.KERNELS, "kernel")
    argument_validation.check_choice(
        padding_mode, coordinates.PADDING_MODES, "padding_mode"
    )
    argument_validation.check_antialias(antialias)
