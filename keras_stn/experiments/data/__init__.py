"""The paper's data sets, in two forms.

tf.data pipelines (TensorFlow backend; tensorflow-datasets):
- `distorted_mnist(variant, ...)`: R, RTS, P, E and TC MNIST.
- `mnist_addition(...)`: two RTS digits in two channels, label their sum.
- `two_digit_canvas(...)`: two digits on one canvas, with their boxes.
- `cub_200_2011(...)`: CUB-200-2011 birds with crops and flips.

`keras.utils.PyDataset`s for every backend, TensorFlow-free (`source`):
`source.DistortedMNIST`, `source.MNISTAddition`, `source.TwoDigitCanvas`,
with the same distributions, drawn with NumPy and warped on the backend's
device by `keras_stn.ops`; `arrays.load_mnist` reads the four original
MNIST files with NumPy.

The submodules are imported on first use, so `arrays` and `source` import
without TensorFlow.
"""

import importlib

_SUBMODULES = (
    "arrays",
    "clutter",
    "cub",
    "distorted",
    "distortions",
    "mnist",
    "placement",
    "source",
    "two_digit",
)
_NAMES = {
    "VARIANTS": "source",
    "cub_200_2011": "cub",
    "distorted_mnist": "distorted",
    "mnist_addition": "two_digit",
    "two_digit_canvas": "two_digit",
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


__all__ = [
    "VARIANTS",
    "cub_200_2011",
    "distorted_mnist",
    "mnist_addition",
    "two_digit_canvas",
    *_SUBMODULES,
]
