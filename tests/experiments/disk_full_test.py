"""A disk that fills while a run writes its backup: a one-line error and
exit status 2, never a crash.

The disk is "full" through `RLIMIT_FSIZE` in a child process (with SIGXFSZ
ignored, a write past the limit fails with EFBIG): the failure then comes
from the `write` system call itself, inside HDF5's C code and Keras'
saving, as a full disk's ENOSPC does. Patching a Python write function
would never reach HDF5, where the crash was (h5py objects of a file whose
writes failed segfaulted when freed). The limit is far below the size of a
backup and above that of `results.json`, so the first backup is what
fails.
"""

import os
import subprocess
import sys

import pytest

resource = pytest.importorskip("resource", reason="RLIMIT_FSIZE is POSIX")

REPO_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
# `keras-stn train` in a process whose files may not grow past a limit, on
# random digits (`tiny_runs`), with an FCN whose backup is ~1.4 MB.
_CHILD = """
import resource, signal, sys
import keras_stn_cli
from keras_stn.experiments import training
from tests.experiments import tiny_runs

training.make_datasets = tiny_runs.make_datasets
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.exit(keras_stn_cli.main(sys.argv[2:]))
"""


# 2048 bytes: HDF5 fails in its metadata (crashed 3 of 3 before); 131072
# bytes: in the data of the weights (crashed too).
@pytest.mark.large  # a child process that imports Keras: ~20 s each
@pytest.mark.parametrize("limit", [2048, 131072])
def test_a_full_disk_while_writing_a_backup_is_one_line_and_status_2(
    tmp_path, limit
):
    out_dir = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(limit), "train"]
        + ["--data", "r", "--model", "fcn", "--epochs", "2"]
        + ["--train-examples", "32", "--batch-size", "16", "--verbose", "0"]
        + ["--data-source", "pydataset", "--out-dir", str(out_dir)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
        timeout=300,
    )
    errors = [
        line
        for line in done.stderr.splitlines()
        if line.startswith("keras-stn train: error:")
    ]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(errors) == 1, done.stderr[-2000:]
    backup = out_dir / "r-fcn" / "backup" / "epoch-0001.keras"
    assert f"{backup} could not be written" in errors[0]
    assert "--resume" in errors[0]
    assert "Traceback" not in done.stderr
    # Nothing half-written is left; the results name no finished epoch.
    assert os.listdir(out_dir / "r-fcn" / "backup") == []
    assert '"epochs": []' in (out_dir / "r-fcn" / "results.json").read_text()
