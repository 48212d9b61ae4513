import os

import keras
import pytest

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
