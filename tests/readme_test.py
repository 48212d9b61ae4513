"""The Python code blocks of README.md and of the documentation's pages run
as written, in order.

Conventions for the pages (docs/**.md):
- A page's blocks run in order, as one program, so a block may use what an
  earlier one defined.
- A block that sets `os.environ["KERAS_BACKEND"]` starts a new program in
  a fresh process (a backend is chosen before Keras is imported).
- A block whose first line is `# Not run in CI: <why>` is shown, not run
  (several hosts, GPUs); the reason is required.
Everything else runs under the TensorFlow backend, the pages' programs
without their own backend in one process (one TensorFlow start-up), each
in a namespace of its own.
"""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(ROOT, "..", "shared", "data", "mnist")
NOT_RUN = "# Not run in CI:"
SETS_BACKEND = re.compile(r"""os\.environ\[["']KERAS_BACKEND["']\]\s*=""")


def python_blocks(text):
    """The bodies of the ```python blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def programs(text):
    """A page's blocks grouped into programs: `[(sets_backend, code)]`,
    leaving out the blocks marked as not run."""
    result = []
    for block in python_blocks(text):
        if block.startswith(NOT_RUN):
            continue
        if SETS_BACKEND.search(block) or not result:
            result.append((bool(SETS_BACKEND.search(block)), block))
        else:
            result[-1] = (result[-1][0], result[-1][1] + "\n" + block)
    return result


def test_blocks_are_found():
    blocks = python_blocks("a\n```python\nx = 1\n```\nb\n```bash\nls\n```\n")
    assert blocks == ["x = 1\n"]


def test_programs_follow_the_conventions():
    text = (
        "```python\nx = 1\n```\n"
        "```python\ny = x\n```\n"
        f"```python\n{NOT_RUN} several hosts.\nz = 1\n```\n"
        '```python\nimport os\nos.environ["KERAS_BACKEND"] = "jax"\n```\n'
        "```python\nw = 2\n```\n"
    )
    assert programs(text) == [
        (False, "x = 1\n\ny = x\n"),
        (True, 'import os\nos.environ["KERAS_BACKEND"] = "jax"\n\nw = 2\n'),
    ]


def _pages():
    return sorted(
        glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
    )


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_blocks_not_run_say_why():
    for path in _pages() + [os.path.join(ROOT, "README.md")]:
        for block in python_blocks(_read(path)):
            first = block.splitlines()[0] if block.strip() else ""
            if first.startswith("# Not run"):
                assert re.fullmatch(re.escape(NOT_RUN) + r" \S.*", first), (
                    f"{os.path.relpath(path, ROOT)}: {first!r}"
                )


def test_every_guide_has_code_that_runs():
    for path in glob.glob(os.path.join(ROOT, "docs", "guides", "*.md")):
        assert programs(_read(path)), os.path.relpath(path, ROOT)


def _environment(tmp_path):
    return dict(
        os.environ,
        KERAS_BACKEND="tensorflow",
        KERAS_STN_MNIST_DIR=os.path.abspath(MNIST_DIR),
        PYTHONPATH=os.pathsep.join(
            [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]
        ),
        TFDS_DATA_DIR=str(tmp_path / "tfds"),
        TF_CPP_MIN_LOG_LEVEL="2",
    )


def _run(script, tmp_path):
    """Runs `script` in a fresh process in `tmp_path`; returns the run."""
    path = tmp_path / "blocks.py"
    path.write_text(script)
    return subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env=_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=900,
    )


def _require_tensorflow_and_mnist():
    pytest.importorskip("tensorflow", reason="the blocks' export needs it")
    if not os.path.isfile(
        os.path.join(MNIST_DIR, "train-images-idx3-ubyte.gz")
    ):
        pytest.skip(f"the data blocks read MNIST from {MNIST_DIR}")


@pytest.mark.large
def test_readme_python_blocks_run_in_order(tmp_path):
    # README's blocks need no data; they run once, under TensorFlow.
    pytest.importorskip("tensorflow", reason="run in the TensorFlow run")
    blocks = python_blocks(_read(os.path.join(ROOT, "README.md")))
    assert len(blocks) >= 2
    run = _run("\n".join(blocks), tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "the transformer finds the blob within" in run.stdout


# Runs each (page, code) in a namespace of its own, naming the page first.
_RUNNER = """
import sys
for label, code in PROGRAMS:
    print("== " + label, flush=True)
    exec(compile(code, label, "exec"), {"__name__": "__main__"})
"""


@pytest.mark.large
def test_docs_python_blocks_run_in_order(tmp_path):
    _require_tensorflow_and_mnist()
    shared, own = [], []
    for path in _pages():
        label = os.path.relpath(path, ROOT)
        for sets_backend, code in programs(_read(path)):
            (own if sets_backend else shared).append((label, code))
    assert len(shared) >= 7 and len(own) >= 2, (shared, own)
    run = _run(f"PROGRAMS = {shared!r}\n{_RUNNER}", tmp_path)
    assert run.returncode == 0, run.stdout[-1000:] + run.stderr[-4000:]
    for label, code in own:
        run = _run(code, tmp_path)
        assert run.returncode == 0, label + "\n" + run.stderr[-4000:]


def test_docs_griffe_extension_examples():
    """The docs build's docstring rewrites (docs/griffe_keras_stn.py) do
    what their examples say."""
    pytest.importorskip("griffe", reason="the [docs] extra is not installed")
    import doctest
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "griffe_keras_stn", os.path.join(ROOT, "docs", "griffe_keras_stn.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = doctest.testmod(module)
    assert result.attempted >= 3 and not result.failed, result
