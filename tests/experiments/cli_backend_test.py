"""`keras-stn` with Keras' configured backend missing: a few lines naming
KERAS_BACKEND and the extra, exit status 2, no traceback."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.parametrize("verbose_backend", [False, True])
def test_a_missing_backend_is_named_in_a_few_lines(verbose_backend):
    # `sys.modules[name] = None` makes `import name` fail as if the package
    # were not installed.
    argv = ["train", "--data", "rts"]
    if verbose_backend:
        argv.insert(0, "--verbose-backend")
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None\n"
        "import keras_stn_cli\n"
        f"sys.exit(keras_stn_cli.main({argv!r}))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) <= 4, run.stderr
    assert "KERAS_BACKEND" in run.stderr
    assert 'pip install "keras-stn[tensorflow]"' in run.stderr
