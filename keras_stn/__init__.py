"""keras_stn: Spatial Transformer Networks for Keras 3.

Jaderberg et al., "Spatial Transformer Networks", 2015,
https://arxiv.org/abs/1506.02025

The library: `ops` (transforms, grids, samplers), `layers`, `initializers`,
`optimizers` (per-variable learning-rate multipliers),
`models` (the paper's networks, backbone wrappers), `config`, and, imported
on their own, `callbacks` and `viz` (pictures; matplotlib). It runs on every
Keras 3 backend; TensorFlow is imported only on the TensorFlow backend. The
paper's experiments (data sets, training runs, the `keras-stn` command) are
`keras_stn.experiments`, an application built on it.
"""

from keras_stn import config
from keras_stn import initializers
from keras_stn import layers
from keras_stn import models
from keras_stn import ops
from keras_stn import optimizers
from keras_stn.initializers import TransformIdentity
from keras_stn.layers import BilinearSampler
from keras_stn.layers import DenseSpatialTransformer
from keras_stn.layers import DepthwiseGradConv2D
from keras_stn.layers import GridGenerator
from keras_stn.layers import LocalizationHead
from keras_stn.layers import ParallelSpatialTransformers
from keras_stn.layers import SpatialTransformer
from keras_stn.layers import VelocityIntegration
from keras_stn.layers import default_localization
from keras_stn.ops import transforms

__version__ = "0.1.0"

__all__ = [
    "BilinearSampler",
    "DenseSpatialTransformer",
    "DepthwiseGradConv2D",
    "GridGenerator",
    "LocalizationHead",
    "ParallelSpatialTransformers",
    "SpatialTransformer",
    "VelocityIntegration",
    "TransformIdentity",
    "config",
    "default_localization",
    "initializers",
    "layers",
    "models",
    "ops",
    "optimizers",
    "transforms",
    "__version__",
]
