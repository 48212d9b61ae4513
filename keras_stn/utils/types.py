"""Type aliases of the public API.

Keras 3 runs on three frameworks: a tensor is the active backend's
(`tf.Tensor`, `jax.Array`, `torch.Tensor`) or, in a functional model, a
`keras.KerasTensor`, so `Tensor` names the role rather than one class. The
ops take anything `keras.ops.convert_to_tensor` takes (`TensorLike`: a
tensor, a NumPy array, nested sequences of numbers).
"""

from collections.abc import Sequence
from typing import Any

Tensor = Any
TensorLike = Any
# An output size: `(H, W)` for images, `(D, H, W)` for volumes.
Size = Sequence[int]
