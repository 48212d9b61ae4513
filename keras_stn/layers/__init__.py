"""Keras layers over `keras_stn.ops`: one public layer per module."""

from keras_stn.layers.bilinear_sampler import BilinearSampler
from keras_stn.layers.dense_spatial_transformer import DenseSpatialTransformer
from keras_stn.layers.depthwise_grad_conv2d import DepthwiseGradConv2D
from keras_stn.layers.grid_generator import GridGenerator
from keras_stn.layers.localization import default_localization
from keras_stn.layers.localization_head import LocalizationHead
from keras_stn.layers.parallel_spatial_transformers import (
    ParallelSpatialTransformers,
)
from keras_stn.layers.spatial_transformer import SpatialTransformer
from keras_stn.layers.velocity_integration import VelocityIntegration

__all__ = [
    "BilinearSampler",
    "DenseSpatialTransformer",
    "DepthwiseGradConv2D",
    "GridGenerator",
    "LocalizationHead",
    "ParallelSpatialTransformers",
    "SpatialTransformer",
    "VelocityIntegration",
    "default_localization",
]
