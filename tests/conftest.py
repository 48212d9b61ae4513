import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

from keras_stn import config as stn_config  # noqa: E402

BACKEND = keras.backend.backend()

if BACKEND == "jax":
    import jax

    # The tests compare float64 results to 1e-12 with PyTorch and with
    # finite differences; JAX computes float64 only with x64 on (Keras
    # leaves it off).
    jax.config.update("jax_enable_x64", True)
    # On tiny shapes XLA's compile time is most of a test's time, and eager
    # JAX compiles each primitive per shape: unoptimised compilation halves
    # the JAX run. `ops/backend_parity_test.py` checks the optimised
    # compilation users get against TensorFlow.
    jax.config.update("jax_disable_most_optimizations", True)

# TensorFlow is optional (the JAX and PyTorch environments do without it);
# what needs it is the paper's tfds pipelines, SavedModel and TFLite export
# and the plain-autodiff twin, `ops/reference.py`.
TENSORFLOW_INSTALLED = importlib.util.find_spec("tensorflow") is not None
TENSORFLOW_PACKAGES = ("tensorflow", "tensorflow_datasets")

# A script the backend parity test runs in a subprocess per backend
# (`ops/backend_parity_test.py`), never a test module.
collect_ignore = ["ops/backend_worker.py"]


def pytest_configure(config):
    if not TENSORFLOW_INSTALLED:
        # The doctest collector imports every file, test modules included:
        # those that need TensorFlow are skipped (their own collector below
        # says why) rather than reported as errors.
        config.option.doctest_ignore_import_errors = True


def pytest_report_header(config):
    if not TENSORFLOW_INSTALLED:
        return (
            "TensorFlow is not installed: test modules that import it are "
            "skipped (pip install '.[tensorflow]' to run them)"
        )
    return None


class _TestModule(pytest.Module):
    """A test module that is skipped, saying which package it needs, when
    it imports TensorFlow or tensorflow-datasets and they are missing."""

    def collect(self):
        try:
            return super().collect()
        except pytest.Collector.CollectError as error:
            cause = error.__cause__
            missing = getattr(cause, "name", None) or ""
            if (
                isinstance(cause, ModuleNotFoundError)
                and missing.split(".")[0] in TENSORFLOW_PACKAGES
            ):
                pytest.skip(
                    f"{self.path.name} needs {missing}, which is not "
                    "installed (TensorFlow is optional: pip install "
                    "'.[tensorflow]')",
                    allow_module_level=True,
                )
            raise


def pytest_pycollect_makemodule(module_path, parent):
    if TENSORFLOW_INSTALLED:
        return None
    return _TestModule.from_parent(parent, path=module_path)


@pytest.fixture(autouse=True)
def _sampler_kernels(request):
    """Op-level XLA (the default) compiles each new shape three times; most
    tests check the math with TensorFlow's kernels, and those marked
    `xla_samplers` check the compiled path users get. Other backends ignore
    the switch."""
    enabled = request.node.get_closest_marker("xla_samplers") is not None
    stn_config.set_xla_samplers(enabled)
    yield
    stn_config.set_xla_samplers(None)


def pytest_collection_modifyitems(config, items):
    if BACKEND == "tensorflow":
        return
    skip = pytest.mark.skip(
        reason=f"TensorFlow-only; Keras backend is {BACKEND}"
    )
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)


# MNIST for the tests that need it: the four original files are read from
# `../shared/data/mnist` (relative to the repository root); `data_dir` is a
# session temporary directory, never the repository or
# `~/tensorflow_datasets`. Without the files those tests skip, saying where
# the files belong.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_FILES_DIR = os.path.normpath(
    os.path.join(REPO_ROOT, "..", "shared", "data", "mnist")
)


@pytest.fixture(scope="session")
def mnist_dirs(tmp_path_factory):
    """`{"data_dir": ..., "manual_dir": ...}` with MNIST's files checked."""
    from keras_stn.experiments.data import mnist

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
    mnist.load_mnist(MNIST_FILES_DIR, "test")  # checks the checksums
    return {"data_dir": data_dir, "manual_dir": MNIST_FILES_DIR}
