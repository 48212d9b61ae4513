"""Benchmarks the TensorFlow-free sources against what ST-CNN training eats.

Measures, on the current Keras backend (`KERAS_BACKEND`), examples per
second of each `keras_stn.experiments.data` set through its PyDataset
adapter (`source.PyDatasetSource`; training split, fresh distortions every
epoch, batch 128, the warp on the backend's device) and, for reference:

- `ST-CNN train_on_batch`: what one ST-CNN training step consumes, on an
  in-memory 42x42 batch (`keras_stn.models.st_cnn`, Adam, Keras' default
  compilation): a source slower than this makes training input-bound;
- `ST-CNN fit <- RTS (tensors)`, `... (NumPy)` and `... <- memory`:
  `model.fit` fed by the RTS source returning backend tensors, returning
  NumPy arrays (`return_numpy=True`), and by one cached batch: the cost of
  producing the data while training, and which output form `fit` prefers.

Each source is built and warmed up (JAX's compilation, the first batches)
outside the timed region; then `--repeats` rounds of `--batches` batches,
each round ended by reading one pixel back (the device has finished).
Rates are medians over rounds with the interquartile range. The last lines
give each source's rate over the training step's.

Run from the repository root, on a quiet machine:

    KERAS_BACKEND=jax python benchmarks/source_benchmark.py \\
        --manual-dir ../shared/data/mnist
    python benchmarks/source_benchmark.py --sets RTS,TC --repeats 9
"""

import argparse
import importlib.util
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a script, `benchmarks/` is on sys.path; the package sits above it.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("keras_stn") is None:
    sys.path.insert(1, _ROOT)

import _device  # noqa: E402
import _subsets  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_stn import models  # noqa: E402
from keras_stn.experiments.data import distorted  # noqa: E402
from keras_stn.experiments.data import source  # noqa: E402
from keras_stn.experiments.data import two_digit  # noqa: E402

SETS = ("R", "RTS", "P", "E", "TC", "addition", "canvas")
LABELS = {"addition": "MNISTAddition", "canvas": "TwoDigitCanvas"}
DEFAULT_MANUAL_DIR = os.path.join(_ROOT, "..", "shared", "data", "mnist")


def make_source(name, args, **kwargs):
    """Set `name` through the PyDataset adapter: training, endless,
    constant batch shape; `kwargs` go to the adapter."""
    common = dict(
        split="train",
        batch_size=args.batch_size,
        manual_dir=args.manual_dir,
        seed=0,
        drop_remainder=True,
    )
    if name == "addition":
        batches = two_digit.MNISTAddition(**common)
    elif name == "canvas":
        batches = two_digit.TwoDigitCanvas(**common)
    else:
        batches = distorted.DistortedMNIST(name, **common)
    return source.PyDatasetSource(batches, **kwargs)


def summary(rates):
    """`(median, q1, q3)` of a list of rates."""
    q1, median, q3 = np.percentile(rates, [25, 50, 75])
    return median, q1, q3


def synchronise(images):
    """Waits for the device: reads one pixel of the last batch back."""
    np.asarray(ops.convert_to_numpy(images[:1, :1, :1]))


def time_source(data, args):
    """Examples per second of consecutive items of a source, per round."""
    index = 0
    for _ in range(args.warmup):
        images = data[index][0]
        index += 1
    synchronise(images)
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.batches):
            images = data[index][0]
            index += 1
        synchronise(images)
        elapsed = time.perf_counter() - start
        rates.append(args.batches * args.batch_size / elapsed)
    return rates


def st_cnn():
    """The paper's ST-CNN (the package's builder) on 42x42 inputs."""
    model = models.st_cnn((42, 42, 1))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def time_train_step(args):
    """Examples per second of `train_on_batch` on an in-memory batch."""
    model = st_cnn()
    rng = np.random.default_rng(0)
    images = rng.random((args.batch_size, 42, 42, 1), dtype=np.float32)
    labels = rng.integers(0, 10, args.batch_size)
    images, labels = (
        ops.convert_to_tensor(images),
        ops.convert_to_tensor(labels),
    )
    for _ in range(args.warmup):
        model.train_on_batch(images, labels)
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = model.train_on_batch(images, labels)
        float(np.asarray(loss))  # synchronise
        elapsed = time.perf_counter() - start
        rates.append(args.steps * args.batch_size / elapsed)
    return rates, model


class Cached(keras.utils.PyDataset):
    """One batch served endlessly: `fit` without producing data."""

    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    @property
    def num_batches(self):
        return None

    def __getitem__(self, index):
        return self.batch


def time_fits(model, feeds, args):
    """Examples per second of `model.fit` on each feed: `--steps` steps per
    round, rounds interleaved across feeds so that drift affects them alike
    (the first round warms up)."""
    rates = {name: [] for name in feeds}
    for round_ in range(args.repeats + 1):
        for name, feed in feeds.items():
            start = time.perf_counter()
            model.fit(
                feed,
                steps_per_epoch=args.steps,
                epochs=1,
                verbose=0,
                shuffle=False,
            )
            if round_:
                elapsed = time.perf_counter() - start
                rates[name].append(args.steps * args.batch_size / elapsed)
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--manual-dir",
        default=os.environ.get("KERAS_STN_MNIST_DIR") or DEFAULT_MANUAL_DIR,
        help="the folder of the four original MNIST files (default: "
        "$KERAS_STN_MNIST_DIR, else ../shared/data/mnist)",
    )
    _subsets.add_subset_argument(parser, "--sets", SETS)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=40, help="per round")
    parser.add_argument("--steps", type=int, default=20, help="per round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-fit", action="store_true")
    args = parser.parse_args()
    sets = _subsets.parse_subset(parser, args.sets, SETS, "sets")

    print(_device.header())
    print(
        f"batch {args.batch_size}; {args.repeats} rounds of {args.batches} "
        f"batches ({args.steps} steps for the model), after {args.warmup}"
    )
    rows = []
    for name in sets:
        label = LABELS.get(name, f"DistortedMNIST {name}")
        rates = time_source(make_source(name, args), args)
        rows.append((label, summary(rates)))
    step_rates, model = time_train_step(args)
    step = summary(step_rates)
    rows.append(("ST-CNN train_on_batch", step))
    if not args.no_fit:
        tensors = make_source("RTS", args)
        feeds = {
            "ST-CNN fit <- RTS (tensors)": tensors,
            "ST-CNN fit <- RTS (NumPy)": make_source(
                "RTS", args, return_numpy=True
            ),
            "ST-CNN fit <- memory": Cached(tensors[0]),
        }
        fits = time_fits(model, feeds, args)
        rows.extend((name, summary(rates)) for name, rates in fits.items())

    width = max(len(label) for label, _ in rows)
    print(f"{'source':<{width}}  {'examples/s':>11}  {'IQR':>17}")
    for label, (median, q1, q3) in rows:
        spread = f"{q1:,.0f} - {q3:,.0f}"
        print(f"{label:<{width}}  {median:>11,.0f}  {spread:>17}")
    for label, (median, _, _) in rows[: len(sets)]:
        ratio = median / step[0]
        verdict = "not input-bound" if ratio >= 1 else "INPUT-BOUND"
        print(f"{label} / ST-CNN step: {ratio:.2f}x ({verdict})")


if __name__ == "__main__":
    main()
