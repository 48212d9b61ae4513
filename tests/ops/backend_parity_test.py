"""The ops on JAX and PyTorch equal the ops on TensorFlow, gradients too.

From the TensorFlow run, a worker subprocess per backend
(`backend_worker.py`; the Keras backend is fixed at import) computes every
kernel x padding mode x align_corners, the grid of every transform family
and anti-aliased sampling, with their gradients; this process computes the
same cases on TensorFlow with the same code and compares. The whole suite
also runs under each backend on its own (CI's JAX and PyTorch jobs); this
test pins the three backends to each other in one run. Skipped, with the
reason, when a backend is not installed or Keras does not run on
TensorFlow here.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import test_case
from tests.ops import backend_worker

if test_case.backend() != "tensorflow":
    pytest.skip(
        "compares the other backends with TensorFlow's results; the Keras "
        f"backend here is {test_case.backend()}",
        allow_module_level=True,
    )

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
CASES = {spec["name"]: spec for spec in backend_worker.cases()}
INSTALL = {
    "jax": "JAX is optional: pip install '.[jax]'",
    "torch": "PyTorch is optional: pip install '.[torch]'",
}

# Absolute tolerances. The backends sum the same terms in other orders (XLA
# fuses and reassociates): a few ulps of the largest term. Outputs are of
# order 1 (up to 3); d grid and d theta reach about 80 (factors W / 2 and
# sums over channels and points). Measured worst cases: float64 4e-15
# (outputs) and 3e-14 (gradients); float32 1.3e-6 and 1.5e-5.
TOLERANCES = {
    "float64": {"out": 1e-13, "grad": 1e-12},
    "float32": {"out": 1e-5, "grad": 1e-4},
}


@pytest.fixture(scope="module")
def data():
    return backend_worker.inputs()


@pytest.fixture(scope="module", params=["jax", "torch"])
def other_backend(request, data, tmp_path_factory):
    """`(name, results)`: the worker's results on one other backend."""
    name = request.param
    if importlib.util.find_spec(name) is None:
        pytest.skip(INSTALL[name])
    folder = tmp_path_factory.mktemp(name)
    in_path, out_path = folder / "in.npz", folder / "out.npz"
    np.savez(in_path, **data)
    env = dict(
        os.environ,
        KERAS_BACKEND=name,
        JAX_PLATFORMS="cpu",
        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    worker = os.path.join(os.path.dirname(__file__), "backend_worker.py")
    run = subprocess.run(
        [sys.executable, worker, str(in_path), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    results = dict(np.load(out_path))
    assert str(results["backend"]) == name
    return name, results


@pytest.fixture(scope="module")
def tensorflow_results():
    """The TensorFlow backend's results, computed once per case."""
    return {}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_tensorflow(case, other_backend, tensorflow_results, data):
    name, results = other_backend
    spec = CASES[case]
    if case not in tensorflow_results:
        tensorflow_results[case] = backend_worker.run_case(spec, data)
    expected = tensorflow_results[case]
    tolerance = TOLERANCES[spec["dtype"]]
    assert str(results[f"{case}/dtype"]) == str(expected["dtype"]), name
    for field, value in expected.items():
        if field == "dtype":
            continue
        atol = tolerance["out" if field == "out" else "grad"]
        test_case.assert_close(
            results[f"{case}/{field}"], value, atol, msg=f"{name} {field}"
        )
