"""Parallel spatial transformers in front of a standard backbone (the
paper's CUB-200-2011 architecture, section 4.3)."""

import keras
from keras import layers

from keras_stn.layers import _layout
from keras_stn.layers import localization as localization_lib
from keras_stn.layers import parallel_spatial_transformers


def _pair(size):
    """An int side or an `(H, W)` pair, as a tuple."""
    return (size, size) if isinstance(size, int) else tuple(size)


def wrap_backbone(
    backbone,
    num_classes,
    num_transformers=2,
    transform="attention",
    input_size=448,
    sample_size=224,
    localization=None,
    classifier_activation="softmax",
    dropout=0.0,
    data_format=None,
    **transformer_kwargs,
):
    """N parallel transformers, one shared backbone, one classifier.

    `num_transformers` transformers share a localization trunk (N heads)
    and each samples a `sample_size` view of the `input_size` image; the
    same backbone (shared weights) reads every view; the pooled features
    are concatenated and classified. With `"attention"` transformers this
    is the paper's 2x/4x ST-CNN for birds (448 in, 224 crops, Inception).

    Args:
        backbone: a `keras.Model` on `(sample_size, sample_size, C)` images
            (channels-first: `(C, sample_size, sample_size)`) giving
            `(B, h, w, F)` (or `(B, F, h, w)`; pooled here) or `(B, F)`, e.g.
            `keras.applications.InceptionV3(include_top=False,
            weights=None, input_shape=(224, 224, 3))`. Pass
            `weights="imagenet"` there for pretrained features (a download).
        num_classes: int (200 for CUB-200-2011).
        num_transformers: int >= 1. Defaults to 2.
        transform: a registered family. Defaults to `"attention"`.
        input_size: int or `(H, W)` of the input images. Defaults to 448.
        sample_size: int or `(H, W)` each transformer samples. Defaults to
            224.
        localization: the shared trunk; defaults to
            `default_localization(size=64, data_format=data_format)`.
        classifier_activation: as in `keras.applications`.
        dropout: float, dropout before the classifier. Defaults to 0.
        data_format: `"channels_last"` or `"channels_first"`, the layout of
            the images and of the backbone; defaults to
            `keras.config.image_data_format()`.
        **transformer_kwargs: passed to `ParallelSpatialTransformers`.
    Returns:
        A `keras.Model`, `(B, H, W, C) -> (B, num_classes)` (or from
        `(B, C, H, W)`).
    Raises:
        ValueError: a backbone that is not a Keras model, or whose input
            does not match `sample_size`, or an unknown `data_format`.
    """
    data_format = _layout.standardize(data_format)
    if not isinstance(backbone, keras.Model):
        raise ValueError(
            "`backbone` must be a keras.Model (e.g. from keras.applications"
            f" with include_top=False). Received: backbone={backbone!r}"
        )
    input_hw, sample_hw = _pair(input_size), _pair(sample_size)
    backbone_shape = _layout.shape_to_channels_last(
        backbone.input_shape, data_format
    )
    backbone_hw = tuple(backbone_shape[1:3])
    if backbone_hw != sample_hw:
        raise ValueError(
            "`backbone` must take the transformers' samples: its input is "
            f"{backbone_hw}, `sample_size` is {sample_hw}. Received: "
            f"backbone.input_shape={backbone.input_shape}, "
            f"data_format={data_format!r}"
        )
    channels = backbone_shape[-1]
    inputs = keras.Input(
        _layout.shape_from_channels_last(
            (None, *input_hw, channels), data_format
        )[1:]
    )
    views = parallel_spatial_transformers.ParallelSpatialTransformers(
        num_transformers,
        localization
        or localization_lib.default_localization(
            size=64, data_format=data_format
        ),
        transform=transform,
        output_size=sample_hw,
        name="transformers",
        data_format=data_format,
        **transformer_kwargs,
    )(inputs)
    pool = layers.GlobalAveragePooling2D(data_format=data_format)
    features = []
    for view in views:
        x = backbone(view)
        features.append(pool(x) if len(x.shape) == 4 else x)
    x = features[0] if len(features) == 1 else layers.Concatenate()(features)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation=classifier_activation)(x)
    return keras.Model(inputs, outputs, name=f"st_{backbone.name}")
