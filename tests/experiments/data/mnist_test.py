import os
import re

import numpy as np
import pytest

from keras_stn.experiments.data import mnist

# The published per-class counts of the MNIST test set.
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_splits_and_labels(mnist_dirs):
    test = mnist.load_split("test", **mnist_dirs)
    assert test.images.shape == (10000, 28, 28, 1)
    assert test.images.dtype == np.uint8 and test.labels.dtype == np.int64
    assert (test.base, test.start, test.stop) == ("test", 0, 10000)
    assert np.bincount(test.labels).tolist() == TEST_COUNTS
    validation = mnist.load_split("validation", **mnist_dirs)
    assert (validation.base, validation.start, validation.stop) == (
        "train",
        50000,
        60000,
    )
    assert validation.images.shape == (60000, 28, 28, 1)
    head = mnist.load_split("test[:10%]", **mnist_dirs)
    assert (head.base, head.start, head.stop) == ("test", 0, 1000)


@pytest.mark.parametrize(
    "split", ["train+test", "bogus", "train[abc]", "test[5:5]", 3]
)
def test_bad_splits_are_named(split, mnist_dirs):
    with pytest.raises(ValueError, match="`split`"):
        mnist.load_split(split, **mnist_dirs)


def test_missing_manual_files_name_their_paths(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / mnist.FILES[0]).write_bytes(b"")
    with pytest.raises(FileNotFoundError) as error:
        mnist.prepared_builder(str(tmp_path / "data"), str(manual))
    message = str(error.value)
    for name in mnist.FILES[1:]:
        assert os.path.join(str(manual), name) in message
    assert os.path.join(str(manual), mnist.FILES[0]) + "'" not in message


def test_the_environment_variable_names_the_manual_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(mnist.MANUAL_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=mnist.MANUAL_DIR_ENV) as error:
        mnist.load_split("test", data_dir=str(tmp_path / "data"))
    assert os.path.join(str(tmp_path / "nowhere"), mnist.FILES[0]) in str(
        error.value
    )


def test_offline_without_files_fails_fast_saying_where(tmp_path, monkeypatch):
    # Port 9 (discard) on localhost refuses at once: an unreachable site.
    monkeypatch.setattr(mnist, "DOWNLOAD_URL", "http://127.0.0.1:9/")
    monkeypatch.delenv(mnist.MANUAL_DIR_ENV, raising=False)
    data_dir = tmp_path / "data"
    with pytest.raises(FileNotFoundError) as error:
        mnist.prepared_builder(str(data_dir))
    expected = os.path.join(str(data_dir), "downloads", "manual")
    assert re.search(re.escape(expected), str(error.value))
    assert "manual_dir" in str(error.value)


def test_a_corrupt_manual_file_is_named(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    for name in mnist.FILES:
        (manual / name).write_bytes(b"not the original")
    with pytest.raises(ValueError, match="corrupt") as error:
        mnist.prepared_builder(str(tmp_path / "data"), str(manual))
    assert str(manual / mnist.FILES[0]) in str(error.value)
    assert mnist.SHA256[mnist.FILES[0]] in str(error.value)
