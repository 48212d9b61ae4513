"""The tf.data adapter: a set's batches as a `tf.data.Dataset`.

TensorFlow backend. Item `i` is `batches.host(i)` (NumPy, through
`tf.numpy_function`, several items at once), then `batches.render` traced
into the pipeline (the package's ops as TensorFlow ops, run by tf.data's
threads), then prefetched: the same batches as `source.PyDatasetSource`
serves, in the same order. Endless training sets (`epochs=None`) give an
endless dataset: pass `steps_per_epoch` to `fit`.

Example (with the files at `manual_dir`):
    test = dataset(distorted.DistortedMNIST(
        "RTS", "test", 256, manual_dir="../shared/data/mnist"))
    images, labels = next(iter(test))  # (256, 42, 42, 1), (256,)
"""

from keras_stn.utils import argument_validation


def dataset(batches):
    """A `batches.Batches` set as a batched, prefetched `tf.data.Dataset`.

    Args:
        batches: a `batches.Batches` (`distorted.DistortedMNIST`,
            `two_digit.MNISTAddition`, `two_digit.TwoDigitCanvas`).
    Returns:
        A `tf.data.Dataset` of `batches.element`'s items as tensors:
        `(images, labels)` (and a dict of parameters with the set's
        `with_params`); `batches.num_batches` of them, or endless.
    Raises:
        RuntimeError: Keras does not run on TensorFlow.
    """
    argument_validation.check_tensorflow_backend("tfdata.dataset")
    import tensorflow as tf

    # One item's host part tells the dtypes and shapes numpy_function
    # declares (only the batch dimension varies).
    inputs, labels, params = batches.host(0)
    keys = tuple(params)
    count = len(inputs)
    probe = [*inputs, labels, *params.values()]
    dtypes = [tf.as_dtype(array.dtype) for array in probe]
    shapes = [(None, *array.shape[1:]) for array in probe]

    def host(index):
        inputs, labels, params = batches.host(int(index))
        return [*inputs, labels, *(params[key] for key in keys)]

    def load(index):
        flat = tf.numpy_function(host, [index], dtypes, stateful=False)
        return tuple(
            tf.ensure_shape(tensor, shape)
            for tensor, shape in zip(flat, shapes)
        )

    def render(*flat):
        images = batches.render(*flat[:count])
        if batches.with_params:
            return images, flat[count], dict(zip(keys, flat[count + 1 :]))
        return images, flat[count]

    held = batches.num_batches
    if held is None:
        items = tf.data.Dataset.counter()
    else:
        items = tf.data.Dataset.range(held)
    items = items.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    items = items.map(render, num_parallel_calls=tf.data.AUTOTUNE)
    return items.prefetch(tf.data.AUTOTUNE)
