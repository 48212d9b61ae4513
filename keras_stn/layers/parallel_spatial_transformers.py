"""N spatial transformers sharing one localization trunk."""

import keras
from keras import ops

from keras_stn.layers import _layout
from keras_stn.layers import spatial_transformer
from keras_stn.ops import transforms
from keras_stn.utils import argument_validation


@keras.saving.register_keras_serializable(package="keras_stn")
class ParallelSpatialTransformers(spatial_transformer.SpatialTransformer):
    """`num_transformers` transformers with one trunk and their own heads.

    The paper's CUB-200-2011 module: 2 or 4 `"attention"` transformers on a
    448 input, each sampling a 224 crop that a backbone then reads. Every
    head starts at the identity, so the heads only part ways when what
    follows them treats their outputs differently (e.g. `merge="concat"`
    into a dense layer). When it is symmetric (one shared classifier and a
    loss invariant to the heads' order) their gradients stay equal: give
    the heads different starting thetas (assign each head's `bias`), as
    `examples/parallel_attention.py` does.
    Convention: as `SpatialTransformer`.

    Args:
        num_transformers: int >= 1.
        localization: as `SpatialTransformer` (shared by all heads).
        transform: str. Defaults to `"attention"`.
        merge: `"list"` (default) returns a list of `num_transformers`
            tensors `(B, H_out, W_out, C)`; `"concat"` concatenates them
            along channels, `(B, H_out, W_out, num_transformers * C)`
            (axis 1 when channels-first).
        **kwargs: the other `SpatialTransformer` arguments (output_size,
            kernel, padding_mode, align_corners, antialias, lr_multiplier,
            return_theta, return_grid, data_format) and layer arguments.
    Call arguments:
        inputs: float tensor `(B, H, W, C)` or, with a volume family,
            `(B, D, H, W, C)` (channels-first: channels at axis 1).
        training: bool or None, passed to the localization.
    Returns:
        The merged outputs; with `return_theta`, also theta
        `(B, num_transformers, P)`; with `return_grid`, also the grids
        `(B, num_transformers, H_out, W_out, 2)` (volumes
        `(B, num_transformers, D_out, H_out, W_out, 3)`).
    Raises:
        ValueError: a bad `num_transformers` or `merge`, and as
            `SpatialTransformer`.

    `views(inputs)` (inherited) gives each head's theta, grid and output
    unmerged: lists of `num_transformers` tensors.
    """

    _MERGES = ("list", "concat")

    def __init__(
        self,
        num_transformers=2,
        localization=None,
        transform="attention",
        merge="list",
        **kwargs,
    ):
        num_transformers = argument_validation.check_positive_int(
            num_transformers, "num_transformers"
        )
        argument_validation.check_choice(merge, self._MERGES, "merge")
        self.num_transformers = num_transformers
        self.merge = merge
        super().__init__(localization, transform, **kwargs)

    def _head_names(self):
        return [f"head_{i}" for i in range(self.num_transformers)]

    def _merge(self, views):
        outputs = views["outputs"]
        if self.merge == "concat":
            outputs = ops.concatenate(
                outputs, axis=_layout.channel_axis(self.data_format)
            )
        return self._pack(
            outputs,
            ops.stack(views["theta"], axis=1),
            ops.stack(views["grids"], axis=1),
        )

    def compute_output_shape(self, inputs_shape):
        size = self._sample_size(inputs_shape)
        batch, n = inputs_shape[0], len(self.heads)
        channels = inputs_shape[_layout.channel_axis(self.data_format)]
        if self.merge == "concat":
            channels = None if channels is None else n * channels
        outputs = _layout.shape_from_channels_last(
            (batch, *size, channels), self.data_format
        )
        if self.merge == "list":
            outputs = [outputs] * n
        theta = (batch, n, transforms.get(self.transform).num_params)
        return self._pack(
            outputs, theta, (batch, n, *size, self._spatial_dims())
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_transformers": self.num_transformers,
            "merge": self.merge,
        }
