"""CUB-200-2011 birds (tfds `caltech_birds2011`) for the paper's
fine-grained experiment (Jaderberg et al., 2015, section 4.3).

Train: the image resized so that its shorter side is `resize_size` (aspect
kept), a random `image_size` square crop and a random horizontal flip.
Test: the centre crop of the same resize, no flip. The defaults are the
paper's 448 crops from a 512 shorter side; `image_size=224` crops from 256.
Crops and flips are integer slicing of the resized image (no second
resampling). tfds downloads CUB (1.1 GB) on first use; offline, put the two
archives of its checksum list (`FILES`) in `manual_dir` (or
`$KERAS_STN_CUB_DIR`).
Convention: positions are pixels `(x, y)` of the resized image, y down.
"""

import os
import zlib

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_stn.experiments.data import _downloads
from keras_stn.utils import argument_validation

MANUAL_DIR_ENV = "KERAS_STN_CUB_DIR"
FILES = ("CUB_200_2011.tgz", "segmentations.tgz")
# Where tfds' `caltech_birds2011` builder downloads the archives from.
DOWNLOAD_URL = "https://data.caltech.edu/"
NUM_CLASSES = 200


def _load(split, data_dir, manual_dir, training, seed):
    """`tfds.load` of the images and labels only (nothing else decoded)."""
    if manual_dir is None:
        manual_dir = os.environ.get(MANUAL_DIR_ENV) or None
    download_config = None
    if manual_dir is not None:
        manual_dir = os.path.abspath(os.path.expanduser(str(manual_dir)))
        builder = tfds.builder("caltech_birds2011", data_dir=data_dir)
        missing = [
            os.path.join(manual_dir, name)
            for name in FILES
            if not os.path.isfile(os.path.join(manual_dir, name))
        ]
        if missing and not builder.is_prepared():
            raise FileNotFoundError(
                "CUB-200-2011 archives not found. `manual_dir` (or $"
                f"{MANUAL_DIR_ENV}) must hold {list(FILES)}; missing: "
                f"{missing}. Received: manual_dir={manual_dir!r}"
            )
        download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    else:
        builder = tfds.builder("caltech_birds2011", data_dir=data_dir)
        if not builder.is_prepared() and not _downloads.reachable(DOWNLOAD_URL):
            raise FileNotFoundError(
                "CUB-200-2011 is not prepared under data_dir="
                f"{str(builder.data_dir_root)!r} and {DOWNLOAD_URL} is "
                f"unreachable. Put the archives {list(FILES)} in a folder "
                f"and pass `manual_dir=` (or set ${MANUAL_DIR_ENV}) to it."
            )
    # One process prepares a data dir at a time: two preparing it at once
    # failed in tfds' rename of its temporary folder.
    with _downloads.preparation_lock(str(builder.data_dir_root)):
        if not builder.is_prepared():
            builder.download_and_prepare(download_config=download_config)
    return tfds.load(
        "caltech_birds2011",
        split=split,
        data_dir=data_dir,
        download=False,
        shuffle_files=training,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
        decoders=tfds.decode.PartialDecoding({"image": True, "label": True}),
    )


def resized_shape(shape, resize_size):
    """`(height, width)` with the shorter side `resize_size`, aspect kept.

    Args:
        shape: int tensor `(2,)`, `(height, width)`.
        resize_size: int.
    Returns:
        int32 tensor `(2,)`, both >= `resize_size`.
    """
    shape = tf.cast(shape, tf.float32)
    scale = resize_size / tf.reduce_min(shape)
    return tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), resize_size)


def crop_and_flip(image, seed, image_size, resize_size, training):
    """One example's resize, crop and flip.

    Args:
        image: uint8 tensor `(H, W, 3)`.
        seed: int tensor `(2,)`, a stateless seed (used when training).
        image_size: int, the crop's side.
        resize_size: int >= image_size, the resized shorter side.
        training: bool, random crop and flip, else the centre crop.
    Returns:
        `(crop, params)`: float32 `(image_size, image_size, 3)` in `[0, 1]`
        and a dict of `crop_top_left` int32 `(2,)` (pixels `(x, y)` in the
        resized image), `flipped` bool scalar and `resized_shape` int32
        `(2,)` (`(height, width)`).
    """
    shape = resized_shape(tf.shape(image)[:2], resize_size)
    resized = tf.image.resize(image, shape, antialias=True)
    room = shape - image_size  # (rows, cols) of free play
    if training:
        keys = tf.random.experimental.stateless_split(seed, 2)
        unit = tf.random.stateless_uniform([2], keys[0])
        offset = tf.minimum(
            tf.cast(unit * tf.cast(room + 1, tf.float32), tf.int32), room
        )
        flipped = tf.random.stateless_uniform([], keys[1]) < 0.5
    else:
        offset = room // 2
        flipped = tf.constant(False)
    crop = tf.slice(
        resized, [offset[0], offset[1], 0], [image_size, image_size, 3]
    )
    crop = tf.cond(flipped, lambda: tf.reverse(crop, [1]), lambda: crop)
    crop = tf.clip_by_value(crop / 255.0, 0.0, 1.0)
    params = {
        "crop_top_left": tf.reverse(offset, [0]),
        "flipped": flipped,
        "resized_shape": shape,
    }
    return crop, params


# The evaluation nonce without a seed: every call gives the same examples.
DEFAULT_SEED = 0


def _nonce_stream(training, seed):
    """The endless int64 nonces that example seeds are folded from.

    Training: a random nonce per example, redrawn every epoch (repeatable
    with a `seed`). Otherwise: the constant `seed` (default `DEFAULT_SEED`),
    so every call gives the same examples.
    """
    if training:
        return tf.data.Dataset.random(
            seed=seed, rerandomize_each_iteration=True
        )
    nonce = DEFAULT_SEED if seed is None else seed
    return tf.data.Dataset.from_tensors(tf.constant(nonce, tf.int64)).repeat()


def cub_200_2011(
    split="train",
    batch_size=16,
    image_size=448,
    resize_size=None,
    data_dir=None,
    manual_dir=None,
    seed=None,
    training=None,
    drop_remainder=False,
    with_params=False,
    shuffle_buffer=1024,
):
    """CUB-200-2011 with the paper's crops, batched and prefetched.

    Determinism: with `training=False` (the default for `"test"`) the order
    is the split's and crops are central: every call gives the same
    batches. With `training=True` (the default for `"train"` and its
    slices) files and examples are reshuffled and crops and flips are drawn
    afresh every epoch (stateless per example, from
    `tf.data.Dataset.random(seed)`); a `seed` makes that repeatable.

    Args:
        split: str, a tfds split of `caltech_birds2011`: `"train"` (5994),
            `"test"` (5794) or a slice. Defaults to `"train"`.
        batch_size: int. Defaults to 16.
        image_size: int, the crop's side, e.g. 448 or 224. Defaults to 448.
        resize_size: int >= image_size or None, the resized shorter side.
            Defaults to `round(image_size * 8 / 7)` (512 for 448).
        data_dir: str or None, tfds' data directory.
        manual_dir: str or None, a folder with the CUB archives, for
            offline preparation (default `$KERAS_STN_CUB_DIR`).
        seed: int or None.
        training: bool or None, see Determinism.
        drop_remainder: bool. Defaults to False.
        with_params: bool, add a dict of batched `crop_and_flip` parameters
            as a third element. Defaults to False.
        shuffle_buffer: int, examples in the training shuffle buffer.
    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32
        `(B, image_size, image_size, 3)` in `[0, 1]` (apply the backbone's
        own input scaling in the model) and int64 `(B,)` in `[0, 200)`.
    Raises:
        ValueError: a malformed argument.
        FileNotFoundError: `manual_dir` lacks an archive and the data is
            not prepared, or, without `manual_dir`, the data is not prepared
            and the download site is unreachable (at once, instead of tfds'
            minutes of retries).
    """
    batch_size = argument_validation.check_positive_int(
        batch_size, "batch_size"
    )
    image_size = argument_validation.check_positive_int(
        image_size, "image_size"
    )
    if resize_size is None:
        resize_size = int(round(image_size * 8 / 7))
    resize_size = argument_validation.check_positive_int(
        resize_size, "resize_size"
    )
    if resize_size < image_size:
        raise ValueError(
            "`resize_size` must be >= `image_size` to crop from it. "
            f"Received: resize_size={resize_size!r}, image_size={image_size!r}"
        )
    if not isinstance(split, str):
        raise ValueError(f"`split` must be a str. Received: split={split!r}")
    seed = argument_validation.check_seed(seed)
    if training is None:
        training = split.startswith("train")
    training = argument_validation.check_bool(training, "training")
    drop_remainder = argument_validation.check_bool(
        drop_remainder, "drop_remainder"
    )
    with_params = argument_validation.check_bool(with_params, "with_params")
    shuffle_buffer = argument_validation.check_positive_int(
        shuffle_buffer, "shuffle_buffer"
    )

    examples = _load(split, data_dir, manual_dir, training, seed)
    examples = examples.map(lambda ex: (ex["image"], ex["label"]))
    tag = tf.constant(zlib.crc32(f"cub_200_2011/{split}".encode()), tf.int64)
    if training:
        examples = examples.shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
    nonces = _nonce_stream(training, seed)
    stream = tf.data.Dataset.zip(
        tf.data.Dataset.range(tf.int64.max), examples, nonces
    )

    def _example(index, example, nonce):
        image, label = example
        seed = tf.random.experimental.stateless_fold_in(
            tf.stack([nonce, tag]), index
        )
        crop, params = crop_and_flip(
            image, seed, image_size, resize_size, training
        )
        return crop, label, params

    batches = stream.map(_example, num_parallel_calls=tf.data.AUTOTUNE)
    batches = batches.batch(batch_size, drop_remainder=drop_remainder)
    if not with_params:
        batches = batches.map(lambda images, labels, params: (images, labels))
    return batches.prefetch(tf.data.AUTOTUNE)
