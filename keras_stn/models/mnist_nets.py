"""The paper's distorted-MNIST networks: FCN, CNN, ST-FCN and ST-CNN.

Jaderberg et al., 2015, section 4.1: a plain network and the same network
with a spatial transformer in front, of roughly equal parameter counts.
"""

import math

import keras
from keras import layers

from keras_stn.layers import _layout
from keras_stn.layers import depthwise_grad_conv2d
from keras_stn.layers import localization_head
from keras_stn.layers import spatial_transformer
from keras_stn.utils import argument_validation

_CNN_FILTERS = (32, 32)
_FCN_UNITS = (128, 128, 128)


def _channels_last(input_shape, data_format):
    """`input_shape` (no batch axis) as `(H, W, C)`."""
    shape = _layout.shape_to_channels_last((None, *input_shape), data_format)
    return shape[1:]


def _cnn_params(input_shape, num_classes, filters):
    """`cnn`'s parameter count, without building it (`input_shape` is
    `(H, W, C)`)."""
    height, width, channels = input_shape
    f1, f2 = filters
    cells = (height // 4) * (width // 4)
    return (
        (81 * channels + 1) * f1
        + (49 * f1 + 1) * f2
        + (cells * f2 + 1) * num_classes
    )


def _fcn_params(input_shape, num_classes, units):
    """`fcn`'s parameter count, without building it."""
    total, width = 0, math.prod(input_shape)
    for size in (*units, num_classes):
        total += (width + 1) * size
        width = size
    return total


def _transformer_params(input_shape, transform, localization):
    """The localization trunk's and head's parameters (builds the trunk)."""
    from keras_stn.ops import transforms

    shape = (None, *input_shape)
    if not localization.built:
        localization.build(shape)
    features = localization.compute_output_shape(shape)[-1]
    num_params = transforms.get(transform).num_params
    return localization.count_params() + (features + 1) * num_params


def _balanced(widths, plain, with_transformer, low):
    """The width in `range(low, widths[0] + 1)` of the first free layer
    whose network count is closest to `plain`'s."""
    return min(
        range(low, widths[0] + 1),
        key=lambda w: abs(with_transformer(w) - plain),
    )


def _cnn_body(num_classes, classifier_activation, filters, data_format):
    return [
        # Behind a transformer the input gradient is always needed; this
        # layer computes it faster on a TensorFlow CPU (same values as
        # Conv2D).
        depthwise_grad_conv2d.DepthwiseGradConv2D(
            filters[0],
            9,
            padding="same",
            activation="relu",
            data_format=data_format,
        ),
        layers.MaxPooling2D(2, data_format=data_format),
        layers.Conv2D(
            filters[1],
            7,
            padding="same",
            activation="relu",
            data_format=data_format,
        ),
        layers.MaxPooling2D(2, data_format=data_format),
        # Channels-last order either way, so weights carry over.
        layers.Flatten(data_format=data_format),
        layers.Dense(num_classes, activation=classifier_activation),
    ]


def _fcn_body(num_classes, classifier_activation, units, data_format):
    return [
        layers.Flatten(data_format=data_format),
        *[layers.Dense(u, activation="relu") for u in units],
        layers.Dense(num_classes, activation=classifier_activation),
    ]


def paper_cnn_localization(data_format=None):
    """The paper's ST-CNN localization trunk: a 2x downsampled input, two
    5x5 convolutions of 20 filters with max-pooling, a dense layer of 50.

    Args:
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
    Returns:
        An unbuilt `keras.Sequential`, `(B, H, W, C) -> (B, 50)` (or
        `(B, C, H, W) -> (B, 50)`).
    """
    data_format = _layout.standardize(data_format)
    return keras.Sequential(
        [
            layers.MaxPooling2D(2, data_format=data_format),
            layers.Conv2D(20, 5, activation="relu", data_format=data_format),
            layers.MaxPooling2D(2, data_format=data_format),
            layers.Conv2D(20, 5, activation="relu", data_format=data_format),
            layers.Flatten(data_format=data_format),
            layers.Dense(50, activation="relu"),
        ],
        name="localization",
    )


def paper_fcn_localization(units=32, data_format=None):
    """The paper's ST-FCN localization trunk: two dense layers of `units`
    (the head is the third).

    Args:
        units: int, each dense layer's width. Defaults to 32.
        data_format: `"channels_last"` or `"channels_first"`, the input's
            layout (the flattening order follows channels-last either
            way); defaults to `keras.config.image_data_format()`.
    Returns:
        An unbuilt `keras.Sequential`, `(B, H, W, C) -> (B, units)` (or
        from `(B, C, H, W)`).
    """
    data_format = _layout.standardize(data_format)
    return keras.Sequential(
        [
            layers.Flatten(data_format=data_format),
            layers.Dense(units, activation="relu"),
            layers.Dense(units, activation="relu"),
        ],
        name="localization",
    )


def _with_transformer(
    input_shape,
    body,
    name,
    transform,
    localization,
    transformer_kwargs,
    data_format,
):
    """`body` behind a `SpatialTransformer` with the given trunk (the
    caller has checked `transform`)."""
    transformer = spatial_transformer.SpatialTransformer(
        localization,
        transform=transform,
        name="spatial_transformer",
        data_format=data_format,
        **transformer_kwargs,
    )
    return _model(input_shape, body, name, transformer)


def _model(input_shape, body, name, transformer=None):
    argument_validation.check_input_shape(input_shape)
    inputs = keras.Input(input_shape)
    x = inputs if transformer is None else transformer(inputs)
    for layer in body:
        x = layer(x)
    return keras.Model(inputs, x, name=name)


def cnn(
    input_shape,
    num_classes=10,
    classifier_activation="softmax",
    filters=_CNN_FILTERS,
    data_format=None,
):
    """The paper's CNN baseline: conv 9x9 -> max-pool -> conv 7x7 ->
    max-pool -> classifier.

    Args:
        input_shape: `(H, W, C)`, or `(C, H, W)` when channels-first.
        num_classes: int. Defaults to 10.
        classifier_activation: as in `keras.applications`. Defaults to
            `"softmax"`; `None` returns logits.
        filters: the two convolutions' filters. Defaults to `(32, 32)`.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`. Either gives the same
            weights' shapes and, on transposed inputs, the same outputs.
    Returns:
        A `keras.Model`, `(B, H, W, C) -> (B, num_classes)`.
    Raises:
        ValueError: a bad `input_shape`, `num_classes` or `data_format`.
    """
    argument_validation.check_positive_int(num_classes, "num_classes")
    data_format = _layout.standardize(data_format)
    return _model(
        input_shape,
        _cnn_body(num_classes, classifier_activation, filters, data_format),
        "cnn",
    )


def fcn(
    input_shape,
    num_classes=10,
    classifier_activation="softmax",
    units=_FCN_UNITS,
    data_format=None,
):
    """The paper's fully connected baseline: dense ReLU layers of `units`.

    Args:
        input_shape: `(H, W, C)`, or `(C, H, W)` when channels-first.
        num_classes: int. Defaults to 10.
        classifier_activation: as in `keras.applications`. Defaults to
            `"softmax"`; `None` returns logits.
        units: the hidden layers' sizes.
        data_format: as `cnn`.
    Returns:
        A `keras.Model`, `(B, H, W, C) -> (B, num_classes)`.
    """
    argument_validation.check_positive_int(num_classes, "num_classes")
    data_format = _layout.standardize(data_format)
    return _model(
        input_shape,
        _fcn_body(num_classes, classifier_activation, units, data_format),
        "fcn",
    )


def st_cnn(
    input_shape,
    num_classes=10,
    transform="affine",
    classifier_activation="softmax",
    filters=None,
    localization=None,
    data_format=None,
    **transformer_kwargs,
):
    """The paper's ST-CNN: a spatial transformer in front of `cnn`.

    As in the paper, the ST network has about the parameters of its plain
    counterpart: by default the second convolution is narrowed so that the
    whole network's count is closest to `cnn(input_shape, num_classes)`'s
    (never below 16 filters: on large inputs, such as TC's 60x60, the
    localization's dense layer alone is most of the budget).

    Args:
        input_shape: `(H, W, C)`, or `(C, H, W)` when channels-first.
        num_classes: int. Defaults to 10.
        classifier_activation: as in `keras.applications`. Defaults to
            `"softmax"`; `None` returns logits.
        filters: the two convolutions' filters; defaults to the balanced
            `(32, F)` described above.
        transform: a registered family name. Defaults to `"affine"`.
        localization: the trunk; defaults to
            `paper_cnn_localization(data_format)`.
        data_format: as `cnn`; also the transformer's.
        **transformer_kwargs: passed to `SpatialTransformer` (output_size,
            kernel, padding_mode, lr_multiplier, ...).
    Returns:
        A `keras.Model`, `(B, H, W, C) -> (B, num_classes)`.
    """
    argument_validation.check_positive_int(num_classes, "num_classes")
    input_shape = argument_validation.check_input_shape(input_shape)
    localization_head.check_transform(transform)
    data_format = _layout.standardize(data_format)
    localization = localization or paper_cnn_localization(data_format)
    if filters is None:
        extra = _transformer_params(input_shape, transform, localization)
        hwc = _channels_last(input_shape, data_format)
        plain = _cnn_params(hwc, num_classes, _CNN_FILTERS)
        second = _balanced(
            _CNN_FILTERS[1:],
            plain,
            lambda f: (
                extra + _cnn_params(hwc, num_classes, (_CNN_FILTERS[0], f))
            ),
            low=16,
        )
        filters = (_CNN_FILTERS[0], second)
    return _with_transformer(
        input_shape,
        _cnn_body(num_classes, classifier_activation, filters, data_format),
        "st_cnn",
        transform,
        localization,
        transformer_kwargs,
        data_format,
    )


def st_fcn(
    input_shape,
    num_classes=10,
    transform="affine",
    classifier_activation="softmax",
    units=None,
    localization=None,
    data_format=None,
    **transformer_kwargs,
):
    """The paper's ST-FCN: a spatial transformer (dense localization) in
    front of `fcn`.

    By default the first hidden layer is narrowed so that the network has
    about `fcn(input_shape, num_classes)`'s parameters (as in the paper).

    Args:
        input_shape: `(H, W, C)`, or `(C, H, W)` when channels-first.
        num_classes: int. Defaults to 10.
        classifier_activation: as in `keras.applications`. Defaults to
            `"softmax"`; `None` returns logits.
        transform: a registered family name. Defaults to `"affine"`.
        units: the hidden layers' sizes; defaults to the balanced
            `(U, 128, 128)`.
        localization: the trunk; defaults to
            `paper_fcn_localization(data_format=data_format)`.
        data_format: as `cnn`; also the transformer's.
        **transformer_kwargs: passed to `SpatialTransformer`.
    Returns:
        A `keras.Model`, `(B, H, W, C) -> (B, num_classes)`.
    """
    argument_validation.check_positive_int(num_classes, "num_classes")
    input_shape = argument_validation.check_input_shape(input_shape)
    localization_head.check_transform(transform)
    data_format = _layout.standardize(data_format)
    localization = localization or paper_fcn_localization(
        data_format=data_format
    )
    if units is None:
        extra = _transformer_params(input_shape, transform, localization)
        plain = _fcn_params(input_shape, num_classes, _FCN_UNITS)
        first = _balanced(
            _FCN_UNITS,
            plain,
            lambda u: (
                extra
                + _fcn_params(input_shape, num_classes, (u, *_FCN_UNITS[1:]))
            ),
            low=32,
        )
        units = (first, *_FCN_UNITS[1:])
    return _with_transformer(
        input_shape,
        _fcn_body(num_classes, classifier_activation, units, data_format),
        "st_fcn",
        transform,
        localization,
        transformer_kwargs,
        data_format,
    )
