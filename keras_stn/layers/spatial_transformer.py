"""The whole spatial transformer module of the paper."""

import contextlib

import keras
from keras import ops

from keras_stn.layers import _layout
from keras_stn.layers import bilinear_sampler
from keras_stn.layers import localization as localization_lib
from keras_stn.layers import localization_head
from keras_stn.ops import sampling
from keras_stn.ops import transforms
from keras_stn.utils import argument_validation


def _check_output_size(output_size):
    """`(H_out, W_out)` for images or `(D_out, H_out, W_out)` for volumes."""
    try:
        volume = len(output_size) == 3
    except TypeError:
        volume = False
    if volume:
        return argument_validation.check_volume_size(output_size, "output_size")
    return argument_validation.check_size(output_size, "output_size")


@keras.saving.register_keras_serializable(package="keras_stn")
class SpatialTransformer(keras.layers.Layer):
    """Localization network, grid generator and sampler in one layer.

    `theta = head(localization(inputs))`, `grid = T_theta(output grid)`,
    `outputs = sample(inputs, grid)` (Jaderberg et al., 2015, Fig. 2). The
    head starts at the identity, so a new layer returns its input (resampled
    to `output_size`). Works on images and on feature maps, in series and in
    `Sequential`, functional and subclassed models.
    Images `(B, H, W, C)` take an image family, volumes `(B, D, H, W, C)`
    a volume family (`"affine3d"`) and a localization that reads volumes.
    Convention: theta maps output points to input points (see
    `keras_stn.ops`); the grid's last axis holds `(x, y)` (volumes
    `(x, y, z)`) whatever `data_format` says.

    Non-finite inputs: a sample whose input holds a NaN or an inf is
    isolated from the rest of the batch. The localization reads zeros in
    its place, so its features and theta are finite and its theta gets a
    zero gradient: it adds nothing to the localization weights' gradient,
    which equals that of the batch without it. Its output is what sampling
    its own (non-finite) input with that theta gives. Only layers of the
    localization that mix samples (batch normalization while training) see
    the zeros.

    Args:
        localization: a Keras layer or model mapping the input (in
            `data_format`) to features `(B, F)`; defaults to
            `default_localization(data_format=data_format)` (a small 2-D
            CNN; volume families need one given).
        transform: str, a registered family name. Defaults to `"affine"`.
        output_size: `(H_out, W_out)` (volumes: `(D_out, H_out, W_out)`);
            defaults to the input's spatial size.
        kernel: `"bilinear"` (default), `"nearest"` or `"bicubic"`.
        padding_mode: `"zeros"` (default), `"border"` or `"reflection"`.
        align_corners: bool. Defaults to `False`.
        antialias: bool or int supersampling factor. Defaults to `False`.
        deterministic: bool, whether the image gradient is bitwise
            reproducible on GPUs (`keras_stn.config.set_deterministic`);
            None (the default) follows `keras_stn.config.deterministic()`
            when the layer is traced.
        lr_multiplier: finite float > 0, the localization branch's gradient
            multiplier (a learning-rate multiplier under SGD; see
            `LocalizationHead`). Defaults to 1.
        return_theta: bool, also return theta `(B, P)`.
        return_grid: bool, also return the grid `(B, H_out, W_out, 2)`
            (volumes `(B, D_out, H_out, W_out, 3)`).
        data_format: `"channels_last"` (inputs `(B, H, W, C)`) or
            `"channels_first"` (`(B, C, H, W)`); defaults to
            `keras.config.image_data_format()`. The sampler reads
            channels-last tensors: channels-first costs a transpose in and
            one out.
    Call arguments:
        inputs: float tensor `(B, H, W, C)` or `(B, D, H, W, C)`
            (channels-first: `(B, C, H, W)` or `(B, C, D, H, W)`).
        training: bool or None, passed to the localization.
    Returns:
        `(B, H_out, W_out, C)` (volumes `(B, D_out, H_out, W_out, C)`;
        channels-first: channels at axis 1), or a tuple
        `(outputs, theta[, grid])` / `(outputs, grid)` when asked for.
    Raises:
        ValueError: bad arguments at construction (a non-bool
            `align_corners`, `return_theta` or `return_grid`, a
            non-finite `lr_multiplier`, an unknown `data_format`, ...);
            when built, inputs whose rank does not fit the family, an
            unknown spatial size with no `output_size`, or a localization
            whose output is not `(B, F)`.

    `views(inputs)` gives each head's theta, grid and output, and
    `warp(inputs, theta)` one head's sampling; `recording_inputs()` records
    what the layer receives inside any model (see `keras_stn.viz`).

    Example:
    >>> import numpy as np
    >>> layer = SpatialTransformer(transform="attention", output_size=(8, 8))
    >>> tuple(layer(np.zeros((2, 16, 16, 3), "float32")).shape)
    (2, 8, 8, 3)
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
        deterministic=None,
        lr_multiplier=1.0,
        return_theta=False,
        return_grid=False,
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.data_format = _layout.standardize(data_format)
        self.transform = transforms.check_name(transform)
        self.output_size = (
            None if output_size is None else _check_output_size(output_size)
        )
        bilinear_sampler.check_sampling_options(kernel, padding_mode, antialias)
        argument_validation.check_optional_layer(
            localization,
            "localization",
            "mapping the input to (B, F) features, or None for the default",
        )
        if localization is None and transforms.get(transform).spatial_dims != 2:
            raise ValueError(
                "`localization` must be given for a volume transform: the "
                "default localization is a 2-D CNN. Received: "
                f"localization=None, transform={transform!r}"
            )
        self.localization = (
            localization
            if localization is not None
            else localization_lib.default_localization(
                name="localization", data_format=self.data_format
            )
        )
        self.kernel = kernel
        self.padding_mode = padding_mode
        self.align_corners = argument_validation.check_bool(
            align_corners, "align_corners"
        )
        self.antialias = antialias
        if deterministic is not None:
            argument_validation.check_bool(deterministic, "deterministic")
        self.deterministic = deterministic
        self.lr_multiplier = argument_validation.check_positive_float(
            lr_multiplier, "lr_multiplier"
        )
        self.return_theta = argument_validation.check_bool(
            return_theta, "return_theta"
        )
        self.return_grid = argument_validation.check_bool(
            return_grid, "return_grid"
        )
        self.heads = self._make_heads()
        # A plain object, so Keras' attribute tracking leaves it alone.
        self._recorder = _InputRecorder()

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

    def _spatial_dims(self):
        """2 for images, 3 for volumes (a family such as `"affine3d"`)."""
        return transforms.get(self.transform).spatial_dims

    def _sample_size(self, inputs_shape):
        """The output's spatial size for `inputs_shape` (in the layer's
        `data_format`), after checking that shape."""
        dims = self._spatial_dims()
        form = "(B, H, W, C)" if dims == 2 else "(B, D, H, W, C)"
        if self.data_format == "channels_first":
            form = "(B, C, H, W)" if dims == 2 else "(B, C, D, H, W)"
        argument_validation.check_shape(
            inputs_shape, dims + 2, "inputs", form, type(self).__name__
        )
        inputs_shape = _layout.shape_to_channels_last(
            inputs_shape, self.data_format
        )
        if self.output_size is not None:
            if len(self.output_size) != dims:
                raise ValueError(
                    f"`output_size` must have {dims} entries for transform "
                    f"{self.transform!r}. Received: output_size="
                    f"{self.output_size}"
                )
            return self.output_size
        spatial = tuple(inputs_shape[1:-1])
        if any(side is None for side in spatial):
            raise ValueError(
                "`output_size` must be given when the input's spatial size "
                f"is unknown. Received: inputs.shape={tuple(inputs_shape)}, "
                "output_size=None"
            )
        return tuple(int(side) for side in spatial)

    def build(self, inputs_shape):
        self._sample_size(inputs_shape)
        bilinear_sampler.check_sample_shapes(
            _layout.shape_to_channels_last(inputs_shape, self.data_format),
            (None,) * len(inputs_shape),
            self.kernel,
            self.antialias,
        )
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

    def warp(self, inputs, theta):
        """Samples `inputs` where theta sends this layer's output grid.

        One head's grid generator and sampler, with this layer's transform,
        output size and sampling options: what `call` does after the
        localization.
        Convention: theta maps output points to input points.

        Args:
            inputs: float tensor `(B, H, W, C)` or `(B, D, H, W, C)`, in
                the layer's `data_format`.
            theta: float tensor `(B, P)`, P the family's `num_params`.
        Returns:
            A tuple `(outputs, grid)`: `outputs` `(B, H_out, W_out, C)`
            (volumes `(B, D_out, H_out, W_out, C)`), in the layer's
            `data_format`, and `grid` `(B, H_out, W_out, 2)` (volumes
            `(B, D_out, H_out, W_out, 3)`) in `[-1, 1]`.
        Raises:
            ValueError: inputs whose rank does not fit the family, or
                theta of the wrong size for the family.

        Example:
        >>> import numpy as np
        >>> layer = SpatialTransformer(transform="attention")
        >>> images = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
        >>> right_half = np.array([[0.5, 0.5, 0.0]], "float32")
        >>> outputs, grid = layer.warp(images, right_half)
        >>> tuple(outputs.shape), tuple(grid.shape)
        ((1, 4, 4, 1), (1, 4, 4, 2))
        """
        size = self._sample_size(inputs.shape)
        grid = transforms.grid_for(
            self.transform, theta, size, self.align_corners
        )
        # The ops read channels-last tensors: a channels-first layer pays
        # one transpose in and one out (see `_layout`).
        outputs = sampling.sample(
            _layout.to_channels_last(inputs, self.data_format),
            grid,
            kernel=self.kernel,
            padding_mode=self.padding_mode,
            align_corners=self.align_corners,
            antialias=self.antialias,
            deterministic=self.deterministic,
        )
        return _layout.from_channels_last(outputs, self.data_format), grid

    def _localize(self, inputs, training):
        """`(features, finite)`: the localization's features, computed on
        zeros for samples with a non-finite value, and a `(B,)` mask of the
        samples that are finite."""
        axes = tuple(range(1, len(inputs.shape)))
        finite = ops.all(ops.isfinite(inputs), axis=axes)
        clean = ops.where(
            ops.reshape(finite, (-1,) + (1,) * (len(inputs.shape) - 1)),
            inputs,
            ops.zeros_like(inputs),
        )
        return self.localization(clean, training=training), finite

    def _views(self, inputs, training):
        features, finite = self._localize(inputs, training)
        views = {"theta": [], "grids": [], "outputs": []}
        for head in self.heads:
            theta = head(features)
            # A non-finite input makes the sampler's theta gradient NaN
            # even for a finite theta; stop it before it meets the finite
            # features of that sample in the head's kernel gradient.
            theta = ops.where(finite[:, None], theta, ops.stop_gradient(theta))
            outputs, grid = self.warp(inputs, theta)
            views["theta"].append(theta)
            views["grids"].append(grid)
            views["outputs"].append(outputs)
        return views

    def views(self, inputs, training=False):
        """Each head's theta, grid and output for `inputs`.

        The same computation as `call`, per head and unmerged, without
        Keras' `__call__` (builds the layer if needed; nothing is
        recorded). `keras_stn.viz.transformer_views` draws it.
        Convention: as the layer.

        Args:
            inputs: float tensor `(B, H, W, C)` (or as the layer's
                `data_format` and family say), what the layer receives;
                cast to the layer's compute dtype.
            training: bool, passed to the localization. Defaults to
                `False`.
        Returns:
            A dict of lists with one tensor per head, in head order (N
            heads; 1 for `SpatialTransformer`): `"theta"` `(B, P)`,
            `"grids"` `(B, H_out, W_out, 2)`, `"outputs"`
            `(B, H_out, W_out, C)`.
        Raises:
            ValueError: as `build`.

        Example:
        >>> import numpy as np
        >>> layer = SpatialTransformer(
        ...     transform="attention", output_size=(8, 8)
        ... )
        >>> views = layer.views(np.zeros((2, 16, 16, 3), "float32"))
        >>> [tuple(v[0].shape) for v in views.values()]
        [(2, 3), (2, 8, 8, 2), (2, 8, 8, 3)]
        """
        inputs = ops.cast(ops.convert_to_tensor(inputs), self.compute_dtype)
        if not self.built:
            self.build(tuple(inputs.shape))
        return self._views(inputs, training)

    @contextlib.contextmanager
    def recording_inputs(self):
        """Records what this layer receives while the context is active.

        Yields a list to which every call of the layer appends its
        `inputs` (after Keras casts them to the compute dtype), wherever
        the layer sits: functional, Sequential or subclassed models, at any
        depth. Eager calls record tensors, calls traced into a graph
        (`tf.function`, `jax.jit`, building a functional model) symbolic
        ones. Contexts nest; each records every call made while it is
        active.

        Example:
        >>> import numpy as np
        >>> layer = SpatialTransformer(transform="attention")
        >>> model = keras.Sequential([keras.layers.Rescaling(2.0), layer])
        >>> with layer.recording_inputs() as received:
        ...     _ = model(np.ones((1, 16, 16, 1), "float32"))
        >>> len(received), float(received[0][0, 0, 0, 0])
        (1, 2.0)
        """
        received = []
        self._recorder.lists.append(received)
        try:
            yield received
        finally:
            self._recorder.close(received)

    def call(self, inputs, training=None):
        self._recorder.record(inputs)
        return self._merge(self._views(inputs, training))

    def _merge(self, views):
        """The call's result from one head's views; subclasses with
        several heads override it."""
        return self._pack(
            views["outputs"][0], views["theta"][0], views["grids"][0]
        )

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
        channels = inputs_shape[_layout.channel_axis(self.data_format)]
        outputs = _layout.shape_from_channels_last(
            (batch, *size, channels), self.data_format
        )
        theta = (batch, transforms.get(self.transform).num_params)
        return self._pack(outputs, theta, (batch, *size, self._spatial_dims()))

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
            "deterministic": self.deterministic,
            "lr_multiplier": self.lr_multiplier,
            "return_theta": self.return_theta,
            "return_grid": self.return_grid,
            "data_format": self.data_format,
        }

    @classmethod
    def from_config(cls, config):
        config = _layout.saved_config(config)
        config["localization"] = keras.saving.deserialize_keras_object(
            config["localization"]
        )
        return cls(**config)


class _InputRecorder:
    """The lists that `recording_inputs` contexts hold open."""

    def __init__(self):
        self.lists = []

    def record(self, inputs):
        for received in self.lists:
            received.append(inputs)

    def close(self, received):
        # By identity: `list.remove` compares contents, and two contexts
        # may hold equal lists.
        self.lists = [other for other in self.lists if other is not received]
