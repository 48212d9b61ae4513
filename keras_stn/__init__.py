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

# The version, in one place: setup.cfg reads it (`attr:`, statically,
# without importing Keras).
__version__ = "0.1.0"

# Keras' backends and the extra that installs each.
_BACKEND_EXTRAS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def _installed_backends():
    """The backends of `_BACKEND_EXTRAS` that can be imported, found
    without importing them."""
    import importlib.util

    found = []
    for name in _BACKEND_EXTRAS:
        try:
            if importlib.util.find_spec(name) is not None:
                found.append(name)
        except (ImportError, ValueError):
            pass
    return found


def _missing_backend_message(backend):
    """What to do when Keras' configured backend is not installed."""
    import os

    chosen = os.environ.get("KERAS_BACKEND")
    where = (
        f"KERAS_BACKEND={chosen}"
        if chosen
        else "Keras' default, or ~/.keras/keras.json; KERAS_BACKEND unset"
    )
    others = [name for name in _installed_backends() if name != backend]
    if others:
        choice = (
            f"Installed backends: {', '.join(others)}; choose one with "
            f"KERAS_BACKEND={others[0]}"
        )
    else:
        choice = "No Keras backend is installed"
    return (
        f"keras_stn: Keras' backend is {backend!r} ({where}), but {backend} "
        f"is not installed.\n{choice},\nor install it: "
        f'pip install "keras-stn[{_BACKEND_EXTRAS[backend]}]"'
    )


try:
    import keras  # noqa: F401
except ImportError as error:
    _missing = (getattr(error, "name", None) or "").split(".")[0]
    if _missing not in _BACKEND_EXTRAS:
        raise
    raise ImportError(_missing_backend_message(_missing)) from None

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
