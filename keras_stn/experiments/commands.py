"""What each `keras-stn` command does, once `keras_stn_cli` has parsed it.

The argument parser lives in the top-level module `keras_stn_cli`, which
imports nothing heavy, so that `keras-stn --help` and argument errors answer
at once; this module imports Keras (and a backend) when a command runs.
"""

import os


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


def train(args):
    from keras_stn.experiments import training

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


def table(args):
    from keras_stn.experiments import training
    from keras_stn.experiments import results

    cells = table_cells(
        args.data, args.models, args.transforms, args.fcn_transforms
    )
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


def samples(args):
    from keras_stn import viz
    from keras_stn.experiments.data import distorted

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


def show(args):
    import keras

    from keras_stn.experiments import training
    from keras_stn.experiments import results
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
    _, test, _ = training.make_datasets(
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


def invariance(args):
    import keras

    from keras_stn.experiments import invariance
    from keras_stn.experiments import results
    from keras_stn import viz
    from keras_stn.experiments.data import mnist

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


COMMANDS = {
    "invariance": invariance,
    "train": train,
    "table": table,
    "samples": samples,
    "show": show,
}
