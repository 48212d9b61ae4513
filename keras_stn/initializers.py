"""Initializers: the identity parameters of a transform family."""

import keras
import numpy as np

from keras_stn.ops import transforms


@keras.saving.register_keras_serializable(package="keras_stn")
class TransformIdentity(keras.initializers.Initializer):
    """Fills a `(P,)` bias with the identity parameters of a family.

    A localization head whose kernel is zero and whose bias is this starts
    every sample at the identity warp (the paper's initialisation).

    Args:
        transform: str, a registered family name (`keras_stn.ops.transforms`).
    Raises:
        ValueError: an unknown family, or a shape other than `(P,)`.

    Example:
    >>> keras.ops.convert_to_numpy(TransformIdentity("attention")((3,)))
    array([1., 0., 0.], dtype=float32)
    """

    def __init__(self, transform="affine"):
        self.transform = transform
        self._family = transforms.get(transform)

    def __call__(self, shape, dtype=None):
        identity = self._family.identity()
        if tuple(shape) != identity.shape:
            raise ValueError(
                f"`shape` must be ({self._family.num_params},) for transform "
                f"{self.transform!r}. Received: shape={tuple(shape)}"
            )
        return keras.ops.convert_to_tensor(
            identity.astype(np.float64), dtype=dtype or "float32"
        )

    def get_config(self):
        return {"transform": self.transform}
