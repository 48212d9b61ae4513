"""keras_stn: Spatial Transformer Networks for Keras 3.

Jaderberg et al., "Spatial Transformer Networks", 2015,
https://arxiv.org/abs/1506.02025
"""

from keras_stn import ops
from keras_stn.ops import transforms

__version__ = "0.1.0"

__all__ = ["ops", "transforms", "__version__"]
