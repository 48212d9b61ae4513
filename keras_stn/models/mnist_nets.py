"""The paper's distorted-MNIST networks: FCN, CNN, ST-FCN and ST-CNN.

Jaderberg et al., 2015, section 4.1: a plain network and the same network
with a spatial transformer in front, of roughly equal parameter counts.
"""

import keras
from keras import layers

from keras_stn.layers import localization_head
from keras_stn.layers import spatial_transformer


def _check_shape(input_shape):
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(isinstance(d, int) and d > 0 for d in input_shape)
    ):
        raise ValueError(
            "`input_shape` must be three positive ints (H, W, C). Received: "
            f"input_shape={input_shape!r}"
        )
    return tuple(input_shape)


def _check_classes(num_classes):
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, int)
        or (num_classes < 1)
    ):
        raise ValueError(
            "`num_classes` must be a positive int. Received: "
            f"num_classes={num_classes!r}"
        )


def _cnn_body(num_classes, classifier_activation, filters):
    return [
        layers.Conv2D(filters[0], 9, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(filters[1], 7, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(num_classes, activation=classifier_activation),
    ]


def _fcn_body(num_classes, classifier_activation, units):
    return [
        layers.Flatten(),
        *[layers.Dense(u, activation="relu") for u in units],
        layers.Dense(num_classes, activation=classifier_activation),
    ]


def paper_cnn_localization():
    """The paper's ST-CNN localization trunk: a 2x downsampled input, two
    5x5 convolutions of 20 filters with max-pooling, a dense layer of 50.

    Returns:
        An unbuilt `keras.Sequential`, `(B, H, W, C) -> (B, 50)`.
    """
    return keras.Sequential(
        [
            layers.MaxPooling2D(2),
            layers.Conv2D(20, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(20, 5, activation="relu"),
            layers.Flatten(),
            layers.Dense(50, activation="relu"),
        ],
        name="localization",
    )


def paper_fcn_localization(units=32):
    """The paper's ST-FCN localization trunk: two dense layers of `units`
    (the head is the third).

    Returns:
        An unbuilt `keras.Sequential`, `(B, H, W, C) -> (B, units)`.
    """
    return keras.Sequential(
        [
            layers.Flatten(),
            layers.Dense(units, activation="relu"),
            layers.Dense(units, activation="relu"),
        ],
        name="localization",
    )


def _with_transformer(
    input_shape, body, name, transform, localization, transformer_kwargs
):
    """`body` behind a `SpatialTransformer` with the given trunk."""
    localization_head.check_transform(transform)
    transformer = spatial_transformer.SpatialTransformer(
        localization,
        transform=transform,
        name="spatial_transformer",
        **transformer_kwargs,
    )
    return _model(input_shape, body, name, transformer)


def _model(input_shape, body, name, transformer=None):
    _check_shape(input_shape)
    inputs = keras.Input(input_shape)
    x = inputs if transformer is None else transformer(inputs)
    for layer in body:
        x = layer(x)
    return keras.Model(inputs, x, name=name)


def cnn(
    input_shape,
    num_classes=10,
    classifier_activation="softmax",
    filters=(32, 32),
):
    """The paper's CNN baseline: conv 9x9 -> max-pool -> conv 7x7 ->
    max-pool -> classifier.

    Args:
        input_shape: `(H, W, C)`.
        num_classes: int. Defaults to 10.
        classifier_activation: as in `keras.applications`. Defaults to
            `"softmax"`; `None` returns logits.
        filters: the two convolutions' filters. Defaults to `(32, 32)`.
    Returns:
        A `keras.Model`, `(B, H, W, C) -> (B, num_classes)`.
    Raises:
        ValueError: a bad `input_shape` or `num_classes`.
    """
    _check_classes(num_classes)
    return _model(
        input_shape,
        _cnn_body(num_classes, classifier_activation, filters),
        "cnn",
    )


def fcn(
    input_shape,
    num_classes=10,
    classifier_activation="softmax",
    units=(128, 128, 128),
):
    """The paper's fully connected baseline: dense ReLU layers of `units`.

    Args: as `cnn`, with `units` the hidden layers' sizes.
    Returns:
        A `keras.Model`, `(B, H, W, C) -> (B, num_classes)`.
    """
    _check_classes(num_classes)
    return _model(
        input_shape,
        _fcn_body(num_classes, classifier_activation, units),
        "fcn",
    )


def st_cnn(
    input_shape,
    num_classes=10,
    transform="affine",
    classifier_activation="softmax",
    filters=(32, 32),
    localization=None,
    **transformer_kwargs,
):
    """The paper's ST-CNN: a spatial transformer in front of `cnn`.

    Args:
        input_shape, num_classes, classifier_activation, filters: as `cnn`.
        transform: a registered family name. Defaults to `"affine"`.
        localization: the trunk; defaults to `paper_cnn_localization()`.
        **transformer_kwargs: passed to `SpatialTransformer` (output_size,
            kernel, padding_mode, lr_multiplier, ...).
    Returns:
        A `keras.Model`, `(B, H, W, C) -> (B, num_classes)`.
    """
    _check_classes(num_classes)
    return _with_transformer(
        input_shape,
        _cnn_body(num_classes, classifier_activation, filters),
        "st_cnn",
        transform,
        localization or paper_cnn_localization(),
        transformer_kwargs,
    )


def st_fcn(
    input_shape,
    num_classes=10,
    transform="affine",
    classifier_activation="softmax",
    units=(128, 128, 128),
    localization=None,
    **transformer_kwargs,
):
    """The paper's ST-FCN: a spatial transformer (dense localization) in
    front of `fcn`.

    Args: as `fcn` and `st_cnn`; `localization` defaults to
        `paper_fcn_localization()`.
    Returns:
        A `keras.Model`, `(B, H, W, C) -> (B, num_classes)`.
    """
    _check_classes(num_classes)
    return _with_transformer(
        input_shape,
        _fcn_body(num_classes, classifier_activation, units),
        "st_fcn",
        transform,
        localization or paper_fcn_localization(),
        transformer_kwargs,
    )
