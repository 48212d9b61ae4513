"""The `keras-stn` command: train, tabulate, and look at spatial transformers.

    keras-stn train --data rts --model st-cnn --transform affine --epochs 3
    keras-stn table --data rts --models cnn st-cnn --epochs 3
    keras-stn samples --data rts
    keras-stn show --run out/table/rts-st-cnn-affine

`keras-stn <command> --help` lists every option. Offline, point
`--manual-dir` (or `$KERAS_STN_MNIST_DIR`) at the four original MNIST files.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Spelled out, not read from the registries, so that `--help` and argument
# errors come without importing TensorFlow; tests/cli_test.py checks them
# against `experiments.DATASETS`, `experiments.MODELS` and
# `transforms.names()`.
DATA = ("r", "rts", "p", "e", "tc")
MODELS = ("cnn", "st-cnn", "fcn", "st-fcn")
TRANSFORMS = (
    "translation",
    "rigid",
    "similarity",
    "attention",
    "affine",
    "projective",
    "tps",
)


def _add_training(parser):
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=3, help="default 3")
    group.add_argument("--batch-size", type=int, default=128)
    group.add_argument(
        "--optimizer", type=str.lower, choices=("adam", "sgd"), default="adam"
    )
    group.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="default 1e-3 (adam, cosine decay) or 0.01 (sgd)",
    )
    group.add_argument(
        "--train-examples",
        type=int,
        default=None,
        help="train on the first N of the 60000 training digits",
    )
    group.add_argument("--seed", type=int, default=0)
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue unfinished runs from their last finished epoch and "
        "skip finished ones",
    )
    group.add_argument(
        "--no-pictures",
        dest="pictures",
        action="store_false",
        help="do not save what the transformers do",
    )
    group.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    _add_data_dirs(parser)


def _add_data_dirs(parser):
    group = parser.add_argument_group("data")
    group.add_argument(
        "--manual-dir",
        default=None,
        help="folder with the four original MNIST files, for offline use "
        "(default $KERAS_STN_MNIST_DIR)",
    )
    group.add_argument(
        "--data-dir", default=None, help="tensorflow-datasets' data folder"
    )


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-stn",
        description="Spatial Transformer Networks on distorted MNIST "
        "(Jaderberg et al., 2015).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one network")
    train.add_argument("--data", type=str.lower, choices=DATA, default="rts")
    train.add_argument(
        "--model", type=str.lower, choices=MODELS, default="st-cnn"
    )
    train.add_argument(
        "--transform", type=str.lower, choices=TRANSFORMS, default="affine"
    )
    train.add_argument("--out-dir", default="out/runs")
    _add_training(train)

    table = commands.add_parser(
        "table", help="the Table 1 grid: models x transforms x data sets"
    )
    table.add_argument(
        "--data", type=str.lower, choices=DATA, nargs="+", default=list(DATA)
    )
    table.add_argument(
        "--models", type=str.lower, choices=MODELS, nargs="+", default=MODELS
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
    table.add_argument("--out-dir", default="out/table")
    _add_training(table)

    samples = commands.add_parser("samples", help="pictures of a data set")
    samples.add_argument(
        "--data", type=str.lower, choices=DATA, nargs="+", default=list(DATA)
    )
    samples.add_argument(
        "--split", default="test", help="a tfds split (default test)"
    )
    samples.add_argument("--count", type=int, default=16)
    samples.add_argument("--seed", type=int, default=0)
    samples.add_argument("--out-dir", default="out/samples")
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
    show.add_argument("--count", type=int, default=8)
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--out", default=None, help="PNG path")
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
        type=int,
        default=2000,
        help="test digits per point (default 2000)",
    )
    invariance.add_argument(
        "--out", default=None, help="PNG path (a .json is written beside it)"
    )
    _add_data_dirs(invariance)
    return parser


def _training_kwargs(args):
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "learning_rate": args.learning_rate,
        "resume": args.resume,
        "train_examples": args.train_examples,
        "seed": args.seed,
        "data_dir": args.data_dir,
        "manual_dir": args.manual_dir,
        "pictures": args.pictures,
        "verbose": args.verbose,
    }


def _train(args):
    from keras_stn import experiments

    experiments.train_run(
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


def _table(args):
    from keras_stn import experiments
    from keras_stn import results

    cells = table_cells(
        args.data, args.models, args.transforms, args.fcn_transforms
    )
    records = []
    for number, (data, model, transform) in enumerate(cells, 1):
        name = experiments.run_name(data, model, transform)
        print(f"[{number}/{len(cells)}] {name}", flush=True)
        records.append(
            experiments.train_run(
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


def _samples(args):
    from keras_stn import viz
    from keras_stn.data import distorted

    for name in args.data:
        variant = name.upper()
        images, labels = next(
            iter(
                distorted.distorted_mnist(
                    variant,
                    args.split,
                    args.count,
                    seed=args.seed,
                    data_dir=args.data_dir,
                    manual_dir=args.manual_dir,
                )
            )
        )
        figure = _plot_samples(
            images.numpy(), labels.numpy(), f"{variant} MNIST ({args.split})"
        )
        path = os.path.join(args.out_dir, f"{name}.png")
        print(viz.save_figure(figure, path))


def _show(args):
    import keras

    from keras_stn import experiments
    from keras_stn import results
    from keras_stn import viz

    path = args.model or os.path.join(args.run, "model.keras")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No trained model at {path!r} (`keras-stn train` writes "
            "<out-dir>/<run>/model.keras when a run finishes)."
        )
    data = args.data
    if data is None and args.run:
        record = results.read_json(os.path.join(args.run, "results.json"))
        data = record and record.get("data")
    if data is None:
        raise ValueError(
            "`--data` must be given with `--model` (one of "
            f"{', '.join(DATA)}). Received: --data=None"
        )
    model = keras.saving.load_model(path)
    _, test, _ = experiments.make_datasets(
        data, 256, data_dir=args.data_dir, manual_dir=args.manual_dir
    )
    images, labels = next(iter(test.unbatch().batch(args.count)))
    predicted = model.predict(images, verbose=0).argmax(-1)
    names = [f"{t} -> {p}" for t, p in zip(labels.numpy(), predicted)]
    out = args.out or os.path.join(
        os.path.dirname(path), "pictures", "show.png"
    )
    stem, extension = os.path.splitext(out)
    for number, view in enumerate(viz.transformer_views(model, images)):
        figure = viz.plot_views(
            view, labels=names, max_examples=args.count, title=view["name"]
        )
        target = out if number == 0 else f"{stem}_{number}{extension}"
        print(viz.save_figure(figure, target))


def _invariance(args):
    import keras

    from keras_stn import invariance
    from keras_stn import results
    from keras_stn import viz
    from keras_stn.data import mnist

    models = {}
    for run in args.runs:
        path = os.path.join(run, "model.keras")
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"No trained model at {path!r}: `--runs` takes the folders "
                "`keras-stn train` / `table` write."
            )
        record = results.read_json(os.path.join(run, "results.json")) or {}
        name = results.row_name(
            record.get("model", os.path.basename(run)),
            record.get("transform"),
        )
        models[name] = keras.saving.load_model(path)
    source = mnist.load_split(
        f"test[:{args.examples}]", args.data_dir, args.manual_dir
    )
    digits = source.images[source.start : source.stop]
    labels = source.labels[source.start : source.stop]
    curves = invariance.accuracy_curves(models, digits, labels)
    out = args.out or os.path.join(
        os.path.dirname(os.path.normpath(args.runs[0])), "invariance.png"
    )
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


_COMMANDS = {
    "invariance": _invariance,
    "train": _train,
    "table": _table,
    "samples": _samples,
    "show": _show,
}


def main(argv=None):
    """Runs `keras-stn`; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, ImportError) as error:
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
