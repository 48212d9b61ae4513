"""The paper's data sets: one definition, two adapters.

Definitions (NumPy draws per `(seed, epoch, batch)`, warps with
`keras_stn.ops`; no TensorFlow):
- `distorted.DistortedMNIST(variant, ...)`: R, RTS, P, E and TC MNIST.
- `two_digit.MNISTAddition(...)`: two RTS digits in two channels, label
  their sum.
- `two_digit.TwoDigitCanvas(...)`: two digits on one canvas, with boxes.
Adapters, serving the same batches:
- `source.PyDatasetSource(batches)`: a `keras.utils.PyDataset`, any
  backend.
- `tfdata.dataset(batches)`: a `tf.data.Dataset` (TensorFlow backend);
  `distorted_mnist(...)`, `mnist_addition(...)`, `two_digit_canvas(...)`
  build a set and its dataset in one call.
MNIST itself: `mnist.load_mnist` (the four original files, checksummed,
downloaded to Keras' cache when missing). CUB-200-2011 birds:
`cub.cub_200_2011(...)` (tf.data and tensorflow-datasets).

The submodules are imported on first use, so the TensorFlow-free ones
import without TensorFlow.
"""

import importlib

_SUBMODULES = (
    "batches",
    "clutter",
    "cub",
    "distorted",
    "distortions",
    "mnist",
    "placement",
    "source",
    "tfdata",
    "two_digit",
)
_NAMES = {
    "VARIANTS": "distorted",
    "DistortedMNIST": "distorted",
    "MNISTAddition": "two_digit",
    "TwoDigitCanvas": "two_digit",
    "PyDatasetSource": "source",
    "cub_200_2011": "cub",
    "distorted_mnist": "tfdata",
    "mnist_addition": "tfdata",
    "two_digit_canvas": "tfdata",
}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        module = importlib.import_module(f"{__name__}.{_NAMES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted((*_SUBMODULES, *_NAMES))


__all__ = [*_NAMES, *_SUBMODULES]
