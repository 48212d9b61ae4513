"""README's Python code blocks run as written, in order, in a fresh process."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(ROOT, "..", "shared", "data", "mnist")


def python_blocks(text):
    """The bodies of the ```python blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_blocks_are_found():
    blocks = python_blocks("a\n```python\nx = 1\n```\nb\n```bash\nls\n```\n")
    assert blocks == ["x = 1\n"]


@pytest.mark.large
def test_readme_python_blocks_run_in_order(tmp_path):
    pytest.importorskip("tensorflow", reason="README's export blocks need it")
    if not os.path.isfile(
        os.path.join(MNIST_DIR, "train-images-idx3-ubyte.gz")
    ):
        pytest.skip(f"README's data block reads MNIST from {MNIST_DIR}")
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = python_blocks(f.read())
    assert len(blocks) >= 5
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n".join(blocks))
    env = dict(
        os.environ,
        KERAS_BACKEND="tensorflow",
        TFDS_DATA_DIR=str(tmp_path / "tfds"),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
