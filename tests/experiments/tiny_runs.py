"""Training runs on a few random digits, for tests of the run folder: the
run's data, in place of MNIST, is `(B, 28, 28, 1)` uniform noise with
random labels, a function of the seed and the epoch like the real sources.
Not a test module: the tests import it.
"""

import math

import keras
import numpy as np

from keras_stn.experiments import training


class TinyDigits(keras.utils.PyDataset):
    """`epochs - initial_epoch` epochs (one for `epochs=None`) of
    `ceil(examples / batch_size)` batches each."""

    def __init__(
        self, examples, batch_size, seed=0, epochs=None, initial_epoch=0
    ):
        super().__init__()
        self.batch_size = batch_size
        self.seed = seed
        self.initial_epoch = initial_epoch
        self.steps = math.ceil(examples / batch_size)
        self.epochs = 1 if epochs is None else epochs - initial_epoch

    def __len__(self):
        return self.steps * self.epochs

    def __getitem__(self, index):
        epoch, step = divmod(index, self.steps)
        rng = np.random.default_rng(
            [self.seed, self.initial_epoch + epoch, step]
        )
        images = rng.random((self.batch_size, 28, 28, 1), dtype=np.float32)
        labels = rng.integers(0, 10, self.batch_size)
        return images, labels


def make_datasets(
    data,
    batch_size,
    train_examples=None,
    seed=0,
    data_dir=None,
    manual_dir=None,
    epochs=None,
    initial_epoch=0,
    data_source="auto",
):
    """`training.make_datasets` on `TinyDigits`: 32 test digits."""
    examples = train_examples or training.MNIST_TRAIN_EXAMPLES
    train = TinyDigits(examples, batch_size, seed, epochs, initial_epoch)
    return train, TinyDigits(32, 32, seed=10**6), examples


def options(out_dir, **kwargs):
    """`train_run`'s arguments for a run of 2 epochs of 32 digits of r on
    a plain FCN (`r-fcn`), on the TensorFlow-free source."""
    return {
        "data": "r",
        "model": "fcn",
        "epochs": 2,
        "batch_size": 16,
        "train_examples": 32,
        "out_dir": str(out_dir),
        "pictures": False,
        "verbose": 0,
        "data_source": "pydataset",
        **kwargs,
    }
