"""MNIST from its four original files, with NumPy alone: any backend.

Every file is checked against the sha256 of the original (`SHA256`, as
tensorflow-datasets registers them) before it is read: a changed file is
refused with its path and both sums, never trained on.

Where the files are, in order:
1. the `manual_dir` argument (`--manual-dir`), else the environment
   variable `KERAS_STN_MNIST_DIR`: the files must be there (offline use);
2. `<data_dir>/downloads/manual` (`data_dir` defaults to
   `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`), where tfds users keep
   them, if it holds all four;
3. the download cache, `cache_folder()`: `$KERAS_HOME/datasets/mnist`
   (Keras' cache, `~/.keras/datasets/mnist` by default), where they are
   downloaded from `DOWNLOAD_URL` the first time (about 11 MB), each file
   checksummed and renamed into place whole. Without network and without
   files, a FileNotFoundError names both ways.

Order: the examples come in tensorflow-datasets' order by default (tfds
stores MNIST sorted by the md5 of the split name followed by the example's
index in the file), so example `i` and the slices `"train[:50000]"`,
`"validation"` are the digits tfds gives; `order="file"` keeps the files'.

Example (offline, with the files at `manual_dir`):
    images, labels = load_mnist("../shared/data/mnist", "test")
"""

import functools
import gzip
import hashlib
import os
import re
import sys
import tempfile
import urllib.request

import numpy as np

from keras_stn.experiments.data import _downloads

MANUAL_DIR_ENV = "KERAS_STN_MNIST_DIR"
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FILES = tuple(name for names in SPLIT_FILES.values() for name in names)
# The original files' sha256, as tfds registers them for its `mnist` builder.
SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
}
# Where tfds' `mnist` builder downloads the files from.
DOWNLOAD_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
COUNTS = {"train": 60000, "test": 10000}
IMAGE_SIZE = 28
NUM_CLASSES = 10
ORDERS = ("tfds", "file")
SPLIT_ALIASES = {"validation": "train[50000:]"}
# The idx headers: a magic number and the dimensions, 4 bytes each (the
# sha256 has vouched for the rest).
_IMAGES_HEADER = 16
_LABELS_HEADER = 8
_SLICE = re.compile(r"^(train|test)(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?$")


def cache_folder():
    """The download cache: `$KERAS_HOME/datasets/mnist`, by default
    `~/.keras/datasets/mnist` (Keras' own cache for data sets)."""
    home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return os.path.abspath(
        os.path.join(os.path.expanduser(home), "datasets", "mnist")
    )


def _has_files(folder, names=FILES):
    return all(os.path.isfile(os.path.join(folder, name)) for name in names)


def _absolute(path):
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def manual_dir_for(manual_dir=None, data_dir=None):
    """The folder the files are read from without downloading, and what
    named it.

    Args:
        manual_dir: str, path or None.
        data_dir: str, path or None, tfds' data directory.
    Returns:
        `(folder, origin)`: an absolute path and the argument or variable
        that gave it, for messages (`"<data_dir>/downloads/manual"` when
        neither `manual_dir` nor `$KERAS_STN_MNIST_DIR` is given).
    """
    if manual_dir is not None:
        return _absolute(manual_dir), "manual_dir"
    if os.environ.get(MANUAL_DIR_ENV):
        return _absolute(os.environ[MANUAL_DIR_ENV]), f"${MANUAL_DIR_ENV}"
    root = (
        data_dir
        or os.environ.get("TFDS_DATA_DIR")
        or os.path.join("~", "tensorflow_datasets")
    )
    folder = os.path.join(os.fspath(root), "downloads", "manual")
    return _absolute(folder), "<data_dir>/downloads/manual"


def _progress(name, done, total, stream):
    if total:
        share = f"{100 * done // total:3d}% of {total / 1e6:.1f} MB"
    else:
        share = f"{done / 1e6:.1f} MB"
    end = "\n" if total and done >= total else ""
    stream.write(f"\rDownloading MNIST {name}: {share}{end}")
    stream.flush()


def _download(url, path, expected, progress, timeout):
    """Downloads `url` to `path`, whole or not at all: into a temporary
    file beside it, checked against `expected` (sha256), then renamed."""
    name = os.path.basename(path)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{name}.", suffix=".part", dir=os.path.dirname(path)
    )
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as file:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    file.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        _progress(name, done, total, sys.stderr)
            file.flush()
            os.fsync(file.fileno())
        if digest.hexdigest() != expected:
            raise ValueError(
                f"{url} is not the original MNIST file: its sha256 is "
                f"{digest.hexdigest()}, the original's is {expected}; "
                "nothing was kept. Try again later, or download the four "
                "files yourself and pass `manual_dir` (--manual-dir)."
            )
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def download(folder=None, url=DOWNLOAD_URL, progress=True, timeout=30.0):
    """Downloads the four original files into `folder`, checksummed.

    Files already there are kept (they are checked when read). Each file
    arrives whole or not at all (a temporary file, its sha256 checked, a
    rename), so a killed download leaves no half file behind.

    Args:
        folder: str or None, the target; defaults to `cache_folder()`.
        url: str, the folder URL the files are under (ends in `/`).
            Defaults to `DOWNLOAD_URL`.
        progress: bool, report each file's progress on stderr.
        timeout: float, seconds to wait for the server.
    Returns:
        str, the absolute folder.
    Raises:
        OSError: the server could not be reached or the folder written
            (`urllib.error.URLError` is an OSError).
        ValueError: a downloaded file is not the original.
    """
    folder = _absolute(cache_folder() if folder is None else folder)
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    try:
        for name in FILES:
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                _download(url + name, path, SHA256[name], progress, timeout)
    except BaseException:
        if created and not os.listdir(folder):  # leave no empty cache
            os.rmdir(folder)
        raise
    return folder


def find_files(manual_dir=None, data_dir=None, url=DOWNLOAD_URL, names=FILES):
    """The folder holding the files, downloading them if needed.

    Args:
        manual_dir, data_dir: see the module docstring.
        url: str, where to download from (`download`, all four files).
        names: the file names needed. Defaults to the four, `FILES`.
    Returns:
        str, an absolute folder holding the files `names`.
    Raises:
        FileNotFoundError: `manual_dir` (or `$KERAS_STN_MNIST_DIR`) lacks a
            file; or no folder holds them and the download failed. The
            message names the paths and both ways to get the files.
        ValueError: a downloaded file is not the original.
    """
    folder, origin = manual_dir_for(manual_dir, data_dir)
    if origin != "<data_dir>/downloads/manual":
        if not _has_files(folder, names):
            missing = [
                os.path.join(folder, name)
                for name in names
                if not os.path.isfile(os.path.join(folder, name))
            ]
            raise FileNotFoundError(
                f"MNIST files not found: {missing}. `manual_dir` (else "
                f"${MANUAL_DIR_ENV}) must hold the four original files "
                f"{list(FILES)}; without it they are downloaded to "
                f"{cache_folder()}. Received: {origin} -> {folder!r}"
            )
        return folder
    if _has_files(folder, names):
        return folder
    cache = cache_folder()
    if _has_files(cache, names):
        return cache
    try:
        return download(cache, url)
    except OSError as error:
        raise FileNotFoundError(
            f"MNIST is not on this machine and the download from {url} "
            f"failed ({error}). Either connect to the network (the files "
            f"are then downloaded to {cache}), or copy the four original "
            f"files {list(FILES)} into a folder and pass it as "
            f"`manual_dir` (--manual-dir) or ${MANUAL_DIR_ENV} (looked for "
            f"also in {folder})."
        ) from error


@functools.lru_cache(maxsize=8)
def _checked(path, size, mtime):
    """Raises unless the file at `path` is the original (once per file
    version per process)."""
    folder, name = os.path.split(path)
    _downloads.check_files(folder, {name: SHA256[name]}, "manual_dir")


def _read(path, header):
    stat = os.stat(path)
    _checked(path, stat.st_size, stat.st_mtime_ns)
    with gzip.open(path, "rb") as file:
        return np.frombuffer(file.read(), np.uint8, offset=header)


def tfds_order(split, count):
    """The file indices in tensorflow-datasets' order: sorted by the md5 of
    the split name followed by the decimal index (its `hashing.Hasher`)."""
    salt = hashlib.md5(split.encode())

    def key(index):
        digest = salt.copy()
        digest.update(str(index).encode())
        return digest.digest()  # big-endian bytes sort as the 128-bit int

    return np.array(sorted(range(count), key=key), dtype=np.int64)


@functools.lru_cache(maxsize=4)
def _decoded(folder, split, order):
    images_name, labels_name = SPLIT_FILES[split]
    count = COUNTS[split]
    images = _read(os.path.join(folder, images_name), _IMAGES_HEADER)
    images = images.reshape(count, IMAGE_SIZE, IMAGE_SIZE)
    labels = _read(os.path.join(folder, labels_name), _LABELS_HEADER)
    labels = labels.astype(np.int64)
    if order == "tfds":
        permutation = tfds_order(split, count)
        images, labels = images[permutation], labels[permutation]
    images = np.ascontiguousarray(images)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_mnist(
    manual_dir=None, split="train", data_dir=None, order="tfds", url=None
):
    """One base split of MNIST from the four original files.

    Args:
        manual_dir: str, path or None, the folder holding the files; see
            the module docstring for the defaults and the download.
        split: `"train"` (60000 digits) or `"test"` (10000).
        data_dir: str, path or None, tfds' data directory (only for the
            default folder).
        order: `"tfds"` (default; tensorflow-datasets' order) or `"file"`.
        url: str or None, where to download from; defaults to
            `DOWNLOAD_URL`.
    Returns:
        `(images, labels)`: read-only uint8 `(N, 28, 28)` and int64 `(N,)`
        NumPy arrays, decoded once per process.
    Raises:
        FileNotFoundError: as `find_files`.
        ValueError: a bad argument, or a file that is not the original
            (the message names it and its sha256).
    """
    if split not in SPLIT_FILES:
        raise ValueError(
            f"`split` must be one of {tuple(SPLIT_FILES)}. Received: "
            f"split={split!r}"
        )
    if order not in ORDERS:
        raise ValueError(
            f"`order` must be one of {ORDERS}. Received: order={order!r}"
        )
    folder = find_files(
        manual_dir, data_dir, url or DOWNLOAD_URL, SPLIT_FILES[split]
    )
    return _decoded(folder, split, order)


def _bound(text, count):
    if text is None:
        return None
    if text.endswith("%"):
        # tfds' default rounding of percent slices ("closest").
        return int(round(int(text[:-1]) * count / 100.0))
    return int(text)


def split_range(split):
    """Parses a split into its base split and example range.

    Args:
        split: str, `"train"`, `"test"`, `"validation"` (the last 10000
            training digits, `"train[50000:]"`) or a slice of one base
            split in tfds' form: `"train[:50000]"`, `"test[10%:]"`,
            `"train[-100:]"`.
    Returns:
        `(base, start, stop)`: the examples are `[start, stop)` of `base`.
    Raises:
        ValueError: a malformed split, or one that selects nothing.

    Example:
    >>> split_range("validation")
    ('train', 50000, 60000)
    """
    spec = SPLIT_ALIASES.get(split, split) if isinstance(split, str) else None
    match = _SLICE.match(spec) if spec is not None else None
    if match is None:
        raise ValueError(
            "`split` must be 'train', 'test', 'validation' or a slice of "
            "'train' or 'test' such as 'train[:50000]' or 'test[:10%]'. "
            f"Received: split={split!r}"
        )
    base, low, high = match.groups()
    count = COUNTS[base]
    start, stop, _ = slice(_bound(low, count), _bound(high, count)).indices(
        count
    )
    if stop <= start:
        raise ValueError(
            "`split` must select at least one example. Received: "
            f"split={split!r} (examples {start}:{stop} of {count})"
        )
    return base, start, stop
