"""MNIST through tensorflow-datasets, downloaded or from local files.

On a machine with network access `tfds.load("mnist")` downloads the four
original files once. Offline, tfds reads local copies of them (it checks
each file's size and sha256 and then never goes to the network) from, in
order: the `manual_dir` argument, the environment variable
`KERAS_STN_MNIST_DIR`, or `<data_dir>/downloads/manual/`. `data_dir`
(default `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`) is where tfds
writes the prepared data: about 23 MB, about 15 s once. Without the files
and without network a FileNotFoundError says where to put them, instead of
tfds' minutes of retries.

Splits: `"train"` (60000), `"test"` (10000), any single-split tfds slice
(`"train[:50000]"`, `"test[:10%]"`) and the alias `"validation"` for
`"train[50000:]"`, the last 10000 training digits (train on
`"train[:50000]"` when validating on it).
"""

import functools
import os
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from keras_stn.experiments.data import _downloads
from keras_stn.experiments.data import arrays

# One copy of these, shared with the TensorFlow-free reader.
MANUAL_DIR_ENV = arrays.MANUAL_DIR_ENV
FILES = tuple(name for names in arrays.FILES.values() for name in names)
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
IMAGE_SIZE = 28
NUM_CLASSES = 10
SPLIT_ALIASES = {"validation": "train[50000:]"}


class MnistSplit(NamedTuple):
    """A split as indices into the arrays of its base split.

    Attributes:
        images: uint8 NumPy array `(N, 28, 28, 1)`, the whole base split.
        labels: int64 NumPy array `(N,)`.
        base: `"train"` or `"test"`.
        start, stop: the split's examples are `images[start:stop]`.
    """

    images: np.ndarray
    labels: np.ndarray
    base: str
    start: int
    stop: int


def _files_missing(directory):
    return [
        os.path.join(directory, name)
        for name in FILES
        if not os.path.isfile(os.path.join(directory, name))
    ]


def prepared_builder(data_dir=None, manual_dir=None):
    """Returns the tfds `mnist` builder, prepared under `data_dir`.

    Args:
        data_dir: str or None, tfds' data directory. Defaults to
            `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`.
        manual_dir: str or None, a folder with the four original `.gz`
            files. Defaults to `$KERAS_STN_MNIST_DIR`, else
            `<data_dir>/downloads/manual`, else a download.
    Returns:
        A prepared `tfds.core.DatasetBuilder`.
    Raises:
        FileNotFoundError: `manual_dir` lacks a file, or the data is neither
            prepared nor in a manual dir and the download site is
            unreachable; the message lists the expected paths.
        ValueError: a file of the manual dir is not the original (its
            sha256 differs); the message names it.
    """
    builder = tfds.builder("mnist", data_dir=data_dir)
    if builder.is_prepared():
        return builder
    if manual_dir is None:
        manual_dir = os.environ.get(MANUAL_DIR_ENV) or None
    if manual_dir is not None:
        manual_dir = os.path.abspath(os.path.expanduser(str(manual_dir)))
        missing = _files_missing(manual_dir)
        if missing:
            raise FileNotFoundError(
                "MNIST files not found. `manual_dir` (or $"
                f"{MANUAL_DIR_ENV}) must hold the four original files; "
                f"missing: {missing}. Received: manual_dir={manual_dir!r}"
            )
        _downloads.check_files(manual_dir, SHA256, "manual_dir")
    else:
        root = str(builder.data_dir_root)
        default_manual = os.path.join(root, "downloads", "manual")
        if not _files_missing(default_manual):
            manual_dir = default_manual
            _downloads.check_files(manual_dir, SHA256, "manual_dir")
        elif not _downloads.reachable(DOWNLOAD_URL + FILES[1]):
            raise FileNotFoundError(
                "MNIST is not prepared under data_dir="
                f"{root!r} and {DOWNLOAD_URL} is unreachable. Put the four "
                f"files {list(FILES)} in {default_manual!r}, or pass "
                f"`manual_dir=` (or set ${MANUAL_DIR_ENV}) to the folder "
                "that holds them."
            )
    config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    # One process prepares a data dir at a time (tfds' final rename fails
    # when two do); one that waited finds the data prepared.
    with _downloads.preparation_lock(str(builder.data_dir_root)):
        builder = tfds.builder("mnist", data_dir=data_dir)
        if not builder.is_prepared():
            builder.download_and_prepare(download_config=config)
    return builder


@functools.lru_cache(maxsize=8)
def _split_arrays(data_dir, base):
    """The whole base split as NumPy arrays, decoded once per process."""
    data = tfds.as_numpy(
        tfds.load(
            "mnist",
            split=base,
            data_dir=data_dir,
            batch_size=-1,
            download=False,
        )
    )
    images = np.ascontiguousarray(data["image"], dtype=np.uint8)
    labels = np.asarray(data["label"], dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_split(split="train", data_dir=None, manual_dir=None):
    """Loads an MNIST split through tfds.

    Args:
        split: str, `"train"`, `"test"`, `"validation"` or a tfds slice of
            one of them, e.g. `"train[:50000]"`.
        data_dir, manual_dir: as `prepared_builder`.
    Returns:
        `MnistSplit`: the base split's arrays and the slice's range.
    Raises:
        ValueError: a malformed split, or one spanning two base splits.
        FileNotFoundError: as `prepared_builder`.
    """
    if not isinstance(split, str):
        raise ValueError(
            "`split` must be a str such as 'train', 'test', 'validation' or "
            f"'train[:50000]'. Received: split={split!r}"
        )
    spec = SPLIT_ALIASES.get(split, split)
    try:
        instruction = tfds.core.ReadInstruction.from_spec(spec)
    except (AssertionError, ValueError) as error:
        raise ValueError(
            "`split` must be 'train', 'test', 'validation' or a tfds slice "
            f"of one of them. Received: split={split!r} ({error})"
        ) from error
    builder = prepared_builder(data_dir, manual_dir)
    try:
        absolute = instruction.to_absolute(builder.info.splits)
    except (KeyError, ValueError, AssertionError) as error:
        raise ValueError(
            "`split` must name 'train' or 'test'. Received: "
            f"split={split!r} ({error})"
        ) from error
    if len(absolute) != 1:
        raise ValueError(
            "`split` must be one base split or a slice of one, not a union. "
            f"Received: split={split!r}"
        )
    base = absolute[0].splitname
    images, labels = _split_arrays(str(builder.data_dir_root), base)
    start = absolute[0].from_ or 0
    stop = len(labels) if absolute[0].to is None else absolute[0].to
    if stop <= start:
        raise ValueError(
            f"`split` must select at least one example. Received: "
            f"split={split!r} (examples {start}:{stop})"
        )
    return MnistSplit(images, labels, base, int(start), int(stop))
