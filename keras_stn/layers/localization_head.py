"""The localization network's final regression layer."""

import keras
from keras import ops

from keras_stn import initializers
from keras_stn.ops import transforms
from keras_stn.utils import argument_validation


@keras.saving.register_keras_serializable(package="keras_stn")
class LocalizationHead(keras.layers.Layer):
    """Regresses a family's parameters theta, starting at the identity.

    `theta = features @ kernel + bias`, with a zero kernel and the family's
    identity parameters as bias (`initializers.TransformIdentity`), so a new
    network starts with the identity warp and its first gradients move
    theta away from it. Works after any trunk that yields `(B, F)`.

    Args:
        transform: str, a registered family name. Defaults to `"affine"`.
        kernel_initializer: initializer of the `(F, P)` kernel. Defaults to
            `"zeros"`.
        lr_multiplier: finite float > 0, multiplies the gradient that
            reaches theta (and so every localization weight behind it).
            With SGD, with or without momentum (the paper's optimizer),
            this is exactly a learning-rate multiplier for the localization
            branch; adaptive optimizers (Adam, RMSprop) divide gradient
            scale out, so there it changes nearly nothing. Defaults to 1.
    Call arguments:
        features: float tensor `(B, F)`.
    Returns:
        Tensor `(B, P)`, P the family's `num_params`.
    Raises:
        ValueError: an unknown family, a bad `lr_multiplier`, or features
            that are not `(B, F)`.
    """

    def __init__(
        self,
        transform="affine",
        kernel_initializer="zeros",
        lr_multiplier=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.family = transforms.get(
            transforms.check_name(transform)
        )
        # Finite: a NaN or inf multiplier would turn every localization
        # gradient into NaN.
        self.lr_multiplier = argument_validation.check_positive_float(
            lr_multiplier, "lr_multiplier"
        )
        self.transform = transform
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, features_shape):
        argument_validation.check_shape(
            features_shape,
            2,
            "features",
            "(B, F)",
            known_axes=(1,),
            hint="with a known F: flatten or pool the localization output "
            "first",
        )
        num_params = self.family.num_params
        self.kernel = self.add_weight(
            name="kernel",
            shape=(features_shape[-1], num_params),
            initializer=self.kernel_initializer,
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(num_params,),
            initializer=initializers.TransformIdentity(self.transform),
        )

    def call(self, features):
        theta = ops.matmul(features, ops.cast(self.kernel, features.dtype))
        theta = theta + ops.cast(self.bias, features.dtype)
        if self.lr_multiplier != 1.0:
            theta = _scale_gradient(theta, self.lr_multiplier)
        return theta

    def compute_output_shape(self, features_shape):
        return (features_shape[0], self.family.num_params)

    def get_config(self):
        return {
            **super().get_config(),
            "transform": self.transform,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "lr_multiplier": self.lr_multiplier,
        }


def _scale_gradient(x, scale):
    """Identity forward; multiplies the gradient by `scale` backward."""

    @ops.custom_gradient
    def _scale(x):
        def _scale_gradient_grad(*args, upstream=None):
            """d x = scale * upstream."""
            upstream = args[0] if upstream is None else upstream
            return upstream * ops.cast(scale, upstream.dtype)

        return ops.copy(x), _scale_gradient_grad

    return _scale(x)


# The family-name check under the name models.mnist_nets calls.
check_transform = transforms.check_name
