"""The tf.data skeleton the MNIST sets share: seeds, order, batches.

Example `i` (its index in the base split, `"train"` or `"test"`) draws its
parameters from the stateless seed `fold_in((nonce, tag), i)`, `tag` a
CRC32 of the set's name and base split. Evaluation (`training=False`): the
nonce is the seed (default `DEFAULT_SEED`) and the order is the split's, so
every call on every machine yields the same batches. Training: the order is
reshuffled and the nonce redrawn per example every epoch
(`tf.data.Dataset.random(seed, rerandomize_each_iteration=True)`), so each
epoch sees fresh distortions; a seed makes the whole sequence of epochs
repeatable. Training by numbered epochs (`training_epochs`): epoch `e`'s
order and nonce are stateless functions of `(seed, tag, e)`, so epoch `e` is
the same whether it is the first epoch a process iterates or the tenth; a
run resumed at epoch `e` sees what an uninterrupted one would.

Parameters are drawn per example (parallel map), then the batch is rendered
at once: one grid and one sampling call per batch.
"""

import zlib

import tensorflow as tf

DEFAULT_SEED = 0


def resolve_training(training, split):
    """`training`, or by default whether `split` is a training split.

    The default is True for `"train"` and its slices, False for `"test"`,
    its slices and `"validation"`.
    """
    if training is None:
        return split.startswith("train")
    if not isinstance(training, bool):
        raise ValueError(
            f"`training` must be None, True or False. Received: "
            f"training={training!r}"
        )
    return training


def nonce_stream(training, seed):
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


def example_seeds(start, stop, training, seed, tag):
    """The dataset of `(index, seed)` pairs, in order or reshuffled.

    Args:
        start, stop: ints, the examples `[start, stop)` of the base split.
        training: bool, reshuffle and redraw every epoch.
        seed: int or None.
        tag: str, names the set and base split (decorrelates sets).
    Returns:
        A `tf.data.Dataset` of `(int64 scalar, int64 (2,))`.
    """
    tag = tf.constant(zlib.crc32(tag.encode()), tf.int64)
    indices = tf.data.Dataset.range(start, stop)
    if training:
        indices = indices.shuffle(
            stop - start, seed=seed, reshuffle_each_iteration=True
        )
    nonces = nonce_stream(training, seed)

    def _seed(index, nonce):
        key = tf.stack([nonce, tag])
        return index, tf.random.experimental.stateless_fold_in(key, index)

    return tf.data.Dataset.zip(indices, nonces).map(_seed)


def epoch_example_seeds(start, stop, seed, tag, epoch):
    """One training epoch's `(index, seed)` pairs, a function of
    `(seed, tag, epoch)` alone.

    The order is a stateless shuffle of `[start, stop)` and example `i`'s
    seed is `fold_in(key, i)`, the key folded from `(seed, tag, epoch)`.

    Args:
        start, stop: ints, the examples `[start, stop)` of the base split.
        seed: int.
        tag: str, names the set and base split (decorrelates sets).
        epoch: int64 scalar (tensor), the epoch's number.
    Returns:
        A `tf.data.Dataset` of `(int64 scalar, int64 (2,))`.
    """
    tag = tf.constant(zlib.crc32(tag.encode()), tf.int64)
    base = tf.stack([tf.constant(seed, tf.int64), tag])
    keys = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(base, epoch), 2
    )
    order = tf.random.experimental.stateless_shuffle(
        tf.range(start, stop, dtype=tf.int64), keys[0]
    )

    def _seed(index):
        return index, tf.random.experimental.stateless_fold_in(keys[1], index)

    return tf.data.Dataset.from_tensor_slices(order).map(_seed)


def _drawn(seeds, draw):
    return seeds.map(
        lambda index, seed: (index, draw(index, seed)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _rendered(batches, render, with_params):
    def _render(index, params):
        images, labels, extra = render(index, params)
        if with_params:
            return images, labels, {"index": index, **params, **extra}
        return images, labels

    batches = batches.map(_render, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def build(seeds, draw, render, batch_size, drop_remainder, with_params):
    """Draws per example, batches, renders per batch and prefetches.

    Args:
        seeds: `example_seeds`' dataset.
        draw: `(index, seed) -> dict` of one example's parameters.
        render: `(indices (B,), params) -> (images, labels, extra dict)`.
        batch_size: int.
        drop_remainder: bool.
        with_params: bool, append `{"index": ..., **params, **extra}`.
    Returns:
        A batched, prefetched `tf.data.Dataset`.
    """
    batches = _drawn(seeds, draw).batch(batch_size, drop_remainder)
    return _rendered(batches, render, with_params)


def training_epochs(
    initial_epoch,
    epochs,
    start,
    stop,
    seed,
    tag,
    draw,
    render,
    batch_size,
    drop_remainder,
    with_params,
):
    """Training epochs `initial_epoch .. epochs - 1` one after another, each
    batched on its own (a short last batch ends each epoch unless
    `drop_remainder`), each a function of `(seed, tag, epoch)`
    (`epoch_example_seeds`).

    Args:
        initial_epoch, epochs: ints, the epochs `[initial_epoch, epochs)`.
        start, stop, seed, tag: as `epoch_example_seeds`.
        draw, render, batch_size, drop_remainder, with_params: as `build`.
    Returns:
        A batched, prefetched `tf.data.Dataset` of all those epochs' batches.
    """

    def one_epoch(epoch):
        seeds = epoch_example_seeds(start, stop, seed, tag, epoch)
        return _drawn(seeds, draw).batch(batch_size, drop_remainder)

    numbers = tf.data.Dataset.range(initial_epoch, epochs)
    return _rendered(numbers.flat_map(one_epoch), render, with_params)


def to_unit_float(images):
    """uint8 images to float32 in `[0, 1]`."""
    return tf.cast(images, tf.float32) / 255.0


def clip_unit(images):
    """Clips to `[0, 1]`: bilinear weights can sum to 1 + 1 ulp."""
    return tf.clip_by_value(images, 0.0, 1.0)
