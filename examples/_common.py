"""What the example scripts share: the environment, the package on the path,
their command-line options and their result files.

Imported first by each script (`import _common`): running a script puts
`examples/` on `sys.path`, and this module puts the repository above it, so
the examples run from a checkout without installing the package.

The backend is Keras' own choice (`KERAS_BACKEND`, else Keras' config); a
missing one stops the script with keras_stn's short message. Data come
from the tf.data pipelines on TensorFlow and from the TensorFlow-free
`keras.utils.PyDataset`s elsewhere (`dataset`), with the same
distributions.
"""

import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("keras_stn") is None:
    sys.path.insert(1, ROOT)

try:
    import keras_stn  # noqa: F401  (names a missing backend in a few lines)
except ImportError as error:
    sys.exit(str(error))

import keras  # noqa: E402

# The TensorFlow-free PyDataset of each tf.data pipeline the examples use.
_SOURCES = {
    "mnist_addition": "MNISTAddition",
    "two_digit_canvas": "TwoDigitCanvas",
}


def require_tensorflow_backend(what):
    """Stops the script in one line unless Keras runs on TensorFlow.

    Args:
        what: str, what needs it, e.g. "its tf.data pipelines".
    """
    if keras.backend.backend() != "tensorflow":
        script = sys.argv[0]
        sys.exit(
            f"{script} needs the TensorFlow backend ({what}), not "
            f"{keras.backend.backend()!r}: pip install "
            '"keras-stn[tensorflow]" and set KERAS_BACKEND=tensorflow'
        )


def dataset(name, split, batch_size, epochs=None, **kwargs):
    """A data set of `keras_stn.experiments.data` for this backend.

    On TensorFlow `data.<name>(split, batch_size, **kwargs)`, a tf.data
    pipeline; elsewhere the same distribution from
    `data.source`, a `keras.utils.PyDataset` holding `epochs` epochs when
    training (None: endless).
    """
    from keras_stn.experiments import data

    if keras.backend.backend() == "tensorflow":
        return getattr(data, name)(split, batch_size, **kwargs)
    from keras_stn.experiments.data import source

    if split.startswith("train"):
        kwargs["epochs"] = epochs
    return getattr(source, _SOURCES[name])(split, batch_size, **kwargs)


def numpy_batches(batches):
    """The batches of a tf.data pipeline or a PyDataset, as NumPy tuples."""
    if hasattr(batches, "as_numpy_iterator"):
        yield from batches.as_numpy_iterator()
        return
    for index in range(len(batches)):
        yield keras.tree.map_structure(
            keras.ops.convert_to_numpy, tuple(batches[index])
        )


def add_data_arguments(parser):
    """`--manual-dir` and `--data-dir`: where MNIST is."""
    parser.add_argument(
        "--manual-dir",
        default=None,
        help="folder with the four original MNIST files (offline use)",
    )
    parser.add_argument("--data-dir", default=None, help="tfds data dir")


def add_run_arguments(
    parser, out_dir, epochs=3, batch_size=64, train_examples=0
):
    """The options every training example takes: schedule, data, output,
    seed and verbosity."""
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument(
        "--train-examples",
        type=int,
        default=train_examples,
        help="train on the first N training examples (0: all)",
    )
    parser.add_argument(
        "--test-examples",
        type=int,
        default=0,
        help="evaluate on the first N test examples (0: all 10,000)",
    )
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    add_data_arguments(parser)
    parser.add_argument("--out-dir", default=os.path.join("out", out_dir))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))


def parse_run_arguments(parser):
    """Parses and checks `add_run_arguments`' options; a bad count stops
    with a message naming the option."""
    args = parser.parse_args()
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("train_examples", "test_examples"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    return args


# MNIST's split sizes.
SPLIT_SIZES = {"train": 60000, "test": 10000}


def split(name, first):
    """The tfds split for the first `first` examples of MNIST's `name`
    split (0: all of it), and how many examples that is.

    >>> split("train", 512)
    ('train[:512]', 512)
    >>> split("test", 0)
    ('test', 10000)
    """
    size = SPLIT_SIZES[name]
    if not first:
        return name, size
    count = min(first, size)
    return f"{name}[:{count}]", count


def write_results(out_dir, record, markdown):
    """`results.json` and `results.md` in `out_dir`, each written
    atomically."""
    from keras_stn.experiments import results

    results.write_json(os.path.join(out_dir, "results.json"), record)
    results.write_text(os.path.join(out_dir, "results.md"), markdown)
