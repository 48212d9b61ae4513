"""The PyDataset adapter: a set's batches as a `keras.utils.PyDataset`.

Any backend, no TensorFlow. Item `i` is `batches.host(i)` (NumPy on the
host), then `batches.render` on the backend's device (compiled by
`jax.jit` on JAX; TensorFlow's samplers compile themselves with XLA,
PyTorch runs eagerly): the same batches as `tfdata.dataset` serves.

Give `fit` the set's `steps_per_epoch` (one iterator then runs through
the numbered epochs) and `shuffle=False` (else Keras reorders the items
with an unseeded shuffle of its own; the set shuffles by its seed). The
epoch is not read from Keras' epoch callbacks: Keras 3 calls them around
its first, symbolic build and before training too, so they do not count
epochs.

Example (with the files at `manual_dir`):
    train = PyDatasetSource(distorted.DistortedMNIST(
        "RTS", "train", seed=1, epochs=10, manual_dir="../shared/data/mnist"))
    model.fit(train, epochs=10, shuffle=False,
              steps_per_epoch=train.steps_per_epoch)
"""

import keras
from keras import ops

from keras_stn.utils import argument_validation


def compiled(function):
    """`function` as one compiled program where that pays: on JAX,
    `jax.jit` (one XLA program per batch shape, instead of one dispatch and
    one compilation per op); as is elsewhere (TensorFlow's samplers compile
    themselves with XLA, PyTorch runs eagerly)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(function)
    return function


class PyDatasetSource(keras.utils.PyDataset):
    """A `batches.Batches` set served as a `keras.utils.PyDataset`.

    Args:
        batches: a `batches.Batches` (`distorted.DistortedMNIST`,
            `two_digit.MNISTAddition`, `two_digit.TwoDigitCanvas`).
        return_numpy: bool, images as NumPy arrays instead of tensors on
            the backend's device. Defaults to False.
        workers, max_queue_size: `keras.utils.PyDataset`'s (threads only).
    Items:
        `batches.element`'s: `(images, labels)`, float32 images (a backend
        tensor, or NumPy with `return_numpy`) and int64 NumPy labels; with
        the set's `with_params`, also a dict of NumPy parameters.
    """

    def __init__(
        self, batches, return_numpy=False, workers=1, max_queue_size=10
    ):
        super().__init__(
            workers=argument_validation.check_positive_int(workers, "workers"),
            use_multiprocessing=False,
            max_queue_size=argument_validation.check_positive_int(
                max_queue_size, "max_queue_size"
            ),
        )
        self.batches = batches
        self.return_numpy = argument_validation.check_bool(
            return_numpy, "return_numpy"
        )
        self._program = compiled(batches.render)

    @property
    def steps_per_epoch(self):
        """Batches per epoch: give it to `fit` as `steps_per_epoch`."""
        return self.batches.steps_per_epoch

    @property
    def num_batches(self):
        """The batches held, or None for an endless training set."""
        return self.batches.num_batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        inputs, labels, params = self.batches.host(index)
        images = self._program(*inputs)
        if self.return_numpy:
            images = ops.convert_to_numpy(images)
        if self.batches.with_params:
            return images, labels, params
        return images, labels
