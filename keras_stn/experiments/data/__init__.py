"""tf.data pipelines for the paper's data sets.

- `distorted_mnist(variant, ...)`: R, RTS, P, E and TC MNIST.
- `mnist_addition(...)`: two RTS digits in two channels, label their sum.
- `two_digit_canvas(...)`: two digits on one canvas, with their boxes.
- `cub_200_2011(...)`: CUB-200-2011 birds with crops and flips.

The MNIST sets read MNIST through tensorflow-datasets, offline from local
files when asked (`keras_stn.experiments.data.mnist`).
"""

from keras_stn.experiments.data import clutter
from keras_stn.experiments.data import distortions
from keras_stn.experiments.data import mnist
from keras_stn.experiments.data import placement
from keras_stn.experiments.data.cub import cub_200_2011
from keras_stn.experiments.data.distorted import VARIANTS
from keras_stn.experiments.data.distorted import distorted_mnist
from keras_stn.experiments.data.two_digit import mnist_addition
from keras_stn.experiments.data.two_digit import two_digit_canvas

__all__ = [
    "VARIANTS",
    "clutter",
    "cub_200_2011",
    "distorted_mnist",
    "distortions",
    "mnist",
    "mnist_addition",
    "placement",
    "two_digit_canvas",
]
