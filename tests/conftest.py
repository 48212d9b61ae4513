import os

import keras
import pytest

from keras_stn.experiments.data import mnist

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Runs in a subprocess under the JAX backend (backend_test.py); importing it
# here would switch this process's backend.
collect_ignore = ["ops/jax_worker.py"]


@pytest.fixture(autouse=True)
def _sampler_kernels(request, monkeypatch):
    """Op-level XLA (the default) compiles each new shape three times; most
    tests check the math with TensorFlow's kernels, and those marked
    `xla_samplers` check the compiled path users get."""
    if request.node.get_closest_marker("xla_samplers") is None:
        monkeypatch.setenv("KERAS_STN_XLA_SAMPLERS", "0")
    else:
        monkeypatch.delenv("KERAS_STN_XLA_SAMPLERS", raising=False)


def pytest_collection_modifyitems(config, items):
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(
        reason=f"TensorFlow-only; Keras backend is {keras.backend.backend()}"
    )
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)


# MNIST for the tests that need it: the four original files are read from
# `../shared/data/mnist` (relative to the repository root); tfds prepares
# them into a session temporary directory, never the repository or
# `~/tensorflow_datasets`. Without the files those tests skip, saying where
# the files belong.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
