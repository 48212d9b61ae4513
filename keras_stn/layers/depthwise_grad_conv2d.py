"""A `Conv2D` whose gradient w.r.t. its input is a depthwise convolution."""

import keras
import tensorflow as tf
from tensorflow.python.ops import control_flow_util

# Above this many input channels the depthwise form (F * C_in channels per
# pixel) stops paying for itself; the layer uses TensorFlow's kernel.
MAX_FAST_CHANNELS = 4


def _flipped(kernel):
    """`(kh, kw, C_in, F)` -> `(kh, kw, F, C_in)`, turned by 180 degrees:
    the adjoint's kernel, as depthwise filters with multiplier `C_in`."""
    return tf.transpose(kernel[::-1, ::-1], [0, 1, 3, 2])


def _padding(size, padding):
    """`(before, after)` padding of one axis of a stride-1 convolution."""
    if padding == "valid":
        return 0, 0
    return (size - 1) // 2, size - 1 - (size - 1) // 2


def _conv(inputs, kernel, padding):
    """Stride-1, undilated `conv2d` with a depthwise input gradient.

    Args:
        inputs: `(B, H, W, C_in)`.
        kernel: `(kh, kw, C_in, F)`.
        padding: `"same"` or `"valid"`.
    Returns:
        `(B, H_out, W_out, F)`, exactly `tf.nn.conv2d`'s value.
    """
    return _CONVS[padding](inputs, kernel)


def _make_conv(padding):
    @tf.custom_gradient
    def conv(inputs, kernel):
        outputs = tf.nn.conv2d(inputs, kernel, 1, padding.upper())
        return outputs, lambda upstream: _grad(
            inputs, kernel, upstream, padding
        )

    return conv


def _grad(inputs, kernel, upstream, padding):
    """`(d inputs, d kernel)` of `_conv`."""
    kh, kw, channels, filters = kernel.shape
    # d inputs = the correlation of `upstream` with the turned kernel,
    # padded so that it covers every input pixel: per filter, a
    # depthwise convolution into C_in maps, then a sum over filters.
    (top, bottom), (left, right) = _padding(kh, padding), _padding(kw, padding)
    padded = tf.pad(
        upstream,
        [[0, 0], [kh - 1 - top, kh - 1 - bottom]]
        + [[kw - 1 - left, kw - 1 - right], [0, 0]],
    )
    per_filter = tf.nn.depthwise_conv2d(
        padded, _flipped(kernel), [1, 1, 1, 1], "VALID"
    )
    shape = tf.shape(per_filter)
    d_inputs = tf.reduce_sum(
        tf.reshape(per_filter, tf.concat([shape[:3], [filters, channels]], 0)),
        axis=3,
    )
    d_kernel = tf.raw_ops.Conv2DBackpropFilter(
        input=inputs,
        filter_sizes=tf.shape(kernel),
        out_backprop=upstream,
        strides=[1, 1, 1, 1],
        padding=padding.upper(),
    )
    return d_inputs, d_kernel


_CONVS = {padding: _make_conv(padding) for padding in ("same", "valid")}


def _in_xla():
    """Whether ops are being traced for XLA (`jit_compile=True`), which
    compiles Conv2D's own gradient well and the depthwise form badly (10x
    slower on CPU)."""
    graph = tf.compat.v1.get_default_graph()
    return control_flow_util.GraphOrParentsInXlaContext(graph)


@keras.saving.register_keras_serializable(package="keras_stn")
class DepthwiseGradConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` with a faster gradient w.r.t. a thin input.

    Same arguments, weights and outputs as `Conv2D`. Only the gradient
    w.r.t. the layer's input differs in how it is computed: as a depthwise
    convolution of the upstream gradient with the turned kernel, summed over
    filters, instead of TensorFlow's `Conv2DBackpropInput`, which on CPU is
    slow for a few input channels (9x9 kernel, 1 -> 32 channels, 42x42,
    batch 128: 8 ms instead of 76 ms on the 2-core machine of README's
    figures). A network nobody differentiates w.r.t. its input never pays
    for that gradient; a network behind a spatial transformer always does
    (theta's gradient flows through it), which is why the paper's CNN body
    uses this layer for its first convolution.

    The fast path applies on the TensorFlow backend to channels_last,
    stride-1, undilated, ungrouped convolutions with at most
    `MAX_FAST_CHANNELS` input channels, outside XLA (`jit_compile=True`
    compiles `Conv2D`'s own gradient better); anything else is plain
    `Conv2D`.
    The hand-written gradient is made of differentiable ops, so second
    derivatives work.

    Args: as `keras.layers.Conv2D`.
    Call arguments:
        inputs: `(B, H, W, C_in)`.
    Returns:
        `(B, H_out, W_out, filters)`.

    Example:
    >>> import numpy as np
    >>> layer = DepthwiseGradConv2D(4, 3, padding="same")
    >>> layer(np.zeros((2, 8, 8, 1), "float32")).shape
    TensorShape([2, 8, 8, 4])
    """

    def _fast(self, inputs):
        return (
            keras.backend.backend() == "tensorflow"
            and self.data_format == "channels_last"
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and inputs.shape[-1] is not None
            and inputs.shape[-1] <= MAX_FAST_CHANNELS
            and not _in_xla()
        )

    def convolution_op(self, inputs, kernel):
        if not self._fast(inputs):
            return super().convolution_op(inputs, kernel)
        inputs = tf.convert_to_tensor(inputs)
        kernel = tf.cast(tf.convert_to_tensor(kernel), inputs.dtype)
        return _conv(inputs, kernel, self.padding)
