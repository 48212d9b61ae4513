"""What `import keras_stn` and `keras-stn --help` load, and what the code may
import: the promises that keep the library backend-neutral and quick."""

import importlib.util
import os
import re
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _loaded_after(code, backend=None):
    """The top-level modules loaded by running `code` in a fresh process."""
    env = dict(os.environ)
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    script = code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))\n"
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return {name.split(".")[0] for name in run.stdout.split()}


def test_import_loads_neither_tfds_nor_matplotlib():
    # Keras itself may import matplotlib when it is installed: what counts
    # is what keras_stn adds.
    added = _loaded_after("import keras_stn") - _loaded_after("import keras")
    assert "keras_stn" in added
    assert "tensorflow_datasets" not in added
    assert "matplotlib" not in added


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_never_import_tensorflow(backend):
    pytest.importorskip(backend, reason=f"{backend} is not installed")
    loaded = _loaded_after(
        "import numpy as np\n"
        "import keras_stn\n"
        "model = keras_stn.models.st_cnn(input_shape=(28, 28, 1))\n"
        "model(np.zeros((2, 28, 28, 1), 'float32'))\n",
        backend=backend,
    )
    assert "tensorflow" not in loaded


def test_help_imports_no_keras(capsys):
    loaded = _loaded_after(
        "import keras_stn_cli\n"
        "try:\n"
        "    keras_stn_cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    assert "keras_stn_cli" in loaded
    for heavy in ("keras", "tensorflow", "jax", "torch", "keras_stn"):
        assert heavy not in loaded, heavy


def test_python_dash_m_runs_the_command():
    run = subprocess.run(
        [sys.executable, "-m", "keras_stn", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage: keras-stn" in run.stdout


# Imports and calls of private modules, and private Keras attributes;
# spelled in pieces so that this file does not match itself.
_PRIVATE = [
    r"^\s*(from|import)\s+(tensorflow\.python|keras\.src)\b",
    r"^\s*from\s+(tensorflow|keras)\s+import\s+(python|src)\b",
    r"\b(tensorflow|tf)\.python\.\w+|\bkeras\.src\.[\w.]+\(",
    r"\._flatten" + r"_layers\b",
]


def _python_files():
    for top in ("keras_stn", "tests", "examples", "benchmarks"):
        for folder, _, names in os.walk(os.path.join(ROOT, top)):
            for name in names:
                if name.endswith(".py"):
                    yield os.path.join(folder, name)
    yield os.path.join(ROOT, "keras_stn_cli.py")


def test_no_private_api_is_used():
    pattern = re.compile("|".join(_PRIVATE))
    found = []
    for path in _python_files():
        if os.path.abspath(path) == os.path.abspath(__file__):
            continue
        relative = os.path.relpath(path, ROOT)
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if pattern.search(line):
                    found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_tensorflow_is_imported_in_one_library_module():
    """Only `keras_stn/ops/backend/tensorflow_ops.py` (and the tfds
    application) import TensorFlow at module level; everything else
    reaches it through the kernel seam."""
    allowed = {
        os.path.join("keras_stn", "ops", "backend", "tensorflow_ops.py")
    }
    found = []
    for path in _python_files():
        relative = os.path.relpath(path, ROOT)
        if not relative.startswith("keras_stn" + os.sep) or relative in allowed:
            continue
        if relative.startswith(os.path.join("keras_stn", "experiments")):
            continue
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if re.match(r"\s*(import tensorflow|from tensorflow)", line):
                    found.append(f"{relative}:{number}")
    assert not found, found


def test_backend_in_use_is_named():
    assert keras.backend.backend() in ("tensorflow", "jax", "torch")


def test_commands_hide_the_backend_start_up_lines(tmp_path):
    # `show` on a missing run fails after Keras and its backend are
    # imported, which is when TensorFlow prints its start-up lines.
    missing = tmp_path / "no-run"
    code = (
        "import sys, keras_stn_cli\n"
        f"sys.exit(keras_stn_cli.main(['show', '--run', {str(missing)!r}]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr[-2000:]
    assert lines[0].startswith("keras-stn show: error:"), lines
    assert "model.keras" in lines[0]


def _import_without(backend):
    """`import keras_stn` in a fresh process whose Keras backend is
    `backend`, with `backend` not importable: a real absence where it is
    not installed, else blocked (`sys.modules[backend] = None`)."""
    block = (
        f"import sys\nsys.modules[{backend!r}] = None\n"
        if importlib.util.find_spec(backend) is not None
        else ""
    )
    return subprocess.run(
        [sys.executable, "-c", block + "import keras_stn\n"],
        cwd=ROOT,
        env=dict(os.environ, KERAS_BACKEND=backend),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_missing_backend_is_named_in_a_few_lines(backend):
    run = _import_without(backend)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    # The traceback's header and one frame, then the message: no frames
    # from inside Keras.
    assert len(lines) <= 7, run.stderr
    first = next(
        i for i, line in enumerate(lines) if line.startswith("ImportError:")
    )
    message = "\n".join(lines[first:])
    assert f"Keras' backend is {backend!r}" in message
    assert f"KERAS_BACKEND={backend}" in message
    assert f'pip install "keras-stn[{backend}]"' in message
    for other in ("tensorflow", "jax", "torch"):
        if other != backend and importlib.util.find_spec(other) is not None:
            assert other in message.split("Installed backends:")[1], message


def test_version_is_in_one_place():
    import keras_stn

    with open(os.path.join(ROOT, "setup.cfg"), encoding="utf-8") as f:
        setup = f.read()
    assert re.search(r"^version = attr: keras_stn.__version__$", setup, re.M), (
        "setup.cfg must read the version from keras_stn.__version__"
    )
    assert re.fullmatch(r"\d+\.\d+\.\d+", keras_stn.__version__)
    with open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8") as f:
        assert f"## {keras_stn.__version__}" in f.read()


def test_py_typed_is_shipped():
    assert os.path.isfile(os.path.join(ROOT, "keras_stn", "py.typed"))
    with open(os.path.join(ROOT, "setup.cfg"), encoding="utf-8") as f:
        assert re.search(
            r"^\[options.package_data\]\nkeras_stn = py.typed$", f.read(), re.M
        )


def test_every_public_op_has_type_hints():
    """`py.typed` promises hints: every public op annotates its return
    value and its arguments (the types in `keras_stn.utils.types`)."""
    import inspect

    import keras_stn

    missing = []
    for name in keras_stn.ops.__all__:
        function = getattr(keras_stn.ops, name)
        if not inspect.isfunction(function):
            continue  # the `transforms` module
        signature = inspect.signature(function)
        if signature.return_annotation is inspect.Signature.empty:
            missing.append(f"{name} -> ?")
        missing += [
            f"{name}({parameter})"
            for parameter, value in signature.parameters.items()
            if value.annotation is inspect.Parameter.empty
        ]
    assert not missing, missing
