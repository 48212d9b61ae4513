"""The table of public layers on images (rank 4) and volumes (rank 5)
that `rank_generic_test.py` and `data_format_test.py` run.

Each case makes a layer for a `data_format` and its inputs, channels-last
as drawn; `image_inputs` and `image_outputs` say which tensors follow the
layer's `data_format` (the others, grids, theta, features, are the same in
either layout). Not a test module: no tests are collected from it.
"""

import dataclasses
from collections.abc import Callable

import keras
import numpy as np

import keras_stn
from keras_stn.ops import transforms

# Public layers that have no volume form, and why: every other public name
# of `keras_stn.layers` has a rank-4 and a rank-5 case below.
IMAGES_ONLY = {
    "DepthwiseGradConv2D": "a 2-D convolution (Conv3D is the volume twin)",
    "default_localization": "a 2-D CNN trunk (Resizing has no 3-D form)",
}
# Public layers that take no images, so no `data_format`: what they take.
NO_DATA_FORMAT = {
    "GridGenerator": "theta (B, P) -> a grid of coordinates",
    "LocalizationHead": "features (B, F)",
}

_SIZES = {2: (5, 6), 3: (4, 5, 6)}
_OUT_SIZES = {2: (3, 4), 3: (2, 3, 4)}
_FAMILIES = {2: "affine", 3: "affine3d"}
_BATCH = 2
_CHANNELS = 2


@dataclasses.dataclass(frozen=True)
class Case:
    """One public layer on one spatial rank.

    Attributes:
        name: the public name in `keras_stn.layers`.
        spatial_dims: 2 (images, rank 4) or 3 (volumes, rank 5).
        make: `make(data_format)` -> a new layer; `data_format` is None
            for layers that take none.
        inputs: `inputs(seed)` -> list of float32 channels-last arrays.
        image_inputs: per input, whether it follows `data_format`.
        image_outputs: per flattened output, whether it follows it.
        as_list: whether the layer takes its inputs as one list.
    """

    name: str
    spatial_dims: int
    make: Callable
    inputs: Callable
    image_inputs: tuple
    image_outputs: tuple
    as_list: bool = False
    family: str | None = None

    @property
    def id(self):
        return f"{self.name}-{self.spatial_dims}d"

    @property
    def takes_data_format(self):
        return self.name not in NO_DATA_FORMAT

    def data_formats(self):
        if not self.takes_data_format:
            return [None]
        return ["channels_last", "channels_first"]

    def call(self, layer, inputs):
        return layer(list(inputs)) if self.as_list else layer(*inputs)


def _rng(seed):
    return np.random.default_rng(seed)


def _images(dims, seed):
    shape = (_BATCH, *_SIZES[dims], _CHANNELS)
    return _rng(seed).random(shape).astype("float32")


def _grid(dims, seed):
    shape = (_BATCH, *_OUT_SIZES[dims], dims)
    return _rng(seed + 1).uniform(-0.9, 0.9, shape).astype("float32")


def _theta(dims, seed):
    family = transforms.get(_FAMILIES[dims])
    noise = 0.1 * _rng(seed + 2).normal(size=(_BATCH, family.num_params))
    return (family.identity() + noise).astype("float32")


def _field(dims, seed, scale):
    shape = (_BATCH, *_SIZES[dims], dims)
    return (scale * _rng(seed + 3).normal(size=shape)).astype("float32")


def _trunk(data_format):
    """A tiny localization: flatten (channels-last order in either
    layout, so weights carry over) and a dense layer."""
    return keras.Sequential(
        [
            keras.layers.Flatten(data_format=data_format),
            keras.layers.Dense(4, activation="tanh"),
        ],
        name="localization",
    )


def _cases_for(dims):
    family = _FAMILIES[dims]
    images = lambda seed: [_images(dims, seed)]  # noqa: E731
    return [
        Case(
            "BilinearSampler",
            dims,
            lambda df: keras_stn.BilinearSampler(data_format=df),
            lambda seed: [_images(dims, seed), _grid(dims, seed)],
            (True, False),
            (True,),
        ),
        Case(
            "GridGenerator",
            dims,
            lambda df: keras_stn.GridGenerator(
                _OUT_SIZES[dims], transform=family
            ),
            lambda seed: [_theta(dims, seed)],
            (False,),
            (False,),
            family=family,
        ),
        Case(
            "LocalizationHead",
            dims,
            lambda df: keras_stn.LocalizationHead(transform=family),
            lambda seed: [_rng(seed).normal(size=(_BATCH, 7)).astype("f4")],
            (False,),
            (False,),
        ),
        Case(
            "SpatialTransformer",
            dims,
            lambda df: keras_stn.SpatialTransformer(
                _trunk(df),
                transform=family,
                output_size=_OUT_SIZES[dims],
                return_theta=True,
                return_grid=True,
                data_format=df,
            ),
            images,
            (True,),
            (True, False, False),
            family=family,
        ),
        Case(
            "ParallelSpatialTransformers",
            dims,
            lambda df: keras_stn.ParallelSpatialTransformers(
                2,
                _trunk(df),
                transform=family,
                merge="concat",
                output_size=_OUT_SIZES[dims],
                return_grid=True,
                data_format=df,
            ),
            images,
            (True,),
            (True, False),
            family=family,
        ),
        Case(
            "DenseSpatialTransformer",
            dims,
            lambda df: keras_stn.DenseSpatialTransformer(data_format=df),
            lambda seed: [_images(dims, seed), _field(dims, seed, 1.0)],
            (True, True),
            (True,),
            as_list=True,
        ),
        Case(
            "VelocityIntegration",
            dims,
            lambda df: keras_stn.VelocityIntegration(steps=3, data_format=df),
            lambda seed: [_field(dims, seed, 0.5)],
            (True,),
            (True,),
        ),
    ]


def _images_only_cases():
    return [
        Case(
            "DepthwiseGradConv2D",
            2,
            lambda df: keras_stn.layers.DepthwiseGradConv2D(
                3, 3, padding="same", data_format=df
            ),
            lambda seed: [_images(2, seed)],
            (True,),
            (True,),
        ),
        Case(
            "default_localization",
            2,
            lambda df: keras_stn.layers.default_localization(
                size=16, filters=2, units=3, data_format=df
            ),
            lambda seed: [_images(2, seed)],
            (True,),
            (False,),
        ),
    ]


CASES = _cases_for(2) + _cases_for(3) + _images_only_cases()


def to_layout(x, data_format):
    """A channels-last array in `data_format`."""
    if data_format != "channels_first":
        return x
    return np.moveaxis(x, -1, 1)


def from_layout(x, data_format):
    """An array in `data_format` as channels-last."""
    if data_format != "channels_first":
        return x
    return np.moveaxis(x, 1, -1)


def layer_inputs(case, data_format, seed=0, dtype="float32"):
    """The case's inputs in `data_format`."""
    return [
        to_layout(x, data_format).astype(dtype) if image else x.astype(dtype)
        for x, image in zip(case.inputs(seed), case.image_inputs)
    ]


def perturb_weights(layer, seed=0, scale=0.1):
    """Moves every weight by `scale` times a fixed normal draw, so that no
    path is cut by a zero (the heads' kernels start at zero)."""
    rng = _rng(seed)
    layer.set_weights(
        [w + scale * rng.normal(size=w.shape) for w in layer.get_weights()]
    )


def upstreams(outputs, seed=1):
    """A fixed normal draw per output (NumPy arrays of their shapes)."""
    rng = _rng(seed)
    return [rng.normal(size=tuple(o.shape)) for o in outputs]


def gradients(case, layer, inputs, upstream):
    """Outputs and gradients of `sum_k <outputs_k, upstream_k>` through the
    backend's autodiff: `jax.vjp` of `jax.jit(layer.stateless_call)` on
    JAX, a `GradientTape` on TensorFlow, `torch.autograd` on PyTorch.

    Args:
        case: a `Case`; `layer` is built (called once) already.
        inputs: list of NumPy arrays, as the layer takes them.
        upstream: list of NumPy arrays, one per flattened output.
    Returns:
        `(outputs, input_grads, weight_grads)`: lists of NumPy arrays (the
        weights in `layer.trainable_variables` order); a gradient the
        backend reports as absent is None.
    """
    backend = keras.backend.backend()
    weights = layer.trainable_variables

    def loss_of(outputs, ops):
        flat = keras.tree.flatten(outputs)
        total = 0.0
        for out, up in zip(flat, upstream):
            total = total + ops.sum(out * ops.convert_to_tensor(up, out.dtype))
        return total, flat

    if backend == "jax":
        import jax

        non_trainable = [v.value for v in layer.non_trainable_variables]

        def forward(trainable, xs):
            args = [list(xs)] if case.as_list else list(xs)
            outputs, _ = layer.stateless_call(trainable, non_trainable, *args)
            return loss_of(outputs, keras.ops)

        _, pullback, flat = jax.vjp(
            jax.jit(forward),
            [v.value for v in weights],
            [jax.numpy.asarray(x) for x in inputs],
            has_aux=True,
        )
        weight_grads, input_grads = pullback(jax.numpy.ones((), flat[0].dtype))
    elif backend == "tensorflow":
        import tensorflow as tf

        xs = [tf.convert_to_tensor(x) for x in inputs]
        with tf.GradientTape() as tape:
            tape.watch(xs)
            loss, flat = loss_of(case.call(layer, xs), keras.ops)
        grads = tape.gradient(loss, xs + [v.value for v in weights])
        input_grads, weight_grads = grads[: len(xs)], grads[len(xs) :]
    elif backend == "torch":
        import torch

        xs = [torch.tensor(x, requires_grad=True) for x in inputs]
        loss, flat = loss_of(case.call(layer, xs), keras.ops)
        grads = torch.autograd.grad(
            loss, xs + [v.value for v in weights], allow_unused=True
        )
        input_grads, weight_grads = grads[: len(xs)], grads[len(xs) :]
    else:
        raise NotImplementedError(f"no gradients for backend {backend!r}")

    def numpy(values):
        return [
            None if g is None else keras.ops.convert_to_numpy(g) for g in values
        ]

    return numpy(flat), numpy(input_grads), numpy(weight_grads)


def build(case, layer, inputs):
    """Builds `layer` by a symbolic call (cheaper than an eager one under
    JAX, which compiles every primitive it meets); returns the symbolic
    flattened outputs."""
    symbolic = [keras.Input(x.shape[1:], batch_size=len(x)) for x in inputs]
    return keras.tree.flatten(case.call(layer, symbolic))
