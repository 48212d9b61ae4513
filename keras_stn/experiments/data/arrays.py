"""MNIST from its four original files with NumPy alone: no TensorFlow.

Reads `train-images-idx3-ubyte.gz` and the other three (the idx format:
a big-endian header of a magic number and the dimensions, then the bytes)
and checks each: the gzip stream, the magic number, the count, the image
size and the file's length. An error names the file and what is wrong.

Where the files are, in order (as `mnist.prepared_builder` looks for
them): the `manual_dir` argument, the environment variable
`KERAS_STN_MNIST_DIR`, `<data_dir>/downloads/manual` (`data_dir` defaults
to `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`).

Order: by default the examples come in tensorflow-datasets' order (tfds
stores MNIST sorted by the md5 of the split name followed by the example's
index in the file), so example `i` and the slices `"train[:50000]"`,
`"validation"` are the same digits as `mnist.load_split`'s; `order="file"`
keeps the files' order.
"""

import functools
import gzip
import hashlib
import os
import re
import struct
import zlib

import numpy as np

MANUAL_DIR_ENV = "KERAS_STN_MNIST_DIR"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
COUNTS = {"train": 60000, "test": 10000}
IMAGE_SIZE = 28
NUM_CLASSES = 10
ORDERS = ("tfds", "file")
SPLIT_ALIASES = {"validation": "train[50000:]"}
# idx magic numbers: 0x00000803 (unsigned bytes, 3 dims), 0x00000801 (1 dim).
_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049
_SLICE = re.compile(r"^(train|test)(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?$")


def manual_dir_for(manual_dir=None, data_dir=None):
    """The folder the four files are read from, and what named it.

    Args:
        manual_dir: str, path or None.
        data_dir: str, path or None, tfds' data directory.
    Returns:
        `(folder, origin)`: an absolute path and the argument or variable
        that gave it, for messages.
    """
    if manual_dir is not None:
        origin = "manual_dir"
    elif os.environ.get(MANUAL_DIR_ENV):
        manual_dir, origin = os.environ[MANUAL_DIR_ENV], f"${MANUAL_DIR_ENV}"
    else:
        root = (
            data_dir
            or os.environ.get("TFDS_DATA_DIR")
            or os.path.join("~", "tensorflow_datasets")
        )
        manual_dir = os.path.join(os.fspath(root), "downloads", "manual")
        origin = "<data_dir>/downloads/manual"
    folder = os.path.abspath(os.path.expanduser(os.fspath(manual_dir)))
    return folder, origin


def _corrupt(path, what):
    return ValueError(
        f"{path} is not an original MNIST file: {what}. Download or copy "
        f"{os.path.basename(path)} again."
    )


def _read(path):
    try:
        with gzip.open(path, "rb") as file:
            return file.read()
    except (OSError, EOFError, zlib.error) as error:
        raise _corrupt(
            path, f"it is not a whole gzip stream ({error})"
        ) from error


def _header(path, data, magic, dims):
    size = 4 * (1 + dims)
    if len(data) < size:
        raise _corrupt(
            path, f"its header needs {size} bytes, it holds {len(data)}"
        )
    found, *shape = struct.unpack(f">{1 + dims}I", data[:size])
    if found != magic:
        raise _corrupt(
            path, f"its magic number is {found}, the idx format's is {magic}"
        )
    return shape, size


def _images(path, count):
    data = _read(path)
    (found, rows, cols), offset = _header(path, data, _IMAGES_MAGIC, 3)
    if found != count:
        raise _corrupt(path, f"its header counts {found} images, not {count}")
    if (rows, cols) != (IMAGE_SIZE, IMAGE_SIZE):
        raise _corrupt(
            path,
            f"its images are {rows}x{cols}, not {IMAGE_SIZE}x{IMAGE_SIZE}",
        )
    expected = offset + count * rows * cols
    if len(data) != expected:
        raise _corrupt(
            path, f"it holds {len(data)} bytes unzipped, not {expected}"
        )
    pixels = np.frombuffer(data, np.uint8, offset=offset)
    return pixels.reshape(count, rows, cols)


def _labels(path, count):
    data = _read(path)
    (found,), offset = _header(path, data, _LABELS_MAGIC, 1)
    if found != count:
        raise _corrupt(path, f"its header counts {found} labels, not {count}")
    if len(data) != offset + count:
        raise _corrupt(
            path, f"it holds {len(data)} bytes unzipped, not {offset + count}"
        )
    labels = np.frombuffer(data, np.uint8, offset=offset)
    if labels.max() >= NUM_CLASSES:
        raise _corrupt(
            path, f"it holds a label {int(labels.max())}, not 0 to 9"
        )
    return labels.astype(np.int64)


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
def _cached(folder, split, order):
    images_name, labels_name = FILES[split]
    count = COUNTS[split]
    images = _images(os.path.join(folder, images_name), count)
    labels = _labels(os.path.join(folder, labels_name), count)
    if order == "tfds":
        permutation = tfds_order(split, count)
        images, labels = images[permutation], labels[permutation]
    images = np.ascontiguousarray(images)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_mnist(manual_dir=None, split="train", data_dir=None, order="tfds"):
    """One base split of MNIST from the four original files.

    Args:
        manual_dir: str, path or None, the folder holding the files;
            defaults as the module docstring says.
        split: `"train"` (60000 digits) or `"test"` (10000).
        data_dir: str, path or None, tfds' data directory (only for the
            default folder).
        order: `"tfds"` (default; tensorflow-datasets' order) or `"file"`.
    Returns:
        `(images, labels)`: read-only uint8 `(N, 28, 28)` and int64 `(N,)`
        NumPy arrays, decoded once per process.
    Raises:
        FileNotFoundError: a file is missing; the message lists the paths
            expected.
        ValueError: a bad argument, or a file that is not the original
            (the message names it and the check it failed).

    Example (with the files at `manual_dir`):
        images, labels = load_mnist("../shared/data/mnist", "test")
    """
    if split not in FILES:
        raise ValueError(
            f"`split` must be one of {tuple(FILES)}. Received: split={split!r}"
        )
    if order not in ORDERS:
        raise ValueError(
            f"`order` must be one of {ORDERS}. Received: order={order!r}"
        )
    folder, origin = manual_dir_for(manual_dir, data_dir)
    missing = [
        os.path.join(folder, name)
        for name in FILES[split]
        if not os.path.isfile(os.path.join(folder, name))
    ]
    if missing:
        raise FileNotFoundError(
            f"MNIST files not found: {missing}. `manual_dir` (else "
            f"${MANUAL_DIR_ENV}, else <data_dir>/downloads/manual) must hold "
            "the original files "
            f"{[name for names in FILES.values() for name in names]}. "
            f"Received: {origin} -> {folder!r}"
        )
    return _cached(folder, split, order)


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
