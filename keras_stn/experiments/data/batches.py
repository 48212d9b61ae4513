"""A split of MNIST in batches, each a function of `(seed, epoch, batch)`.

`Batches` is the one definition of what a data set serves; the adapters
(`source.PyDatasetSource`, `tfdata.dataset`) only move its batches:
- `host(index)`: NumPy on the host. Batch `b` of epoch `e` takes its
  digits from the epoch's order and draws its parameters from a NumPy
  generator seeded by `(seed, set, e, b)` when training, by
  `(seed, set, b)` otherwise; the training order of epoch `e` is a
  permutation seeded by `(seed, set, e)`, the evaluation order the
  split's. It returns the warp's inputs (uint8 digits first, then thetas
  and the like), the labels and the parameters drawn.
- `render(*inputs)`: backend ops only (`keras_stn.ops`), the warp: float32
  images in `[0, 1]`. It runs eagerly, compiled by `jax.jit`, or inside a
  tf.data graph, on the same inputs.
So a test split gives the same batches on every call, machine and adapter,
and training sees fresh distortions every epoch.

Numbered epochs: a training set holds the epochs `initial_epoch`,
`initial_epoch + 1`, ... one after another (to `epochs - 1`, or endless
with `epochs=None`); item `i` is batch `i % steps_per_epoch` of epoch
`initial_epoch + i // steps_per_epoch`, whatever was asked before. A run
resumed at epoch `e` (`initial_epoch=e`) sees exactly what an
uninterrupted run sees from its epoch `e` on. Give `fit` the set's
`steps_per_epoch` (one iterator then runs through the epochs).
"""

import zlib

import numpy as np

from keras_stn.experiments.data import mnist
from keras_stn.utils import argument_validation

# Streams of a set's generators: the training order, a training batch, an
# evaluation batch. Every key has the same length, so no two collide.
_ORDER, _TRAIN, _EVAL = 0, 1, 2
_WORD = 2**32


def generator(seed, tag, stream, epoch, batch):
    """A NumPy generator that is a function of its arguments alone.

    Args:
        seed: int (any sign, taken modulo 2**64).
        tag: int in `[0, 2**32)`, the set and base split.
        stream, epoch, batch: ints in `[0, 2**32)`.
    Returns:
        `np.random.Generator` (PCG64 from a `SeedSequence` of the words).
    """
    seed %= _WORD * _WORD
    words = [seed % _WORD, seed // _WORD, tag, stream, epoch, batch]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))


class Batches:
    """A split of MNIST in batches (see the module docstring).

    Subclasses implement `draw(indices, rng)`, returning the warp's NumPy
    inputs after the digits, the labels and the parameters, and
    `render(digits, *inputs)`, the warp (backend ops only).

    Args:
        name: str, the set's name (decorrelates the sets' streams).
        split: str, `"train"`, `"test"`, `"validation"`
            (`"train[50000:]"`) or a slice of one base split in tfds' form
            (`"train[:50000]"`). Defaults to `"train"`.
        batch_size: int. Defaults to 128.
        data_dir, manual_dir: where MNIST is (`mnist.load_mnist`).
        seed: int or None. Defaults to 0. None: a fresh seed for training
            (kept in the `seed` attribute), 0 otherwise.
        training: bool or None: shuffle and draw fresh distortions every
            epoch. Defaults to whether `split` starts with `"train"`.
        drop_remainder: bool, drop a last, smaller batch. Defaults to False.
        with_params: bool, add a third element, a dict of NumPy arrays:
            `index` (the base split's indices) and the parameters drawn
            (Keras' `fit` would read it as sample weights). Defaults to
            False.
        epochs: int or None, training only: the set holds the epochs
            `initial_epoch .. epochs - 1` (`fit`'s `epochs`); None (the
            default): endless.
        initial_epoch: int in `[0, epochs]`, the first epoch held: `fit`'s
            `initial_epoch` when resuming. Defaults to 0.
    Raises:
        ValueError: a bad argument; a corrupt MNIST file.
        FileNotFoundError: MNIST's files are neither found nor downloaded.
    """

    def __init__(
        self,
        name,
        split="train",
        batch_size=128,
        data_dir=None,
        manual_dir=None,
        seed=0,
        training=None,
        drop_remainder=False,
        with_params=False,
        epochs=None,
        initial_epoch=0,
    ):
        self.batch_size = argument_validation.check_positive_int(
            batch_size, "batch_size"
        )
        self.drop_remainder = argument_validation.check_bool(
            drop_remainder, "drop_remainder"
        )
        self.with_params = argument_validation.check_bool(
            with_params, "with_params"
        )
        self.split = split
        self.base, self.start, self.stop = mnist.split_range(split)
        if training is None:
            training = split.startswith("train")
        self.training = argument_validation.check_bool(training, "training")
        self.epochs = self._check_epochs(epochs, initial_epoch)
        self.initial_epoch = initial_epoch
        seed = argument_validation.check_seed(seed)
        if seed is None:  # fresh when training, else 0
            seed = np.random.SeedSequence().entropy if training else 0
        self.seed = int(seed)
        if self.steps_per_epoch == 0:
            raise ValueError(
                "`batch_size` must be at most the split's size with "
                f"drop_remainder=True. Received: batch_size={batch_size!r}, "
                f"split={split!r} ({self.num_examples} examples)"
            )
        self.data_dir, self.manual_dir = data_dir, manual_dir
        self.images, self.labels = mnist.load_mnist(
            manual_dir, self.base, data_dir
        )
        self.tag = zlib.crc32(f"{name}/{self.base}".encode())
        self._order = (None, None)

    def _check_epochs(self, epochs, initial_epoch):
        if epochs is not None and not self.training:
            raise ValueError(
                "`epochs` numbers training epochs: it needs training=True. "
                f"Received: epochs={epochs!r}, training={self.training!r}"
            )
        last = _WORD - 1
        if epochs is not None:
            epochs = argument_validation.check_int_between(
                epochs, "epochs", 1, last, "the epochs' end"
            )
            last = epochs
        argument_validation.check_int_between(
            initial_epoch, "initial_epoch", 0, last, "the first epoch held"
        )
        return epochs

    @property
    def num_examples(self):
        """The number of examples in the split."""
        return self.stop - self.start

    @property
    def steps_per_epoch(self):
        """Batches per epoch: give it to `fit` as `steps_per_epoch`."""
        if self.drop_remainder:
            return self.num_examples // self.batch_size
        return -(-self.num_examples // self.batch_size)

    @property
    def num_batches(self):
        """The batches held, or None for an endless training set."""
        if not self.training:
            return self.steps_per_epoch
        if self.epochs is None:
            return None
        return (self.epochs - self.initial_epoch) * self.steps_per_epoch

    def locate(self, index):
        """The `(epoch, batch)` of item `index` (epoch 0 unless training).

        Raises:
            IndexError: `index` is not one of the items held.
        """
        held = self.num_batches
        if (
            isinstance(index, bool)
            or not isinstance(index, (int, np.integer))
            or index < 0
            or (held is not None and index >= held)
        ):
            bound = "no upper bound" if held is None else f"< {held}"
            raise IndexError(
                f"`index` must be an int >= 0 and {bound}. Received: "
                f"index={index!r}"
            )
        if not self.training:
            return 0, int(index)
        epoch, batch = divmod(int(index), self.steps_per_epoch)
        return self.initial_epoch + epoch, batch

    def order(self, epoch=0):
        """The base-split indices of an epoch, in the order they are served
        (the split's own order unless training).

        Returns:
            int64 NumPy array `(N,)`.
        """
        if not self.training:
            return np.arange(self.start, self.stop, dtype=np.int64)
        # One tuple, replaced whole: safe under the adapters' threads.
        cached_epoch, order = self._order
        if cached_epoch != epoch:
            rng = generator(self.seed, self.tag, _ORDER, epoch, 0)
            order = self.start + rng.permutation(self.num_examples)
            self._order = (epoch, order)
        return order

    def batch_indices(self, epoch, batch):
        """A batch's base-split indices and its parameters' generator.

        Returns:
            `(indices, rng)`: int64 NumPy `(B,)`, `np.random.Generator`.
        """
        step = self.batch_size
        indices = self.order(epoch)[batch * step : (batch + 1) * step]
        if self.training:
            rng = generator(self.seed, self.tag, _TRAIN, epoch, batch)
        else:
            rng = generator(self.seed, self.tag, _EVAL, 0, batch)
        return indices, rng

    def host(self, index):
        """Item `index`'s host part, NumPy only: `host_at(*locate(index))`.

        Returns:
            `(inputs, labels, params)`: the tuple `render` takes (uint8
            digits first), the int64 labels and a dict of the parameters
            drawn with the base split's `index`.
        """
        return self.host_at(*self.locate(index))

    def host_at(self, epoch, batch):
        """Batch `batch` of epoch `epoch` (ints in `[0, 2**32)`), host
        part, as `host`."""
        indices, rng = self.batch_indices(int(epoch), int(batch))
        inputs, labels, params = self.draw(indices, rng)
        return inputs, labels, {"index": indices, **params}

    def element(self, index):
        """Item `index` as an adapter serves it, rendered eagerly.

        Returns:
            `(images, labels)` (and `params` with `with_params`): a float32
            backend tensor, int64 NumPy labels, a dict of NumPy arrays.
        """
        inputs, labels, params = self.host(index)
        images = self.render(*inputs)
        if self.with_params:
            return images, labels, params
        return images, labels

    def draw(self, indices, rng):
        """`(inputs, labels, params)` of the digits `indices`, parameters
        drawn from `rng`."""
        raise NotImplementedError

    def render(self, digits, *inputs):
        """The warp: uint8 digits and the other inputs to float32 images
        in `[0, 1]` (backend ops only)."""
        raise NotImplementedError

    def pair(self, indices, rng):
        """`(B, 2)` indices: each digit and a partner drawn uniformly from
        the split's other digits."""
        size = self.num_examples
        draw = rng.integers(0, size - 1, len(indices))
        partner = self.start + (indices - self.start + 1 + draw) % size
        return np.stack([indices, partner], axis=-1)

    def check_pairs(self):
        """Raises a ValueError unless the split holds 2 digits to pair."""
        if self.num_examples < 2:
            raise ValueError(
                "`split` must hold at least 2 digits to pair them. "
                f"Received: split={self.split!r} ({self.num_examples} digit)"
            )

    def __len__(self):
        if self.num_batches is None:
            raise TypeError(
                "An endless training set (epochs=None) has no length; "
                f"each epoch is steps_per_epoch={self.steps_per_epoch} items."
            )
        return self.num_batches
