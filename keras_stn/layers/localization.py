"""The default localization trunk."""

import keras
from keras import layers

from keras_stn.layers import _layout
from keras_stn.utils import argument_validation


def default_localization(
    size=32, filters=20, units=50, name=None, data_format=None
):
    """A small CNN trunk, after the paper's MNIST localization network.

    The input (image or feature map, any size) is resized to `size x size`,
    then `conv 5x5 (filters) -> max-pool 2 -> conv 5x5 (filters) -> max-pool
    2 -> flatten -> dense (units, relu)`. Resizing first makes the trunk's
    size independent of the input's, and flattening (not global pooling)
    keeps the positions a transformer must regress.

    Args:
        size: int, the side the input is resized to. Defaults to 32.
        filters: int, filters of each convolution. Defaults to 20.
        units: int, features out. Defaults to 50.
        name: optional model name.
        data_format: `"channels_last"` or `"channels_first"`, the input's
            layout; defaults to `keras.config.image_data_format()`. The
            flattened features are in channels-last order either way, so
            weights carry over between the two.
    Returns:
        An unbuilt `keras.Sequential` mapping `(B, H, W, C)` (or
        `(B, C, H, W)`) to `(B, units)`.
    Raises:
        ValueError: if `size`, `filters` or `units` is not a positive int,
            or an unknown `data_format`.
    """
    data_format = _layout.standardize(data_format)
    size = argument_validation.check_positive_int(size, "size")
    filters = argument_validation.check_positive_int(filters, "filters")
    units = argument_validation.check_positive_int(units, "units")
    argument_validation.check_optional_str(name, "name")
    return keras.Sequential(
        [
            layers.Resizing(size, size, data_format=data_format),
            layers.Conv2D(
                filters, 5, activation="relu", data_format=data_format
            ),
            layers.MaxPooling2D(2, data_format=data_format),
            layers.Conv2D(
                filters, 5, activation="relu", data_format=data_format
            ),
            layers.MaxPooling2D(2, data_format=data_format),
            layers.Flatten(data_format=data_format),
            layers.Dense(units, activation="relu"),
        ],
        name=name,
    )
