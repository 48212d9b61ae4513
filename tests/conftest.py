import os

import keras
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Runs in a subprocess under the JAX backend (backend_test.py); importing it
# here would switch this process's backend.
collect_ignore = ["ops/jax_worker.py"]


def pytest_collection_modifyitems(config, items):
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(
        reason=f"TensorFlow-only; Keras backend is {keras.backend.backend()}"
    )
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)
