"""A `Conv2D` whose gradient w.r.t. its input is a depthwise convolution."""

import keras

from keras_stn.ops import backend

# Above this many input channels the depthwise form (F * C_in channels per
# pixel) stops paying for itself; the layer uses TensorFlow's kernel.
MAX_FAST_CHANNELS = 4


@keras.saving.register_keras_serializable(package="keras_stn")
class DepthwiseGradConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` with a faster gradient w.r.t. a thin input.

    Same arguments, weights and outputs as `Conv2D`. Only the gradient
    w.r.t. the layer's input differs in how it is computed: as a depthwise
    convolution of the upstream gradient with the turned kernel, summed over
    filters, instead of TensorFlow's `Conv2DBackpropInput`, which on CPU is
    slow for a few input channels (the paper CNN's first 9x9 convolution,
    1 -> 32 channels, took several times as long). A network nobody differentiates w.r.t. its input never pays
    for that gradient; a network behind a spatial transformer always does
    (theta's gradient flows through it), which is why the paper's CNN body
    uses this layer for its first convolution.

    The fast path applies on the TensorFlow backend, when TensorFlow sees
    no GPU (cuDNN's input gradient is fast), to channels_last, stride-1,
    undilated, ungrouped convolutions with at most `MAX_FAST_CHANNELS`
    input channels; anything else, and every other backend, is exactly
    `Conv2D`. Under whole-step XLA (`jit_compile=True`, which Keras does
    not choose on CPU) XLA compiles `Conv2D`'s own gradient better: pass
    `fast_input_gradient=False` there.
    The hand-written gradient is made of differentiable ops, so second
    derivatives work.

    Args:
        fast_input_gradient: bool, allow the depthwise input gradient where
            it applies. Defaults to `True`.
        **kwargs: as `keras.layers.Conv2D`.
    Call arguments:
        inputs: `(B, H, W, C_in)`.
    Returns:
        `(B, H_out, W_out, filters)`.

    Example:
    >>> import numpy as np
    >>> layer = DepthwiseGradConv2D(4, 3, padding="same")
    >>> tuple(layer(np.zeros((2, 8, 8, 1), "float32")).shape)
    (2, 8, 8, 4)
    """

    def __init__(self, *args, fast_input_gradient=True, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(fast_input_gradient, bool):
            raise ValueError(
                "`fast_input_gradient` must be True or False. Received: "
                f"fast_input_gradient={fast_input_gradient!r}"
            )
        self.fast_input_gradient = fast_input_gradient

    def _fast(self, inputs):
        return (
            self.fast_input_gradient
            and backend.name() == "tensorflow"
            and self.data_format == "channels_last"
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and inputs.shape[-1] is not None
            and inputs.shape[-1] <= MAX_FAST_CHANNELS
            and not backend.on_gpu(inputs)
        )

    def convolution_op(self, inputs, kernel):
        if not self._fast(inputs):
            return super().convolution_op(inputs, kernel)
        return backend.conv2d_depthwise_input_grad(
            inputs, kernel, self.padding
        )

    def get_config(self):
        return {
            **super().get_config(),
            "fast_input_gradient": self.fast_input_gradient,
        }
