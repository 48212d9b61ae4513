"""Training runs of the paper's distorted-MNIST networks, with result files.

`train_run(data, model, transform, ...)` trains one network on one data set
and writes, in its run folder `<out_dir>/<data>-<model>[-<transform>]/`:
- `results.json`: the run's settings, per-epoch losses and test errors, the
  final test error, the parameter count and the time; rewritten atomically
  after every epoch (`status` is `"running"` until the last epoch is done);
- `results.md`: the same as a Markdown table beside the paper's number;
- `model.keras`: the trained model;
- `pictures/`: for spatial transformer networks, what the transformer does
  to fixed test digits at the start and after each epoch, and a GIF of it
  (`keras_stn.callbacks.TransformerSnapshots`, needs matplotlib);
- `backup/`: the last finished epoch's weights and optimizer state while the
  run is unfinished (`keras.callbacks.BackupAndRestore`), from which
  `resume=True` continues.

The test set doubles as the per-epoch validation data so that the curve of
test error is in the results; nothing is selected on it: the reported error
is the last epoch's.
"""

import math
import os
import shutil
import time

import keras

from keras_stn import models
from keras_stn.experiments import results
from keras_stn.utils import argument_validation
from keras_stn.ops import transforms

# name -> (distorted_mnist variant, input side)
DATASETS = {"r": ("R", 28), "rts": ("RTS", 42), "p": ("P", 28)}
DATASETS.update({"e": ("E", 28), "tc": ("TC", 60)})
MODELS = ("cnn", "st-cnn", "fcn", "st-fcn")
OPTIMIZERS = ("adam", "sgd")
_BUILDERS = {
    "cnn": models.cnn,
    "st-cnn": models.st_cnn,
    "fcn": models.fcn,
    "st-fcn": models.st_fcn,
}


def _choice(value, valid, name):
    """`value` lower-cased if it is one of `valid`, else a ValueError that
    lists them."""
    if not isinstance(value, str) or value.lower() not in valid:
        raise ValueError(
            f"`{name}` must be one of {', '.join(valid)}. Received: "
            f"{name}={value!r}"
        )
    return value.lower()


def _positive_float(value, name):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"`{name}` must be a positive float. Received: {name}={value!r}"
        )
    return float(value)


def check_transform(model, transform):
    """The transform a run uses: a registered family for ST networks, None
    for plain ones."""
    if not model.startswith("st-"):
        return None
    return _choice(transform, transforms.names(), "transform")


def run_name(data, model, transform=None):
    """`"rts-cnn"`, `"rts-st-cnn-affine"`: a run's folder name."""
    name = f"{data}-{model}"
    return f"{name}-{transform}" if transform else name


def build_model(model, data, transform="affine", num_classes=10):
    """The network of a run, for the input size of its data set.

    Args:
        model: one of `MODELS`.
        data: one of `DATASETS`.
        transform: a registered family (ST networks only).
        num_classes: int. Defaults to 10.
    Returns:
        A `keras.Model`, `(B, S, S, 1) -> (B, num_classes)` probabilities.
    """
    model = _choice(model, MODELS, "model")
    data = _choice(data, tuple(DATASETS), "data")
    transform = check_transform(model, transform)
    side = DATASETS[data][1]
    kwargs = {"transform": transform} if transform else {}
    return _BUILDERS[model]((side, side, 1), num_classes, **kwargs)


def make_datasets(
    data,
    batch_size,
    train_examples=None,
    seed=0,
    data_dir=None,
    manual_dir=None,
):
    """The training and test `tf.data.Dataset`s of a data set.

    Returns:
        `(train, test, num_train)`: batches of `(B, S, S, 1)` float32 images
        and `(B,)` int64 labels; `num_train` examples per epoch.
    """
    from keras_stn.experiments.data import distorted

    variant = DATASETS[_choice(data, tuple(DATASETS), "data")][0]
    split = "train" if train_examples is None else f"train[:{train_examples}]"
    common = {"data_dir": data_dir, "manual_dir": manual_dir}
    train = distorted.distorted_mnist(
        variant, split, batch_size, seed=seed, **common
    )
    test = distorted.distorted_mnist(variant, "test", 256, **common)
    return train, test, train_examples or 60000


def learning_rate_schedule(optimizer, learning_rate, total_steps):
    """The learning rate over a run of `total_steps` steps.

    Adam: cosine decay from `learning_rate` to 0. SGD: the paper's schedule
    scaled to the run, `learning_rate` divided by 10 after each third of the
    steps (the paper: 150k steps, / 10 every 50k).

    Returns:
        A `keras.optimizers.schedules.LearningRateSchedule`.
    """
    if optimizer == "sgd":
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [total_steps // 3 - 1, 2 * total_steps // 3 - 1],
            [learning_rate, learning_rate / 10, learning_rate / 100],
        )
    return keras.optimizers.schedules.CosineDecay(
        learning_rate, max(total_steps, 1)
    )


def make_optimizer(name, learning_rate, total_steps):
    """`keras.optimizers.Adam` or `SGD` (momentum 0.9) on
    `learning_rate_schedule`."""
    schedule = learning_rate_schedule(name, learning_rate, total_steps)
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9)
    return keras.optimizers.Adam(schedule)


class _ResultsWriter(keras.callbacks.Callback):
    """Rewrites `results.json` / `results.md` after every epoch."""

    def __init__(self, directory, record):
        super().__init__()
        self.directory = directory
        self.record = record
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter() - self.record.get("seconds", 0.0)
        self.write()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        epochs = [e for e in self.record["epochs"] if e["epoch"] <= epoch]
        epochs.append(
            {
                "epoch": epoch + 1,
                "loss": logs.get("loss"),
                "train_error": 1 - logs.get("accuracy", math.nan),
                "test_loss": logs.get("val_loss"),
                "test_error": 1 - logs.get("val_accuracy", math.nan),
            }
        )
        self.record["epochs"] = epochs
        self.record["test_error"] = epochs[-1]["test_error"]
        self.record["seconds"] = time.perf_counter() - self._start
        self.write()

    def write(self):
        results.write_json(
            os.path.join(self.directory, results.RESULTS_FILE), self.record
        )
        results.write_text(
            os.path.join(self.directory, "results.md"),
            results.markdown_table([self.record]),
        )


def _snapshots(model, test, directory, verbose):
    """A `TransformerSnapshots` callback on 8 fixed test digits, or None
    (with a note) when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if verbose:
            print(
                "pictures skipped: matplotlib is not installed "
                '(pip install "keras-stn[examples]")'
            )
        return None
    from keras_stn import callbacks

    images, labels = next(iter(test))
    return callbacks.TransformerSnapshots(
        images[:8].numpy(),
        os.path.join(directory, "pictures"),
        labels=labels[:8].numpy(),
    )


def train_run(
    data="rts",
    model="st-cnn",
    transform="affine",
    epochs=3,
    batch_size=128,
    optimizer="adam",
    learning_rate=None,
    out_dir="out/runs",
    resume=False,
    train_examples=None,
    seed=0,
    data_dir=None,
    manual_dir=None,
    pictures=True,
    callbacks=None,
    verbose=1,
):
    """Trains one network on one distorted MNIST set, writing result files.

    Args:
        data: one of `DATASETS` (`"r"`, `"rts"`, `"p"`, `"e"`, `"tc"`).
        model: one of `MODELS`.
        transform: the ST networks' family. Defaults to `"affine"`.
        epochs: int, passes over the training examples. Defaults to 3.
        batch_size: int. Defaults to 128.
        optimizer: `"adam"` (cosine decay to 0 over the run; default) or
            `"sgd"` (momentum 0.9, learning rate / 10 after each third of
            the steps: the paper's schedule scaled to the run).
        learning_rate: float; defaults to 1e-3 (Adam) or 0.01 (SGD).
        out_dir: str, the parent of the run folder.
        resume: bool, continue an unfinished run from its last finished
            epoch (a finished run is returned as it is). Without it an
            existing run folder is started afresh.
        train_examples: int or None, train on the first N training digits.
        seed: int, the training order's and distortions' seed.
        data_dir, manual_dir: where MNIST is (see `keras_stn.experiments.data.mnist`).
        pictures: bool, save what the transformer does (ST networks).
        callbacks: more Keras callbacks for `fit`, run after the package's.
        verbose: 0, 1 (progress bar) or 2 (a line per epoch).
    Returns:
        dict: the run's record (also in `results.json`); `test_error` is a
        fraction.
    Raises:
        ValueError: an unknown data set, model, transform or optimizer, or a
            bad number, naming the valid choices.
        FileNotFoundError: MNIST is not where it was looked for (the message
            gives the paths).
    """
    data = _choice(data, tuple(DATASETS), "data")
    model_name = _choice(model, MODELS, "model")
    transform = check_transform(model_name, transform)
    optimizer = _choice(optimizer, OPTIMIZERS, "optimizer")
    epochs = argument_validation.check_positive_int(epochs, "epochs")
    batch_size = argument_validation.check_positive_int(batch_size, "batch_size")
    if train_examples is not None:
        train_examples = argument_validation.check_positive_int(
            train_examples, "train_examples"
        )
    if learning_rate is None:
        learning_rate = 1e-3 if optimizer == "adam" else 0.01
    learning_rate = _positive_float(learning_rate, "learning_rate")

    directory = os.path.join(out_dir, run_name(data, model_name, transform))
    backup = os.path.join(directory, "backup")
    path = os.path.join(directory, results.RESULTS_FILE)
    previous = results.read_json(path) if resume else None
    if previous is not None and previous.get("status") == "complete":
        if verbose:
            print(f"{directory}: already complete, skipped")
        return previous
    if previous is None and os.path.exists(directory):
        shutil.rmtree(directory)

    train, test, num_train = make_datasets(
        data, batch_size, train_examples, seed, data_dir, manual_dir
    )
    steps = math.ceil(num_train / batch_size)
    network = build_model(model_name, data, transform or "affine")
    network.compile(
        optimizer=make_optimizer(optimizer, learning_rate, steps * epochs),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    record = previous or {"epochs": [], "seconds": 0.0}
    record.update(
        {
            "data": data,
            "model": model_name,
            "transform": transform,
            "params": int(network.count_params()),
            "schedule": {
                "epochs": epochs,
                "batch_size": batch_size,
                "optimizer": optimizer,
                "learning_rate": learning_rate,
                "train_examples": num_train,
                "seed": seed,
            },
            "paper_error": results.paper_error(model_name, transform, data),
            "status": "running",
        }
    )
    record.setdefault("test_error", None)
    writer = _ResultsWriter(directory, record)
    callback_list = [keras.callbacks.BackupAndRestore(backup), writer]
    if pictures and transform is not None:
        snapshots = _snapshots(network, test, directory, verbose)
        if snapshots is not None:
            callback_list.append(snapshots)
    callback_list += list(callbacks or [])
    if verbose:
        print(
            f"{run_name(data, model_name, transform)}: "
            f"{record['params']:,} parameters, {epochs} epoch"
            f"{'s' if epochs != 1 else ''} of "
            f"{num_train} examples, {optimizer} lr {learning_rate:g}"
        )
    network.fit(
        train,
        epochs=epochs,
        validation_data=test,
        callbacks=callback_list,
        shuffle=False,  # the pipeline shuffles
        verbose=verbose,
    )
    network.save(os.path.join(directory, "model.keras"))
    record["status"] = "complete"
    writer.write()
    if verbose:
        print(
            f"{run_name(data, model_name, transform)}: test error "
            f"{100 * record['test_error']:.2f}% ({directory})"
        )
    return record
