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
- `backup/epoch-<N>.keras`: the last finished epoch's weights and
  optimizer state while the run is unfinished, from which `resume=True`
  continues;
- `.manifest.json`: the files above, listed before each is written;
  `overwrite=True` and the removal of old backups delete those and nothing
  else.

Every file is written atomically (a temporary file, then a rename), in an
order that leaves a resumable run whenever the process is killed: at the end
of epoch N the backup of epoch N, then the results naming N finished
epochs, then the older backup is removed; at the end `model.keras`, then
the results marked complete, then the backup is removed. `results.json`
lists only epochs whose backup is in place. Epoch N's training batches are a
function of (seed, N) alone and `seed` also seeds the weights, so a run
resumed any number of times ends exactly where an uninterrupted one does.

A run folder is locked while a run uses it (`run_folder.RunLock`); a folder
that holds a run is continued with `resume=True` (under the Keras backend
that trained it, unless `allow_backend_change=True`), replaced with
`overwrite=True`, and otherwise left alone with an error. A name the
package writes there that is a symbolic link is refused, never followed.

The test set doubles as the per-epoch validation data so that the curve of
test error is in the results; nothing is selected on it: the reported error
is the last epoch's.
"""

import functools
import math
import os
import time
import uuid

import keras

from keras_stn import models
from keras_stn.experiments import results
from keras_stn.experiments import run_folder
from keras_stn.experiments import settings as constants
from keras_stn.ops import transforms
from keras_stn.utils import argument_validation

# name -> (distorted_mnist variant, input side)
DATASETS = {"r": ("R", 28), "rts": ("RTS", 42), "p": ("P", 28)}
DATASETS.update({"e": ("E", 28), "tc": ("TC", 60)})
MODELS = ("cnn", "st-cnn", "fcn", "st-fcn")
OPTIMIZERS = ("adam", "sgd")
MNIST_TRAIN_EXAMPLES = constants.MNIST_TRAIN_EXAMPLES
MAX_SEED = constants.MAX_SEED
BACKUP_DIR = run_folder.BACKUP_DIR
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


DATA_SOURCES = constants.DATA_SOURCES


def resolve_data_source(data_source="auto"):
    """`"tfds"` or `"pydataset"`: the adapter `data_source` means on this
    backend (the tf.data one needs TensorFlow; both serve the same batches).

    Raises:
        ValueError: an unknown source, or `"tfds"` on another backend than
            TensorFlow (its pipelines run the package's ops in tf.data).
    """
    _choice(data_source, DATA_SOURCES, "data_source")
    backend = keras.backend.backend()
    if data_source == "auto":
        return "tfds" if backend == "tensorflow" else "pydataset"
    if data_source == "tfds" and backend != "tensorflow":
        raise ValueError(
            "`data_source='tfds'` runs a tf.data pipeline, which needs the "
            "TensorFlow backend (KERAS_BACKEND=tensorflow); use 'pydataset' "
            f"or 'auto' on {backend!r}. Received: data_source='tfds'"
        )
    return data_source


def device_name():
    """The accelerator the backend computes on, or `"cpu"`."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            return "cpu" if device.platform == "cpu" else device.device_kind
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_name(0)
            return "cpu"
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_logical_devices("GPU")
            return gpus[0].name if gpus else "cpu"
    except (ImportError, RuntimeError):
        pass
    return "unknown"


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
    """The training and test data of a data set.

    Args:
        data: one of `DATASETS`.
        batch_size: int, the training batch size.
        train_examples: int in `[1, 60000]` or None (all), the first N
            training digits.
        seed: int, the training order's and distortions' seed.
        data_dir, manual_dir: where MNIST is.
        epochs: int or None. With an int, the training dataset holds the
            epochs `initial_epoch .. epochs - 1` one after another, each a
            function of `(seed, epoch)` (`batches`' numbered epochs):
            give `fit` `steps_per_epoch=ceil(num_train / batch_size)`.
            None: endless epochs from `initial_epoch`.
        initial_epoch: int, the first epoch held.
        data_source: `"auto"` (default), `"tfds"` or `"pydataset"`
            (`resolve_data_source`): the adapter; the batches are the same.
    Returns:
        `(train, test, num_train)`: `tf.data.Dataset`s or
        `keras.utils.PyDataset`s of batches of `(B, S, S, 1)` float32
        images and `(B,)` int64 labels; `num_train` examples per epoch.
    """
    variant = DATASETS[_choice(data, tuple(DATASETS), "data")][0]
    if train_examples is not None:
        train_examples = _check_train_examples(train_examples)
    split = "train" if train_examples is None else f"train[:{train_examples}]"
    adapter = resolve_data_source(data_source)
    from keras_stn.experiments.data import distorted

    common = {"data_dir": data_dir, "manual_dir": manual_dir}
    train = distorted.DistortedMNIST(
        variant,
        split,
        batch_size,
        seed=seed,
        epochs=epochs,
        initial_epoch=initial_epoch,
        **common,
    )
    test = distorted.DistortedMNIST(variant, "test", 256, **common)
    if adapter == "pydataset":
        from keras_stn.experiments.data import source

        adapt = source.PyDatasetSource
    else:
        from keras_stn.experiments.data import tfdata

        adapt = tfdata.dataset
    num_train = train_examples or MNIST_TRAIN_EXAMPLES
    return adapt(train), adapt(test), num_train


def _check_train_examples(value):
    return argument_validation.check_int_between(
        value,
        "train_examples",
        1,
        MNIST_TRAIN_EXAMPLES,
        "the first N of MNIST's training digits",
    )


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


def _backup_path(directory, epoch, suffix=".keras"):
    # Backups were `.weights.h5` files before: those are still read.
    return os.path.join(directory, BACKUP_DIR, f"epoch-{epoch:04d}{suffix}")


def _save_atomically(path, save, suffix):
    """`save(temporary)` on a file beside `path` whose name ends in `suffix`
    (Keras reads the format from it), then renames it onto `path`.

    Raises:
        OSError: the file could not be written (a full disk, say), in one
            line naming it.
    """
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(
        directory, f".{name}.{uuid.uuid4().hex}.tmp{suffix}"
    )
    try:
        save(temporary)
        os.replace(temporary, path)
    except OSError as error:
        reason = " ".join(str(error).split())
        raise OSError(
            error.errno,
            f"{path} could not be written ({reason}); the files of the "
            "epochs finished before are in place: make room and run the "
            "same command with --resume",
        ) from error
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _save_model(network, path):
    """Writes `network` (weights, optimizer state, config) to the `.keras`
    file `path`, atomically.

    A `.keras` file, not `save_weights`' `.weights.h5`: Keras writes the
    HDF5 part of a `.keras` file in memory and the file itself with Python's
    I/O (for networks below half the free memory: all of the paper's), so a
    full disk is an `OSError`. HDF5 writing a file on a full disk leaves
    h5py objects that crash the process when they are freed (a segfault,
    not an exception).
    """
    return _save_atomically(path, network.save, ".keras")


def _remove_backups(directory, manifest, keep=None):
    """Removes the backups the package wrote but `keep` (a path), and the
    `backup/` folder when nothing is kept and it is empty."""
    backup = os.path.join(directory, BACKUP_DIR)
    if os.path.isdir(backup):
        manifest.remove(
            *(
                os.path.join(backup, name)
                for name in os.listdir(backup)
                if run_folder.BACKUP_FILE.match(name)
                and os.path.join(backup, name) != keep
            )
        )
    if keep is None and os.path.isdir(backup):
        try:
            os.rmdir(backup)
        except OSError:  # it holds files the package did not write
            pass


class _RunRecorder(keras.callbacks.Callback):
    """Writes a run's backup and results after every epoch, in the order
    that keeps them resumable (see the module's docstring), listing each
    file in the run's manifest before it is written.

    Args:
        directory: str, the run folder.
        record: dict, the run's record (updated in place).
        manifest: the folder's `run_folder.Manifest`.
        snapshots: the run's `TransformerSnapshots` callback or None: its
            pictures are listed at the end of each epoch.
    """

    def __init__(self, directory, record, manifest, snapshots=None):
        super().__init__()
        self.directory = directory
        self.record = record
        self.manifest = manifest
        self.snapshots = snapshots
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter() - self.record.get("seconds", 0.0)
        self.write()

    def on_epoch_end(self, epoch, logs=None):
        self.list_pictures()
        backup = _backup_path(self.directory, epoch + 1)
        self.manifest.add(backup)
        _save_model(self.model, backup)
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
        _remove_backups(self.directory, self.manifest, keep=backup)

    def on_train_end(self, logs=None):
        self.list_pictures()

    def list_pictures(self):
        if self.snapshots is not None:
            self.manifest.add(
                *self.snapshots.paths, *self.snapshots.animation_paths
            )

    def write(self):
        self.manifest.add(
            os.path.join(self.directory, results.RESULTS_FILE),
            os.path.join(self.directory, run_folder.RESULTS_MARKDOWN),
        )
        write_record(self.directory, self.record)


def write_record(directory, record):
    """Writes `results.json` and `results.md` of a run, atomically."""
    results.write_json(os.path.join(directory, results.RESULTS_FILE), record)
    results.write_text(
        os.path.join(directory, run_folder.RESULTS_MARKDOWN),
        results.markdown_table([record]),
    )


def _restore(network, directory, record, manifest):
    """Loads the backup of the record's last finished epoch into the
    compiled `network` (weights and optimizer state), removes any other
    backup, and returns the number of finished epochs."""
    finished = [e.get("epoch") for e in record["epochs"]]
    path = os.path.join(directory, results.RESULTS_FILE)
    if finished != list(range(1, len(finished) + 1)):
        raise ValueError(
            f"{path} is damaged: its epochs must be numbered 1, 2, ... "
            f"Received: epochs {finished}. Start the run afresh with "
            "--overwrite."
        )
    if not finished:
        _remove_backups(directory, manifest)
        return 0
    backup = _backup_path(directory, len(finished))
    if not os.path.exists(backup):
        legacy = _backup_path(directory, len(finished), ".weights.h5")
        backup = legacy if os.path.exists(legacy) else backup
    if not os.path.exists(backup):
        raise FileNotFoundError(
            f"{path} lists {len(finished)} finished epochs, but their backup "
            f"{backup} is missing: the run cannot be resumed. Start it "
            "afresh with --overwrite."
        )
    network.optimizer.build(network.trainable_variables)
    network.load_weights(backup)
    _remove_backups(directory, manifest, keep=backup)
    return len(finished)


_RUN_KEYS = ("data", "model", "transform")
_SCHEDULE_KEYS = (
    "epochs",
    "batch_size",
    "optimizer",
    "learning_rate",
    "train_examples",
    "seed",
)


def run_settings(
    data="rts",
    model="st-cnn",
    transform="affine",
    epochs=3,
    batch_size=128,
    optimizer="adam",
    learning_rate=None,
    train_examples=None,
    seed=0,
    data_source="auto",
):
    """A run's settings, checked and with the defaults filled in, as its
    `results.json` records them (see `train_run` for the arguments).

    Returns:
        dict with `data`, `model`, `transform` (None for plain networks),
        `epochs`, `batch_size`, `optimizer`, `learning_rate`,
        `train_examples` (60000 for None) and `seed`. `data_source` is
        checked but not returned: both adapters serve the same batches, so
        it is not part of a run's identity.
    Raises:
        ValueError: naming the first bad argument.
    """
    model = _choice(model, MODELS, "model")
    optimizer = _choice(optimizer, OPTIMIZERS, "optimizer")
    if learning_rate is None:
        learning_rate = 1e-3 if optimizer == "adam" else 0.01
    checked = {
        "data": _choice(data, tuple(DATASETS), "data"),
        "model": model,
        "transform": check_transform(model, transform),
        "epochs": argument_validation.check_positive_int(epochs, "epochs"),
        "batch_size": argument_validation.check_positive_int(
            batch_size, "batch_size"
        ),
        "optimizer": optimizer,
        "learning_rate": constants.positive_float(
            learning_rate, "learning_rate"
        ),
        "train_examples": MNIST_TRAIN_EXAMPLES
        if train_examples is None
        else _check_train_examples(train_examples),
        "seed": argument_validation.check_int_between(
            seed, "seed", 0, MAX_SEED
        ),
    }
    resolve_data_source(data_source)
    return checked


def _data_stream(record):
    """The random streams a run's batches were drawn from: recorded since
    stream 1; before, `"pydataset"` runs drew stream 1's batches already
    (the one data stack kept their definition), tf.data runs (`"tfds"`,
    or no `data_source` recorded) others, stream 0."""
    if "data_stream" in record:
        return record["data_stream"]
    return 1 if record.get("data_source") == "pydataset" else 0


class RunExistsError(FileExistsError):
    """The run folder holds a run, and neither `resume` nor `overwrite`
    was asked for."""


def check_run_folder(
    directory,
    settings,
    resume=False,
    overwrite=False,
    allow_backend_change=False,
):
    """What may be done with a run folder, read-only.

    Args:
        directory: str, the run folder.
        settings: dict of the run's settings (`run_settings`).
        resume: bool, continue a run there.
        overwrite: bool, replace a run there.
        allow_backend_change: bool, with `resume`, continue a run that
            another Keras backend trained.
    Returns:
        The run's record to resume from, or None to start afresh.
    Raises:
        RunExistsError: the folder holds a run, without `resume` or
            `overwrite`.
        ValueError: a name the package writes in the folder is a symbolic
            link (`keras_stn.utils.files.LinkError`, naming it; with
            `overwrite`, the folder itself too); with `resume`, the run's
            settings or backend differ (the message names them), an
            unfinished run was drawn from another data stream
            (`settings.DATA_STREAM`), or its `results.json` is damaged.
    """
    run_folder.check_links(directory, folder=overwrite)
    if overwrite:
        return None
    record = run_folder.existing_run(directory)
    if record is None:
        return None
    path = os.path.join(directory, results.RESULTS_FILE)
    if not resume:
        finished = record.get("status") == "complete"
        raise RunExistsError(
            f"{directory} holds {run_folder.describe(record)}; "
            "nothing was changed. Pass --resume (`resume=True`) to "
            + ("keep it" if finished else "continue it")
            + ", --overwrite (`overwrite=True`) to delete it and train "
            "afresh, or choose another --out-dir."
        )
    if not record:
        raise FileNotFoundError(
            f"{directory} holds a model.keras but no {results.RESULTS_FILE}: "
            "there is no run to resume. Start it afresh with --overwrite."
        )
    run_folder.check_settings(record, settings, path)
    stream = _data_stream(record)
    if record.get("status") != "complete" and stream != constants.DATA_STREAM:
        raise ValueError(
            f"{directory} holds an unfinished run drawn from another data "
            f"stack (data stream {stream}, data_source="
            f"{record.get('data_source', 'tfds')!r}; this version draws "
            f"stream {constants.DATA_STREAM}): its remaining epochs cannot "
            "be drawn as it started them, so it is not resumed; nothing was "
            "changed. Pass --overwrite (`overwrite=True`) to train it "
            "afresh, or use another --out-dir."
        )
    if record.get("status") != "complete":
        run_folder.check_backend(
            record, keras.backend.backend(), allow_backend_change, path
        )
    return record


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
        keras.ops.convert_to_numpy(images)[:8],
        os.path.join(directory, "pictures"),
        labels=keras.ops.convert_to_numpy(labels)[:8],
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
    overwrite=False,
    train_examples=None,
    seed=0,
    data_dir=None,
    manual_dir=None,
    pictures=True,
    callbacks=None,
    verbose=1,
    data_source="auto",
    allow_backend_change=False,
):
    """Trains one network on one distorted MNIST set, writing result files.

    Everything is checked (arguments, `out_dir`, the run folder, MNIST)
    before anything is written; the run folder is locked while training.

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
            epoch, with the same settings (a finished run is returned as it
            is).
        overwrite: bool, delete a run already in the run folder and train
            afresh. Without `resume` or `overwrite`, a run folder holding a
            run is an error and is left as it is.
        train_examples: int in `[1, 60000]` or None (all), train on the
            first N training digits.
        seed: int in `[0, 2**32 - 1]`, seeds the weights (through
            `keras.utils.set_random_seed`, which seeds this process'
            Python, NumPy and backend generators), the training order and
            the distortions. Defaults to 0.
        data_dir, manual_dir: where MNIST is (see
            `keras_stn.experiments.data.mnist`).
        pictures: bool, save what the transformer does (ST networks).
        callbacks: more Keras callbacks for `fit`, run after the package's.
        verbose: 0, 1 (progress bar) or 2 (a line per epoch).
        data_source: `"auto"` (default: tf.data pipelines on TensorFlow,
            else the TensorFlow-free `keras.utils.PyDataset`s), `"tfds"` or
            `"pydataset"`: the adapter, recorded but not part of the run's
            settings (both serve the same batches), so a run may resume on
            the other. The run records `data_stream`, the version of the
            random streams: an unfinished run of another stream is not
            resumed.
        allow_backend_change: bool, with `resume`, continue a run that
            another Keras backend trained (the record's `backends` then
            lists them in order); without it that is an error, since the
            backends' numbers differ in the last bits.
    Returns:
        dict: the run's record (also in `results.json`); `test_error` is a
        fraction; `backend`, `device` and `data_source` say what ran it.
    Raises:
        ValueError: an unknown data set, model, transform or optimizer, a
            bad number, an `out_dir` that is not a writable folder, a
            damaged `results.json`, a symbolic link where the run folder
            is written, or (with `resume`) settings or a backend that
            differ from the run's, naming what is wrong.
        RunExistsError: the run folder holds a run, without `resume` or
            `overwrite`.
        run_folder.RunInUseError: another process is training in the run
            folder.
        FileNotFoundError: MNIST is not where it was looked for (the message
            gives the paths), or a resumed run's backup is missing.
    """
    settings = run_settings(
        data,
        model,
        transform,
        epochs,
        batch_size,
        optimizer,
        learning_rate,
        train_examples,
        seed,
        data_source,
    )
    data_source = resolve_data_source(data_source)
    if train_examples is not None:
        train_examples = settings["train_examples"]
    resume, overwrite, allow_backend_change = _check_flags(
        resume, overwrite, allow_backend_change
    )
    out_dir = argument_validation.check_writable_folder(out_dir, "out_dir")
    directory = os.path.join(out_dir, _name(settings))
    check_folder = functools.partial(
        check_run_folder,
        directory,
        settings,
        resume,
        overwrite,
        allow_backend_change,
    )
    previous = check_folder()
    if _is_complete(previous, directory, verbose):
        return previous

    # The network and the data (this checks MNIST) before any file is
    # written.
    network = _compiled_network(settings)
    initial_epoch = len(previous["epochs"]) if previous else 0
    train, test = run_datasets(
        settings, train_examples, data_dir, manual_dir, initial_epoch,
        data_source,
    )
    with run_folder.RunLock(directory):
        # Again under the lock: another process may have changed the folder.
        previous = check_folder()
        if overwrite:
            run_folder.clear(directory)
        manifest = run_folder.Manifest(directory)
        if _is_complete(previous, directory, verbose):
            _remove_backups(directory, manifest)
            return previous
        run_folder.remove_temporaries(directory)
        record = _running_record(previous, settings, network, data_source)
        restored = _restore(network, directory, record, manifest)
        if restored != initial_epoch:
            # Another process trained here between the two checks: the
            # training data starts at another epoch.
            initial_epoch = restored
            train, test = run_datasets(
                settings, train_examples, data_dir, manual_dir, initial_epoch,
                data_source,
            )
        snapshots = None
        if pictures and settings["transform"] is not None:
            snapshots = _snapshots(network, test, directory, verbose)
        # Pictures before the recorder: results name only epochs whose
        # files are all in place.
        recorder = _RunRecorder(directory, record, manifest, snapshots)
        callback_list = [snapshots] if snapshots is not None else []
        callback_list += [recorder, *(callbacks or [])]
        if verbose:
            print(_announcement(record, settings, initial_epoch))
        if initial_epoch < settings["epochs"]:
            network.fit(
                train,
                epochs=settings["epochs"],
                initial_epoch=initial_epoch,
                steps_per_epoch=_steps_per_epoch(settings),
                validation_data=test,
                callbacks=callback_list,
                shuffle=False,  # the pipeline shuffles
                verbose=verbose,
            )
        _finish(network, directory, record, manifest, recorder)
    if verbose:
        print(
            f"{_name(settings)}: test error "
            f"{100 * record['test_error']:.2f}% ({directory})"
        )
    return record


def _check_flags(resume, overwrite, allow_backend_change):
    """`resume`, `overwrite`, `allow_backend_change` checked as bools, at
    most one of the first two."""
    resume = argument_validation.check_bool(resume, "resume")
    overwrite = argument_validation.check_bool(overwrite, "overwrite")
    allow_backend_change = argument_validation.check_bool(
        allow_backend_change, "allow_backend_change"
    )
    if resume and overwrite:
        raise ValueError(
            "`resume` continues the run in the folder and `overwrite` "
            "deletes it: pass at most one. Received: resume=True, "
            "overwrite=True"
        )
    return resume, overwrite, allow_backend_change


def _name(settings):
    return run_name(settings["data"], settings["model"], settings["transform"])


def _is_complete(record, directory, verbose):
    """Whether `record` is a finished run (said when `verbose`)."""
    if record is None or record.get("status") != "complete":
        return False
    if verbose:
        print(f"{directory}: already complete, skipped")
    return True


def _steps_per_epoch(settings):
    return math.ceil(settings["train_examples"] / settings["batch_size"])


def _compiled_network(settings):
    """The run's network, compiled, its initial weights a function of the
    seed (`keras.utils.set_random_seed` seeds Python, NumPy and the
    backend)."""
    keras.utils.set_random_seed(settings["seed"])
    network = build_model(
        settings["model"], settings["data"], settings["transform"] or "affine"
    )
    total_steps = _steps_per_epoch(settings) * settings["epochs"]
    network.compile(
        optimizer=make_optimizer(
            settings["optimizer"], settings["learning_rate"], total_steps
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return network


def run_datasets(
    settings,
    train_examples=None,
    data_dir=None,
    manual_dir=None,
    initial_epoch=0,
    data_source="auto",
):
    """The one place a run builds its data: the training epochs
    `initial_epoch .. epochs - 1` and the test set of its settings.

    Args:
        settings: dict, the run's settings (`run_settings`).
        train_examples: int or None, as given to `train_run` (None: the
            whole training split, named so).
        data_dir, manual_dir: where MNIST is.
        initial_epoch: int, the first epoch to train.
        data_source: the adapter (`resolve_data_source`); the batches are
            the same.
    Returns:
        `(train, test)` as `make_datasets` builds them.
    """
    train, test, _ = make_datasets(
        settings["data"],
        settings["batch_size"],
        train_examples,
        settings["seed"],
        data_dir,
        manual_dir,
        epochs=settings["epochs"],
        initial_epoch=initial_epoch,
        data_source=data_source,
    )
    return train, test


def _running_record(previous, settings, network, data_source):
    """The record of a run starting or resuming in this process: the
    previous record (epochs, times) with this process' settings, data
    adapter and stream, backend and device, and the backends so far when
    they changed."""
    record = previous or {"epochs": [], "seconds": 0.0}
    backend = keras.backend.backend()
    backends = run_folder.run_backends(record)
    if backends and backends[-1] != backend:
        record["backends"] = backends + [backend]
    model, transform, data = (
        settings[k] for k in ("model", "transform", "data")
    )
    record.update(
        {
            "data": data,
            "model": model,
            "transform": transform,
            "params": int(network.count_params()),
            "schedule": {key: settings[key] for key in _SCHEDULE_KEYS},
            "paper_error": results.paper_error(model, transform, data),
            "data_source": data_source,
            "data_stream": constants.DATA_STREAM,
            "backend": backend,
            "device": device_name(),
            "status": "running",
        }
    )
    record.setdefault("test_error", None)
    return record


def _announcement(record, settings, initial_epoch):
    """`"r-cnn: 1,234 parameters, 3 epochs of 60000 examples, ..."`."""
    epochs = settings["epochs"]
    return (
        f"{_name(settings)}: {record['params']:,} parameters, {epochs} epoch"
        f"{'s' if epochs != 1 else ''} of {settings['train_examples']} "
        f"examples, {settings['optimizer']} lr {settings['learning_rate']:g}"
        + (f", resumed after epoch {initial_epoch}" if initial_epoch else "")
    )


def _finish(network, directory, record, manifest, recorder):
    """`model.keras`, then the results marked complete, then no backup.
    Killed before the results, the run resumes from the last epoch's backup
    and writes these again."""
    model_path = os.path.join(directory, run_folder.MODEL_FILE)
    manifest.add(model_path)
    _save_model(network, model_path)
    record["status"] = "complete"
    recorder.write()
    _remove_backups(directory, manifest)
