"""Fixtures of the data tests: MNIST's four original files."""

import os

import numpy as np
import pytest

from keras_stn.experiments.data import mnist
from tests import conftest


@pytest.fixture(scope="session")
def manual_dir():
    """The folder of the four original MNIST files, or a skip:
    `$KERAS_STN_MNIST_DIR`, else `../shared/data/mnist`."""
    folder = os.environ.get(mnist.MANUAL_DIR_ENV) or conftest.MNIST_FILES_DIR
    missing = [
        name
        for name in mnist.FILES
        if not os.path.isfile(os.path.join(folder, name))
    ]
    if missing:
        pytest.skip(f"MNIST files {missing} not found in {folder}")
    return folder


def digits(manual_dir, split, index):
    """Digits of a base split as float32 `(B, 28, 28)` in `[0, 1]`."""
    images = mnist.load_mnist(manual_dir, split)[0]
    return images[index].astype(np.float32) / 255.0
