"""MNIST for the data tests: prepared once per session from local files.

The four original files are read from `../shared/data/mnist` (relative to
the repository root); tfds prepares them into a session temporary
directory, never the repository or `~/tensorflow_datasets`. Without the
files the tests that need them skip, saying where the files belong.
"""

import os

import pytest

from keras_stn.data import mnist

REPO_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
MNIST_FILES_DIR = os.path.normpath(
    os.path.join(REPO_ROOT, "..", "shared", "data", "mnist")
)


@pytest.fixture(scope="session")
def mnist_dirs(tmp_path_factory):
    """`{"data_dir": ..., "manual_dir": ...}` with MNIST prepared."""
    missing = [
        name
        for name in mnist.FILES
        if not os.path.isfile(os.path.join(MNIST_FILES_DIR, name))
    ]
    if missing:
        pytest.skip(
            f"MNIST files {missing} not found in {MNIST_FILES_DIR}; put the "
            "four original files there (see its README.md)"
        )
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    mnist.prepared_builder(data_dir, MNIST_FILES_DIR)
    return {"data_dir": data_dir, "manual_dir": MNIST_FILES_DIR}
