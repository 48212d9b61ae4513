"""Model builders: the paper's MNIST networks and the backbone wrapper."""

from keras_stn.models.backbone import wrap_backbone
from keras_stn.models.mnist_nets import cnn
from keras_stn.models.mnist_nets import fcn
from keras_stn.models.mnist_nets import paper_cnn_localization
from keras_stn.models.mnist_nets import paper_fcn_localization
from keras_stn.models.mnist_nets import st_cnn
from keras_stn.models.mnist_nets import st_fcn

__all__ = [
    "cnn",
    "fcn",
    "paper_cnn_localization",
    "paper_fcn_localization",
    "st_cnn",
    "st_fcn",
    "wrap_backbone",
]
