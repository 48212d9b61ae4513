"""Helpers shared by the data tests."""

import numpy as np

from keras_stn.experiments.data import mnist


def batches(dataset, count=1):
    """The first `count` elements of a dataset as NumPy structures."""
    # range first: zip stops before pulling one element too many.
    return [
        element for _, element in zip(range(count), dataset.as_numpy_iterator())
    ]


def first(dataset):
    return batches(dataset)[0]


def digits(mnist_dirs, split, index):
    """Source digits of a base split as float `(B, 28, 28)` in [0, 1]."""
    source = mnist.load_split(split, **mnist_dirs)
    return source.images[index, ..., 0].astype(np.float64) / 255.0
