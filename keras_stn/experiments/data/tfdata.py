"""The tf.data adapter: a set's batches as a `tf.data.Dataset`.

TensorFlow backend. Batch `b` of epoch `e` is `batches.host_at(e, b)`
(NumPy, through `tf.numpy_function`, several batches at once), then
`batches.render` traced into the pipeline (the package's ops as TensorFlow
ops, run by tf.data's threads), then prefetched: item `i` is the batch
`source.PyDatasetSource` serves as item `i`.

A training set without numbered epochs (`epochs=None`) gives one epoch
per iteration of the dataset, each a fresh epoch: its number drawn at
random per iteration (repeatable with the set's seed), as `fit(dataset,
epochs=N)` expects without `steps_per_epoch`. Train with numbered epochs
for runs that resume.

`distorted_mnist`, `mnist_addition` and `two_digit_canvas` build a set and
its dataset in one call.

Example (with the files at `manual_dir`):
    test = distorted_mnist("RTS", "test", 256,
                           manual_dir="../shared/data/mnist")
    images, labels = next(iter(test))  # (256, 42, 42, 1), (256,)
"""

from keras_stn.experiments.data import distorted
from keras_stn.experiments.data import two_digit
from keras_stn.utils import argument_validation

# Epoch numbers are generator words: `[0, 2**32)`.
_EPOCHS = 2**32


def dataset(batches):
    """A `batches.Batches` set as a batched, prefetched `tf.data.Dataset`.

    Args:
        batches: a `batches.Batches` (`distorted.DistortedMNIST`,
            `two_digit.MNISTAddition`, `two_digit.TwoDigitCanvas`).
    Returns:
        A `tf.data.Dataset` of `batches.element`'s items as tensors:
        `(images, labels)` (and a dict of parameters with the set's
        `with_params`): the `batches.num_batches` items held, or one fresh
        epoch per iteration (see the module docstring).
    Raises:
        RuntimeError: Keras does not run on TensorFlow.
    """
    argument_validation.check_tensorflow_backend("tfdata.dataset")
    import tensorflow as tf

    # One batch's host part tells the dtypes and shapes numpy_function
    # declares (only the batch dimension varies).
    inputs, labels, params = batches.host_at(batches.initial_epoch, 0)
    keys = tuple(params)
    count = len(inputs)
    probe = [*inputs, labels, *params.values()]
    dtypes = [tf.as_dtype(array.dtype) for array in probe]
    shapes = [(None, *array.shape[1:]) for array in probe]

    def host(epoch, batch):
        inputs, labels, params = batches.host_at(epoch, batch)
        return [*inputs, labels, *(params[key] for key in keys)]

    def load(epoch, batch):
        flat = tf.numpy_function(host, [epoch, batch], dtypes, stateful=False)
        return tuple(
            tf.ensure_shape(tensor, shape)
            for tensor, shape in zip(flat, shapes)
        )

    def render(*flat):
        images = batches.render(*flat[:count])
        if batches.with_params:
            return images, flat[count], dict(zip(keys, flat[count + 1 :]))
        return images, flat[count]

    steps = batches.steps_per_epoch
    if not batches.training:
        items = tf.data.Dataset.range(steps).map(lambda b: (b * 0, b))
    elif batches.epochs is None:
        numbers = tf.data.Dataset.random(
            seed=batches.seed % 2**63, rerandomize_each_iteration=True
        )
        items = numbers.take(1).flat_map(
            lambda draw: tf.data.Dataset.range(steps).map(
                lambda b: (draw % _EPOCHS, b)
            )
        )
    else:
        first = batches.initial_epoch
        items = tf.data.Dataset.range(batches.num_batches).map(
            lambda i: (first + i // steps, i % steps)
        )
    items = items.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    items = items.map(render, num_parallel_calls=tf.data.AUTOTUNE)
    return items.prefetch(tf.data.AUTOTUNE)


def distorted_mnist(variant, split="train", batch_size=128, **kwargs):
    """`dataset(distorted.DistortedMNIST(variant, split, batch_size,
    **kwargs))`: a distorted MNIST set (R, RTS, P, E, TC) as tf.data."""
    return dataset(
        distorted.DistortedMNIST(variant, split, batch_size, **kwargs)
    )


def mnist_addition(split="train", batch_size=128, **kwargs):
    """`dataset(two_digit.MNISTAddition(split, batch_size, **kwargs))`."""
    return dataset(two_digit.MNISTAddition(split, batch_size, **kwargs))


def two_digit_canvas(split="train", batch_size=128, **kwargs):
    """`dataset(two_digit.TwoDigitCanvas(split, batch_size, **kwargs))`."""
    return dataset(two_digit.TwoDigitCanvas(split, batch_size, **kwargs))
