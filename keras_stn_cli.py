"""The `keras-stn` command: train, tabulate, and look at spatial transformers.

This module parses the command line and nothing more: it is top-level, not
inside `keras_stn`, because importing the package imports Keras and its
backend (seconds), while `--help` and argument errors should answer at once.
What each command does is `keras_stn.experiments.commands`.

    keras-stn train --data rts --model st-cnn --transform affine --epochs 3
    keras-stn table --data rts --models cnn st-cnn --epochs 3
    keras-stn samples --data rts
    keras-stn show --run out/table/rts-st-cnn-affine

`keras-stn <command> --help` lists every option. Online, MNIST is
downloaded once to `~/.keras/datasets/mnist`; offline, point `--manual-dir`
(or `$KERAS_STN_MNIST_DIR`) at the four original MNIST files.
"""

import argparse
import importlib.util
import os
import sys


def _load_settings():
    """`keras_stn.experiments.settings`, loaded from its file: importing it
    as a module would import the package, Keras and a backend (seconds)
    for `--help`. The settings module imports only the standard library."""
    package = importlib.util.find_spec("keras_stn")
    if package is None or not package.submodule_search_locations:
        import keras_stn.experiments.settings as settings  # a clear error

        return settings
    path = os.path.join(
        package.submodule_search_locations[0], "experiments", "settings.py"
    )
    spec = importlib.util.spec_from_file_location("_keras_stn_settings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SETTINGS = _load_settings()

# Spelled out, not read from the registries, so that `--help` and argument
# errors come without importing Keras; tests/experiments/cli_test.py checks
# them against `training.DATASETS`, `training.MODELS` and
# `transforms.names()`.
DATA = ("r", "rts", "p", "e", "tc")
MODELS = ("cnn", "st-cnn", "fcn", "st-fcn")
DATA_SOURCES = _SETTINGS.DATA_SOURCES
TRANSFORMS = (
    "translation",
    "rigid",
    "similarity",
    "attention",
    "affine",
    "projective",
    "tps",
)


# Valid ranges, checked while parsing so that a wrong number is named at
# once; `keras_stn.experiments` checks the same for its Python callers.
MNIST_TRAIN_EXAMPLES = _SETTINGS.MNIST_TRAIN_EXAMPLES
MNIST_TEST_EXAMPLES = _SETTINGS.MNIST_TEST_EXAMPLES
MAX_PICTURE_EXAMPLES = _SETTINGS.MAX_PICTURE_EXAMPLES
MAX_SEED = _SETTINGS.MAX_SEED


def _int_between(minimum, maximum=None, what=None):
    """An argparse `type`: an int in `[minimum, maximum]`."""
    if maximum is None:
        form = f"an int >= {minimum}"
    else:
        form = f"an int from {minimum} to {maximum}"
    if what:
        form += f" ({what})"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if (
            value is None
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            raise argparse.ArgumentTypeError(
                f"must be {form}. Received: {text!r}"
            )
        return value

    return parse


def _positive_float(text):
    """An argparse `type`: a finite float > 0 (`settings.positive_float`)."""
    try:
        return _SETTINGS.positive_float(text, "value")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a finite number > 0. Received: {text!r}"
        ) from None


def _add_training(parser):
    group = parser.add_argument_group("training")
    group.add_argument(
        "--data-source",
        type=str.lower,
        choices=DATA_SOURCES,
        default="auto",
        help="how the batches are served (the same batches either way): "
        "tfds: a tf.data pipeline (TensorFlow backend); pydataset: a "
        "keras.utils.PyDataset (any backend, no TensorFlow); auto "
        "(default): tfds on TensorFlow, else pydataset",
    )
    group.add_argument(
        "--epochs", type=_int_between(1), default=3, help="default 3"
    )
    group.add_argument(
        "--batch-size", type=_int_between(1), default=128, help="default 128"
    )
    group.add_argument(
        "--optimizer",
        type=str.lower,
        choices=("adam", "sgd"),
        default="adam",
        help="adam (default: Adam, cosine decay to 0) or sgd (the paper's: "
        "momentum 0.9, the rate / 10 after each third of the steps)",
    )
    group.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=None,
        help="default 1e-3 (adam, cosine decay) or 0.01 (sgd)",
    )
    group.add_argument(
        "--train-examples",
        type=_int_between(1, MNIST_TRAIN_EXAMPLES, "MNIST's training digits"),
        default=None,
        help=f"train on the first N of the {MNIST_TRAIN_EXAMPLES} training "
        "digits",
    )
    group.add_argument(
        "--seed",
        type=_int_between(0, MAX_SEED),
        default=0,
        help="seeds the weights, the training order and the distortions "
        "(default 0)",
    )
    existing = group.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume",
        action="store_true",
        help="continue unfinished runs from their last finished epoch (with "
        "the same settings) and skip finished ones",
    )
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="delete runs already in the output folder (the files keras-stn "
        "wrote there) and train afresh (without --resume or --overwrite, an "
        "existing run is an error)",
    )
    group.add_argument(
        "--allow-backend-change",
        action="store_true",
        help="with --resume, continue runs that another Keras backend "
        "trained (their results then list both backends); refused otherwise",
    )
    group.add_argument(
        "--no-pictures",
        dest="pictures",
        action="store_false",
        help="do not save what the transformers do",
    )
    group.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="0: silent, 1: progress bars (default), 2: a line per epoch",
    )
    _add_data_dirs(parser)


def _add_data_dirs(parser):
    group = parser.add_argument_group("data")
    group.add_argument(
        "--manual-dir",
        default=None,
        help="folder with the four original MNIST files, for offline use "
        "(default $KERAS_STN_MNIST_DIR; without either, the files are "
        "downloaded once to $KERAS_HOME/datasets/mnist, by default "
        "~/.keras/datasets/mnist)",
    )
    group.add_argument(
        "--data-dir",
        default=None,
        help="tensorflow-datasets' data folder (CUB; MNIST files in its "
        "downloads/manual are used too)",
    )


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-stn",
        description="Spatial Transformer Networks on distorted MNIST "
        "(Jaderberg et al., 2015).",
    )
    parser.add_argument(
        "--verbose-backend",
        action="store_true",
        help="show the backend's start-up log lines (TensorFlow's are "
        "hidden by default)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one network")
    train.add_argument(
        "--data",
        type=str.lower,
        choices=DATA,
        default="rts",
        help="the distorted MNIST set (default rts)",
    )
    train.add_argument(
        "--model",
        type=str.lower,
        choices=MODELS,
        default="st-cnn",
        help="the paper's network (default st-cnn)",
    )
    train.add_argument(
        "--transform",
        type=str.lower,
        choices=TRANSFORMS,
        default="affine",
        help="the ST networks' transform family (default affine)",
    )
    train.add_argument(
        "--out-dir",
        default="out/runs",
        help="where the run folder is written (default out/runs)",
    )
    _add_training(train)

    table = commands.add_parser(
        "table", help="the Table 1 grid: models x transforms x data sets"
    )
    table.add_argument(
        "--data",
        type=str.lower,
        choices=DATA,
        nargs="+",
        default=list(DATA),
        help="the data sets (default: all)",
    )
    table.add_argument(
        "--models",
        type=str.lower,
        choices=MODELS,
        nargs="+",
        default=MODELS,
        help="the networks (default: all)",
    )
    table.add_argument(
        "--transforms",
        type=str.lower,
        choices=TRANSFORMS,
        nargs="+",
        default=["affine", "projective", "tps"],
        help="ST-CNN's transforms (default affine projective tps)",
    )
    table.add_argument(
        "--fcn-transforms",
        type=str.lower,
        choices=TRANSFORMS,
        nargs="+",
        default=["affine"],
        help="ST-FCN's transforms (default affine)",
    )
    table.add_argument(
        "--out-dir",
        default="out/table",
        help="where the run folders and the table go (default out/table)",
    )
    _add_training(table)

    samples = commands.add_parser("samples", help="pictures of a data set")
    samples.add_argument(
        "--data",
        type=str.lower,
        choices=DATA,
        nargs="+",
        default=list(DATA),
        help="the data sets (default: all)",
    )
    samples.add_argument(
        "--split", default="test", help="a tfds split (default test)"
    )
    samples.add_argument(
        "--count",
        type=_int_between(1, MAX_PICTURE_EXAMPLES),
        default=16,
        help="digits per data set (default 16)",
    )
    samples.add_argument(
        "--seed", type=int, default=0, help="the distortions' seed (default 0)"
    )
    samples.add_argument(
        "--out-dir",
        default="out/samples",
        help="where the PNGs go (default out/samples)",
    )
    _add_data_dirs(samples)

    show = commands.add_parser(
        "show", help="what a trained network's transformers do to test digits"
    )
    source = show.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a run folder (train/table output)")
    source.add_argument("--model", help="a .keras file")
    show.add_argument(
        "--data",
        type=str.lower,
        choices=DATA,
        default=None,
        help="the data set (default: the run's)",
    )
    show.add_argument(
        "--count",
        type=_int_between(1, MAX_PICTURE_EXAMPLES),
        default=8,
        help="test digits in the picture (default 8)",
    )
    show.add_argument(
        "--seed", type=int, default=0, help="the digits' seed (default 0)"
    )
    show.add_argument(
        "--out", default=None, help="PNG path (default <run>/pictures/show.png)"
    )
    _add_data_dirs(show)

    invariance = commands.add_parser(
        "invariance",
        help="test accuracy as rotation / scale / translation grows",
    )
    invariance.add_argument(
        "--runs",
        nargs="+",
        required=True,
        help="run folders of networks trained on RTS (42x42)",
    )
    invariance.add_argument(
        "--examples",
        type=_int_between(1, MNIST_TEST_EXAMPLES, "MNIST's test digits"),
        default=2000,
        help="test digits per point (default 2000)",
    )
    invariance.add_argument(
        "--out", default=None, help="PNG path (a .json is written beside it)"
    )
    _add_data_dirs(invariance)
    return parser


def _import_backend_quietly():
    """Imports keras_stn (and so Keras and its backend) with the process's
    stderr closed.

    TensorFlow writes its start-up lines (oneDNN, CUDA drivers, absl's
    preamble) from C++ straight to file descriptor 2, before its log level
    is read, so `TF_CPP_MIN_LOG_LEVEL` alone does not hide them. An import
    error still surfaces: Python raises it after stderr is back.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras_stn  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv=None):
    """Runs `keras-stn`; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if not args.verbose_backend:
            _import_backend_quietly()
        from keras_stn.experiments import commands
    except ImportError as error:
        # Keras' configured backend not installed: keras_stn's message
        # names KERAS_BACKEND, the installed backends and the extra, in a
        # few lines rather than a traceback.
        print(f"keras-stn: error: {error}", file=sys.stderr)
        return 2

    try:
        commands.COMMANDS[args.command](args)
    except commands.USER_ERRORS as error:
        print(f"keras-stn {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the result files hold the finished epochs; "
            "run the same command with --resume to continue",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
