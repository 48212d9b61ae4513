"""What each `keras-stn` command does, once `keras_stn_cli` has parsed it.

The argument parser lives in the top-level module `keras_stn_cli`, which
imports nothing heavy, so that `keras-stn --help` and argument errors answer
at once; this module imports Keras (and a backend) when a command runs.

Each command checks its arguments and where it will write before it loads
data or trains; what a user can get wrong ends in one of `USER_ERRORS`,
which `keras-stn` prints as one line instead of a traceback.
"""

import os
import re

from keras_stn.experiments import run_folder
from keras_stn.experiments import settings
from keras_stn.utils import argument_validation

# Errors that describe a wrong argument, file or folder: the command prints
# them and exits with status 2. Anything else is a bug, with its traceback.
USER_ERRORS = (ValueError, OSError, ImportError, run_folder.RunInUseError)
MAX_PICTURE_EXAMPLES = settings.MAX_PICTURE_EXAMPLES
MNIST_TEST_EXAMPLES = settings.MNIST_TEST_EXAMPLES


def _training_kwargs(args):
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "learning_rate": args.learning_rate,
        "resume": args.resume,
        "overwrite": args.overwrite,
        "train_examples": args.train_examples,
        "seed": args.seed,
        "data_dir": args.data_dir,
        "manual_dir": args.manual_dir,
        "pictures": args.pictures,
        "verbose": args.verbose,
        "data_source": args.data_source,
        "allow_backend_change": args.allow_backend_change,
    }


def train(args):
    from keras_stn.experiments import training

    argument_validation.check_writable_folder(args.out_dir, "--out-dir")
    training.train_run(
        args.data,
        args.model,
        args.transform,
        out_dir=args.out_dir,
        **_training_kwargs(args),
    )


def table_cells(data, models, transforms, fcn_transforms):
    """The `(data, model, transform)` runs of a table, in training order:
    per data set, each plain network before its ST versions."""
    cells = []
    for name in data:
        for model in models:
            if model == "st-cnn":
                cells += [(name, model, t) for t in transforms]
            elif model == "st-fcn":
                cells += [(name, model, t) for t in fcn_transforms]
            else:
                cells.append((name, model, None))
    return cells


def _check_table_folders(args, cells):
    """Before the first cell trains: every cell's folder may be used as
    asked (`training.check_run_folder`), naming all those that may not."""
    from keras_stn.experiments import training

    problems = []
    for data, model, transform in cells:
        directory = os.path.join(
            args.out_dir, training.run_name(data, model, transform)
        )
        settings = training.run_settings(
            data,
            model,
            transform,
            args.epochs,
            args.batch_size,
            args.optimizer,
            args.learning_rate,
            args.train_examples,
            args.seed,
            args.data_source,
        )
        try:
            training.check_run_folder(
                directory,
                settings,
                args.resume,
                args.overwrite,
                args.allow_backend_change,
            )
        except (ValueError, OSError) as error:
            problems.append(str(error))
    if problems:
        raise ValueError(
            f"{len(problems)} of the table's {len(cells)} runs cannot start; "
            "nothing was trained or changed:\n  " + "\n  ".join(problems)
        )


def table(args):
    from keras_stn.experiments import results
    from keras_stn.experiments import training

    argument_validation.check_writable_folder(args.out_dir, "--out-dir")
    cells = table_cells(
        args.data, args.models, args.transforms, args.fcn_transforms
    )
    _check_table_folders(args, cells)
    records = []
    for number, (data, model, transform) in enumerate(cells, 1):
        name = training.run_name(data, model, transform)
        print(f"[{number}/{len(cells)}] {name}", flush=True)
        records.append(
            training.train_run(
                data,
                model,
                transform,
                out_dir=args.out_dir,
                **_training_kwargs(args),
            )
        )
        table = results.markdown_table(records)
        results.write_json(
            os.path.join(args.out_dir, "table.json"), {"runs": records}
        )
        results.write_text(os.path.join(args.out_dir, "table.md"), table)
    print()
    print(table)
    print(f"written: {os.path.join(args.out_dir, 'table.md')}, table.json")


def _plot_samples(images, labels, title):
    """A square grid of `(N, S, S, 1)` images titled with their labels."""
    import math

    from keras_stn import viz

    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    figure = viz.new_figure(figsize=(1.4 * columns, 1.6 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, label in zip(axes.flat, images, labels):
        axis.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
        axis.set_title(str(label), fontsize=9)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def _check_count(count, name, maximum):
    return argument_validation.check_int_between(
        count, name, 1, maximum, "digits in one picture"
    )


def _check_out_file(path, name):
    """`path` if its folder may be written in and it is not a folder."""
    if os.path.isdir(path):
        raise ValueError(
            f"`{name}` must be a file path, not a folder. Received: "
            f"{name}={path!r}"
        )
    argument_validation.check_writable_folder(
        os.path.dirname(os.path.abspath(path)), f"the folder of {name}"
    )
    return path


def _load_model(path, argument):
    """`keras.saving.load_model(path)` with the package's objects
    registered, or a ValueError naming the file and why it does not load."""
    import keras

    import keras_stn  # noqa: F401 (registers the package's layers)
    from keras_stn import models  # noqa: F401

    try:
        return keras.saving.load_model(path)
    except Exception as error:  # Keras raises many kinds: name the file
        unknown = re.search(r"Could not locate class '([^']+)'", str(error))
        if unknown:
            reason = (
                f"it holds a layer of class {unknown.group(1)!r}, which is "
                "neither Keras' nor keras_stn's"
            )
        else:
            reason = f"{type(error).__name__}: {error}"
        raise ValueError(
            f"`{argument}` must be a .keras file written by keras-stn (or "
            f"one whose layers are all Keras' or keras_stn's); {path!r} "
            f"does not load: {reason}"
        ) from error


def samples(args):
    from keras import ops

    from keras_stn import viz
    from keras_stn.experiments.data import distorted

    _check_count(args.count, "--count", MAX_PICTURE_EXAMPLES)
    argument_validation.check_writable_folder(args.out_dir, "--out-dir")
    for name in args.data:
        variant = name.upper()
        images, labels = distorted.DistortedMNIST(
            variant,
            args.split,
            args.count,
            seed=args.seed,
            data_dir=args.data_dir,
            manual_dir=args.manual_dir,
        ).element(0)
        figure = _plot_samples(
            ops.convert_to_numpy(images),
            labels,
            f"{variant} MNIST ({args.split})",
        )
        path = os.path.join(args.out_dir, f"{name}.png")
        print(viz.save_figure(figure, path))


def _check_classifier(model, side, argument):
    """Raises a ValueError unless `model` maps `(B, side, side, 1)` images to
    one `(B, classes)` output, as the networks `keras-stn train` writes."""
    outputs = getattr(model, "outputs", None) or []
    inputs = getattr(model, "inputs", None) or []
    shape = tuple(inputs[0].shape[1:]) if len(inputs) == 1 else None
    if len(outputs) != 1 or len(outputs[0].shape) != 2:
        raise ValueError(
            f"`{argument}` must be a classifier with one output of class "
            "scores `(B, classes)`, as `keras-stn train` writes. Received: a "
            f"model with {len(outputs)} outputs of shapes "
            f"{[tuple(o.shape) for o in outputs]}"
        )
    if shape not in ((side, side, 1), (None, None, 1)):
        raise ValueError(
            f"`{argument}` must take the data set's ({side}, {side}, 1) "
            "images (pass the --data it was trained on). Received: a model "
            f"with inputs {[tuple(i.shape) for i in inputs]}"
        )


def show(args):
    import keras

    from keras_stn import viz
    from keras_stn.experiments import results
    from keras_stn.experiments import training

    count = _check_count(args.count, "--count", MAX_PICTURE_EXAMPLES)
    argument = "--model" if args.model else "--run"
    path = args.model or os.path.join(args.run, run_folder.MODEL_FILE)
    out = args.out or os.path.join(
        os.path.dirname(path), "pictures", "show.png"
    )
    _check_out_file(out, "--out")
    data = args.data
    if data is None and args.run:
        record = results.read_json(os.path.join(args.run, results.RESULTS_FILE))
        data = record and record.get("data")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No trained model at {path!r} (`keras-stn train` writes "
            "<out-dir>/<run>/model.keras when a run finishes)."
        )
    if data is None:
        raise ValueError(
            "`--data` must be given with `--model` (one of "
            f"{', '.join(training.DATASETS)}). Received: --data=None"
        )
    model = _load_model(path, argument)
    _check_classifier(model, training.DATASETS[data][1], argument)
    _, test, _ = training.make_datasets(
        data, 256, data_dir=args.data_dir, manual_dir=args.manual_dir
    )
    if hasattr(test, "unbatch"):  # a tf.data pipeline
        images, labels = next(iter(test.unbatch().batch(count)))
    else:  # a PyDataset of test batches of 256 (count is at most 64)
        images, labels = test[0]
        images, labels = images[:count], labels[:count]
    images = keras.ops.convert_to_numpy(images)
    labels = keras.ops.convert_to_numpy(labels)
    predicted = model.predict(images, verbose=0).argmax(-1)
    names = [f"{t} -> {p}" for t, p in zip(labels, predicted)]
    stem, extension = os.path.splitext(out)
    for number, view in enumerate(viz.transformer_views(model, images)):
        figure = viz.plot_views(
            view, labels=names, max_examples=count, title=view["name"]
        )
        target = out if number == 0 else f"{stem}_{number}{extension}"
        print(viz.save_figure(figure, target))


def invariance(args):
    from keras_stn import viz
    from keras_stn.experiments import invariance
    from keras_stn.experiments import results
    from keras_stn.experiments.data import mnist

    argument_validation.check_int_between(
        args.examples,
        "--examples",
        1,
        MNIST_TEST_EXAMPLES,
        "MNIST's test digits",
    )
    out = args.out or os.path.join(
        os.path.dirname(os.path.normpath(args.runs[0])), "invariance.png"
    )
    _check_out_file(out, "--out")
    for run in args.runs:
        path = os.path.join(run, run_folder.MODEL_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"No trained model at {path!r}: `--runs` takes the folders "
                "`keras-stn train` / `table` write."
            )
    models = {}
    for run in args.runs:
        record = results.read_json(os.path.join(run, results.RESULTS_FILE))
        record = record or {}
        name = results.row_name(
            record.get("model", os.path.basename(os.path.normpath(run))),
            record.get("transform"),
        )
        model = _load_model(os.path.join(run, run_folder.MODEL_FILE), "--runs")
        _check_classifier(model, 42, "--runs")
        models[name] = model
    images, labels = mnist.load_mnist(args.manual_dir, "test", args.data_dir)
    digits = images[: args.examples, ..., None]
    labels = labels[: args.examples]
    curves = invariance.accuracy_curves(models, digits, labels)
    results.write_json(os.path.splitext(out)[0] + ".json", curves)
    figure = invariance.plot_curves(
        curves, title=f"MNIST test digits ({len(labels)} per point)"
    )
    print(viz.save_figure(figure, out))
    for sweep, curve in curves.items():
        print(
            f"{sweep} ({curve['unit']}): "
            + ", ".join(f"{v:g}" for v in curve["values"])
        )
        for name, accuracy in curve["accuracy"].items():
            print(f"  {name:>16}: " + " ".join(f"{a:.2f}" for a in accuracy))


COMMANDS = {
    "invariance": invariance,
    "train": train,
    "table": table,
    "samples": samples,
    "show": show,
}
