"""MNIST's files: read in tfds' order, checksummed, found or downloaded.

The download is tested against a local HTTP server on 127.0.0.1 serving
copies of the files; nothing goes to the internet.
"""

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import threading

import numpy as np
import pytest

from keras_stn.experiments.data import mnist

# tfds' MNIST order, pinned: the first labels and the sha256 of all labels
# (int64, little-endian) as tensorflow-datasets 4.x gives them.
TFDS_LABELS = {
    "train": (
        [4, 1, 0, 7, 8, 1, 2, 7, 1, 6, 6, 4, 7, 7, 3, 3, 7, 9, 9, 1],
        "0e44ecaf2547dac741c83ddf0bcf9e3ced796f00dcc8784057618b7001d89aff",
    ),
    "test": (
        [2, 0, 4, 8, 7, 6, 0, 6, 3, 1, 8, 0, 7, 9, 8, 4, 5, 3, 4, 0],
        "d515834c278b04a6887dcb28e527fe6a2e43826cb9fbebc4c9eefb19c499bbe1",
    ),
}
# The files' own order starts with these labels (MNIST's documentation).
FILE_LABELS = {"train": [5, 0, 4, 1, 9, 2, 1, 3, 1, 4], "test": [7, 2, 1, 0, 4]}
IMAGES, LABELS = mnist.SPLIT_FILES["test"]


@pytest.mark.parametrize("split, count", [("train", 60000), ("test", 10000)])
def test_load_mnist_reads_the_files_in_tfds_order(manual_dir, split, count):
    images, labels = mnist.load_mnist(manual_dir, split)
    assert images.shape == (count, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (count,) and labels.dtype == np.int64
    np.testing.assert_array_equal(np.unique(labels), np.arange(10))
    first, digest = TFDS_LABELS[split]
    assert labels[:20].tolist() == first
    assert hashlib.sha256(labels.astype("<i8").tobytes()).hexdigest() == digest
    _, in_file_order = mnist.load_mnist(manual_dir, split, order="file")
    expected = FILE_LABELS[split]
    assert in_file_order[: len(expected)].tolist() == expected


def test_the_checksums_are_the_shared_folders(manual_dir):
    path = os.path.join(manual_dir, "SHA256SUMS")
    if not os.path.isfile(path):
        pytest.skip(f"no {path}")
    with open(path, encoding="utf-8") as file:
        sums = dict(line.split()[::-1] for line in file if line.strip())
    assert sums == mnist.SHA256


def _copy_files(manual_dir, folder, names=mnist.FILES):
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(os.path.join(manual_dir, name), folder / name)
    return folder


def _change_one_label(path):
    """Rewrites a label file with its first label changed, still a valid
    idx file (labels 0 to 9, the right count)."""
    with gzip.open(path, "rb") as file:
        data = bytearray(file.read())
    data[8] = (data[8] + 1) % 10
    with gzip.open(path, "wb") as file:
        file.write(bytes(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_label_file_with_one_label_changed_is_refused(manual_dir, tmp_path):
    folder = _copy_files(manual_dir, tmp_path / "files", (IMAGES, LABELS))
    found = _change_one_label(folder / LABELS)
    with pytest.raises(ValueError) as error:
        mnist.load_mnist(str(folder), "test")
    message = str(error.value)
    assert str(folder / LABELS) in message and found in message
    assert mnist.SHA256[LABELS] in message


def test_a_truncated_file_is_refused(manual_dir, tmp_path):
    folder = _copy_files(manual_dir, tmp_path / "files")
    path = folder / IMAGES
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"{path} is corrupt: its sha256"):
        mnist.load_mnist(str(folder), "test")


def test_load_mnist_lists_the_missing_files(manual_dir, tmp_path, monkeypatch):
    folder = _copy_files(manual_dir, tmp_path / "files")
    os.remove(folder / LABELS)
    with pytest.raises(FileNotFoundError, match=str(folder / LABELS)):
        mnist.load_mnist(str(folder), "test")
    monkeypatch.setenv(mnist.MANUAL_DIR_ENV, str(folder))
    with pytest.raises(FileNotFoundError, match=r"\$KERAS_STN_MNIST_DIR"):
        mnist.load_mnist(None, "test")


def test_load_mnist_reads_the_environment_variables_folder(
    manual_dir, monkeypatch
):
    monkeypatch.setenv(mnist.MANUAL_DIR_ENV, manual_dir)
    labels = mnist.load_mnist(None, "test")[1]
    assert labels[:20].tolist() == TFDS_LABELS["test"][0]


def test_load_mnist_reads_tfds_manual_folder(manual_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(mnist.MANUAL_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    _copy_files(manual_dir, tmp_path / "tfds" / "downloads" / "manual")
    labels = mnist.load_mnist(None, "test", str(tmp_path / "tfds"))[1]
    assert labels[:20].tolist() == TFDS_LABELS["test"][0]
    assert not (tmp_path / "keras").exists()  # nothing downloaded


@pytest.mark.parametrize(
    "split, expected",
    [
        ("train", ("train", 0, 60000)),
        ("validation", ("train", 50000, 60000)),
        ("train[:50000]", ("train", 0, 50000)),
        ("test[10%:20%]", ("test", 1000, 2000)),
        ("train[-100:]", ("train", 59900, 60000)),
    ],
)
def test_split_range(split, expected):
    assert mnist.split_range(split) == expected


@pytest.mark.parametrize("split", ["valid", "train[5:5]", 3, "train+test"])
def test_split_range_refuses(split):
    with pytest.raises(ValueError, match="`split` must"):
        mnist.split_range(split)


def test_bad_arguments_are_named(manual_dir):
    with pytest.raises(ValueError, match="`split` must be one of"):
        mnist.load_mnist(manual_dir, "validation")
    with pytest.raises(ValueError, match="`order` must be one of"):
        mnist.load_mnist(manual_dir, "test", order="sorted")


# The download, from a local server. ----------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(manual_dir, tmp_path):
    """`(url, folder, requests)`: an HTTP server on 127.0.0.1 serving a
    copy of the four files from `folder`, counting its requests."""
    folder = _copy_files(manual_dir, tmp_path / "served")
    requests = []

    class Handler(_Quiet):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    handler = functools.partial(Handler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder, requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def no_local_files(tmp_path, monkeypatch):
    """No manual folder, an empty tfds folder, Keras' cache in tmp_path."""
    monkeypatch.delenv(mnist.MANUAL_DIR_ENV, raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras" / "datasets" / "mnist"


def test_the_cache_folder_is_under_keras_home(no_local_files):
    assert mnist.cache_folder() == str(no_local_files)


def test_missing_files_are_downloaded_to_the_cache_once(
    server, no_local_files, capfd
):
    url, _, requests = server
    labels = mnist.load_mnist(None, "test", url=url)[1]
    assert labels[:20].tolist() == TFDS_LABELS["test"][0]
    assert sorted(os.listdir(no_local_files)) == sorted(mnist.FILES)
    for name in mnist.FILES:
        digest = hashlib.sha256((no_local_files / name).read_bytes())
        assert digest.hexdigest() == mnist.SHA256[name]
    assert sorted(requests) == sorted(f"/{name}" for name in mnist.FILES)
    assert "Downloading MNIST t10k-labels-idx1-ubyte.gz: 100%" in (
        capfd.readouterr().err
    )
    mnist.load_mnist(None, "train", url=url)
    assert len(requests) == 4  # read from the cache


def test_a_bad_download_leaves_nothing_behind(server, no_local_files):
    url, folder, _ = server
    found = _change_one_label(folder / LABELS)
    with pytest.raises(ValueError) as error:
        mnist.load_mnist(None, "test", url=url)
    assert f"{url}{LABELS}" in str(error.value) and found in str(error.value)
    # The files before it arrived whole; of the bad one, nothing (no part).
    assert LABELS not in os.listdir(no_local_files)
    assert not [n for n in os.listdir(no_local_files) if n.endswith(".part")]


def test_offline_without_files_names_both_ways(no_local_files):
    # A port nothing listens on: the connection is refused at once.
    with pytest.raises(FileNotFoundError) as error:
        mnist.load_mnist(None, "test", url="http://127.0.0.1:9/")
    message = str(error.value)
    assert "--manual-dir" in message and mnist.MANUAL_DIR_ENV in message
    assert str(no_local_files) in message and "http://127.0.0.1:9/" in message
    assert not no_local_files.exists()  # no empty cache folder left
