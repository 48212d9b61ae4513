"""MNIST addition: two parallel spatial transformers against FCN and CNN.

The paper's appendix experiment (Jaderberg et al., 2015): each input has two
42x42 channels, each holding one MNIST digit under its own random rotation
(+-45 degrees), scale (0.7-1.2) and translation
(`keras_stn.experiments.data.mnist_addition`); the label is the digits' sum, 19 classes.
A network must find and read both digits to add them.

Models (`--models`, default all three), each trained from scratch with Adam
(cosine decay to 0) and sparse cross-entropy:
- `fcn`: `keras_stn.models.fcn((42, 42, 2), 19)`, three dense ReLU layers of
  128;
- `cnn`: `keras_stn.models.cnn((42, 42, 2), 19)`, conv 9x9 - pool - conv
  7x7 - pool - dense;
- `st-fcn` (the paper's 2xST-FCN): two affine transformers in parallel
  (`ParallelSpatialTransformers(2, localization=paper_fcn_localization(),
  transform="affine", merge="concat")`), each seeing both channels and
  warping both with its own theta; their outputs are concatenated to 4
  channels `[T0(ch0), T0(ch1), T1(ch0), T1(ch1)]` and read by
  `keras_stn.models.fcn((42, 42, 4), 19)` as a sub-model. Both heads start
  at the identity; the classifier's random first layer weighs the 4
  channels differently, so their gradients differ from the first step and no
  explicit symmetry breaking is needed. Here the two heads share one
  localization trunk (two dense layers of 32); the paper may give each
  transformer its own.

Reports (`results.json`, `results.md` in `--out-dir`, written atomically
after every model): each model's test error on the 10,000 test pairs
(unless `--test-examples`) beside the paper's (FCN 47.7%, CNN 14.7%,
2xST-FCN 5.8%, after the paper's much longer schedule), its parameter count
and training time. Pictures: `st_fcn_transformers.png`, what each
transformer does to each channel for a few test pairs (inputs, T0's and
T1's outputs), at initialisation (`st_fcn_transformers_init.png`) and after
training.

Default schedule, the same for each model: 3 epochs of 30,000 training
pairs (fresh distortions and partners every epoch), batch 64, 1,407 steps,
Adam at 1e-3 with cosine decay to 0. Measured on 2 CPU cores shared with
other jobs: FCN about 21 ms a step (48 steps/s), CNN 146 ms (6.8 steps/s),
2xST-FCN 40 ms (25 steps/s), so about 0.5, 3.4 and 0.9 minutes of
training, plus start-up and three evaluations on the 10,000 test pairs:
about 6 minutes in all (the CNN takes two thirds of it).

Run from the repository root (matplotlib is in the `examples` extra):

    python examples/mnist_addition.py --manual-dir ../shared/data/mnist
    python examples/mnist_addition.py --manual-dir ../shared/data/mnist \\
        --models st-fcn --epochs 20
    python examples/mnist_addition.py --manual-dir ../shared/data/mnist \\
        --train-examples 2048 --epochs 1 --test-examples 1024  # smoke run
"""

import argparse
import math
import os
import time

import _common  # first: environment, package path
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import keras_stn  # noqa: E402
from keras_stn import models  # noqa: E402
from keras_stn import viz  # noqa: E402
from keras_stn.experiments import training  # noqa: E402

SIDE = 42
NUM_CLASSES = 19
MODELS = ("fcn", "cnn", "st-fcn")
# Jaderberg et al., 2015, appendix: MNIST addition test error (%).
PAPER_ERROR = {"fcn": 47.7, "cnn": 14.7, "st-fcn": 5.8}
LABELS = {"fcn": "FCN", "cnn": "CNN", "st-fcn": "2xST-FCN"}


def build_st_fcn(lr_multiplier=1.0):
    """2xST-FCN: `(B, 42, 42, 2)` -> probabilities `(B, 19)`.

    Returns:
        `(model, probe)`: `probe` maps the input to the transformers'
        concatenated outputs `(B, 42, 42, 4)`, sharing the layers.
    """
    transformers = keras_stn.ParallelSpatialTransformers(
        2,
        localization=models.paper_fcn_localization(),
        transform="affine",
        merge="concat",
        lr_multiplier=lr_multiplier,
        name="transformers",
    )
    inputs = keras.Input((SIDE, SIDE, 2))
    warped = transformers(inputs)
    classifier = models.fcn((SIDE, SIDE, 4), NUM_CLASSES)
    model = keras.Model(inputs, classifier(warped), name="st_fcn")
    probe = keras.Model(inputs, warped, name="st_fcn_probe")
    return model, probe


def build(name, lr_multiplier=1.0):
    """`(model, probe or None)` for a name of `MODELS`."""
    if name == "fcn":
        return models.fcn((SIDE, SIDE, 2), NUM_CLASSES), None
    if name == "cnn":
        return models.cnn((SIDE, SIDE, 2), NUM_CLASSES), None
    return build_st_fcn(lr_multiplier)


def save_picture(probe, model, images, params, path, title):
    """Rows of test pairs: the two channels, then T0's and T1's output of
    each channel, titled with the sum and the model's answer."""
    warped = np.asarray(probe.predict_on_batch(images))
    predicted = np.asarray(model.predict_on_batch(images)).argmax(axis=-1)
    panels = [
        ("input, ch 0", images[..., 0]),
        ("input, ch 1", images[..., 1]),
        ("T0(ch 0)", warped[..., 0]),
        ("T0(ch 1)", warped[..., 1]),
        ("T1(ch 0)", warped[..., 2]),
        ("T1(ch 1)", warped[..., 3]),
    ]
    count = len(images)
    figure, axes = plt.subplots(
        count,
        len(panels),
        figsize=(1.5 * len(panels), 1.6 * count),
        squeeze=False,
    )
    for j in range(count):
        a, b = params["digit_labels"][j]
        for column, (name, stack) in enumerate(panels):
            axis = axes[j, column]
            axis.imshow(stack[j], cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if j == 0:
                axis.set_title(name, fontsize=8)
        axes[j, 0].set_ylabel(
            f"{a}+{b}={a + b}\nsays {predicted[j]}", fontsize=8
        )
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return viz.save_figure(figure, path, dpi=100)


def markdown(record):
    s = record["schedule"]
    lines = [
        "# MNIST addition",
        "",
        f"{s['epochs']} epochs of {s['train_examples']:,} training pairs, "
        f"batch {s['batch_size']}, {s['optimizer']} {s['learning_rate']:g} "
        f"(localization x{s['lr_multiplier']:g}), "
        f"seed {s['seed']}; test pairs: {record['test_examples']:,}.",
        "",
        "| model | params | test error (%) | paper (%) | train time (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for run in record["runs"]:
        error = run.get("test_error")
        cell = "—" if error is None else f"{100 * error:.2f}"
        if run["status"] != "complete":
            cell += "*"
        lines.append(
            f"| {LABELS[run['model']]} | {run['params']:,} | {cell} | "
            f"{PAPER_ERROR[run['model']]} | {run['seconds']:.0f} |"
        )
    lines += [
        "",
        "Paper: Jaderberg et al., 2015, appendix, after the paper's full "
        "schedule; * marks a run that has not finished.",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS)
    )
    _common.add_run_arguments(parser, "mnist_addition", train_examples=30000)
    parser.add_argument(
        "--pictures", type=int, default=6, help="test pairs in the picture"
    )
    parser.add_argument(
        "--optimizer",
        choices=training.OPTIMIZERS,
        default="adam",
        help="adam (cosine decay) or sgd (momentum 0.9, / 10 each third)",
    )
    parser.add_argument(
        "--lr-multiplier",
        type=float,
        default=1.0,
        help="the transformers' localization gradient scale (an LR "
        "multiplier under SGD)",
    )
    args = _common.parse_run_arguments(parser)
    if args.pictures < 1:
        parser.error("--pictures must be >= 1")

    os.makedirs(args.out_dir, exist_ok=True)
    common = {"data_dir": args.data_dir, "manual_dir": args.manual_dir}
    train_split, num_train = _common.split("train", args.train_examples)
    test_split, num_test = _common.split("test", args.test_examples)
    test = _common.dataset("mnist_addition", test_split, 256, **common)
    shown, _, shown_params = next(
        _common.numpy_batches(
            _common.dataset(
                "mnist_addition",
                "test",
                args.pictures,
                with_params=True,
                **common,
            )
        )
    )
    steps = math.ceil(num_train / args.batch_size) * args.epochs
    record = {
        "experiment": "mnist_addition",
        "schedule": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "train_examples": num_train,
            "steps": steps,
            "optimizer": args.optimizer,
            "lr_multiplier": args.lr_multiplier,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
        },
        "test_examples": num_test,
        "paper_error_percent": PAPER_ERROR,
        "runs": [],
    }

    for name in dict.fromkeys(args.models):
        keras.utils.set_random_seed(args.seed)
        train = _common.dataset(
            "mnist_addition",
            train_split,
            args.batch_size,
            epochs=args.epochs,
            seed=args.seed,
            **common,
        )
        model, probe = build(name, args.lr_multiplier)
        model.compile(
            optimizer=training.make_optimizer(
                args.optimizer, args.learning_rate, steps
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        run = {
            "model": name,
            "params": int(model.count_params()),
            "paper_error_percent": PAPER_ERROR[name],
            "status": "running",
            "test_error": None,
            "seconds": 0.0,
        }
        record["runs"].append(run)
        _common.write_results(args.out_dir, record, markdown(record))
        print(f"{LABELS[name]}: {run['params']:,} parameters, {steps} steps")
        if probe is not None:
            save_picture(
                probe,
                model,
                shown,
                shown_params,
                os.path.join(args.out_dir, "st_fcn_transformers_init.png"),
                "2xST-FCN at initialisation (identity transformers)",
            )

        start = time.perf_counter()
        history = model.fit(train, epochs=args.epochs, verbose=args.verbose)
        run["seconds"] = time.perf_counter() - start
        run["steps_per_second"] = steps / run["seconds"]
        run["epochs"] = [
            {
                "epoch": e + 1,
                "loss": float(history.history["loss"][e]),
                "train_error": 1.0 - float(history.history["accuracy"][e]),
            }
            for e in range(len(history.epoch))
        ]
        evaluation = model.evaluate(
            test, verbose=args.verbose, return_dict=True
        )
        run["test_loss"] = float(evaluation["loss"])
        run["test_error"] = 1.0 - float(evaluation["accuracy"])
        run["status"] = "complete"
        _common.write_results(args.out_dir, record, markdown(record))
        if probe is not None:
            save_picture(
                probe,
                model,
                shown,
                shown_params,
                os.path.join(args.out_dir, "st_fcn_transformers.png"),
                f"2xST-FCN after {args.epochs} epochs",
            )
        print(
            f"{LABELS[name]}: test error {100 * run['test_error']:.2f}% "
            f"(paper {PAPER_ERROR[name]}%), {run['seconds']:.0f} s"
        )
    print(markdown(record))
    print(f"results in {args.out_dir}")


if __name__ == "__main__":
    main()
