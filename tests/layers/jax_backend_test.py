"""The layer tests again under `KERAS_BACKEND=jax`, in a subprocess (the
backend is fixed at import). TensorFlow-only tests skip there. Skipped, with
the reason, when JAX is not installed (`pip install '.[jax]'`)."""

import os
import subprocess
import sys

import keras
import pytest

pytest.importorskip("jax", reason="JAX is optional: pip install '.[jax]'")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="already running under another backend",
)
def test_layer_tests_pass_under_jax(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-header",
            "--basetemp",
            str(tmp_path),
            os.path.join(ROOT, "tests", "layers", "layers_test.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = (run.stdout + run.stderr)[-4000:]
    assert run.returncode == 0, tail
    assert " passed" in run.stdout and "failed" not in run.stdout, tail
