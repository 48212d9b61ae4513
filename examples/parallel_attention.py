"""Parallel attention transformers that find two digits without part labels.

The paper's "parallel spatial transformers" (Jaderberg et al., 2015, the
CUB-200-2011 experiment) on an MNIST stand-in: an 84x84 canvas holds two
upright digits at random non-overlapping places
(`keras_stn.experiments.data.two_digit_canvas`). Two `"attention"` transformers (theta
`(scale, tx, ty)`: input point = scale * output point + (tx, ty)) share one
localization trunk and each sample a 28x28 crop; ONE shared small CNN reads
each crop and outputs 10 logits, stacked to `(B, 2, 10)`. Training sees only
the two digit classes, never their places, with a permutation-invariant
loss: the smaller, over the two ways of pairing transformers with digits, of
the summed cross-entropies (the labels come in random drawing order, so
neither order nor position leaks).

Symmetry breaking: both heads would start at the same identity theta,
receive the same gradients and stay equal. After building, the heads'
biases are set apart (their kernels stay zero): head 0 starts at theta
`(s, -d, 0)` and head 1 at `(s, +d, 0)`, `s = --init-scale` (0.4) and
`d = --init-offset` (0.5): a 33.6x33.6 window centred on the left half of
the canvas' middle band and one on the right half, each sampled to 28x28.

Scale: by default (`--scale fixed`) theta's scale is held at `s` for every
input (a Keras weight constraint zeroes the heads' kernel column and pins
the bias entry for the scale after each step), so the transformers learn
where to look, not how much. With `--scale learned` (the attention family
in full) short trial runs zoomed both windows out to the whole canvas
(scale 0.5 -> 1.07 in 300 steps, digit hit rate 0%): seeing more of the
canvas is the quickest gain for an untrained classifier, and two
whole-canvas views are a poor start for telling the digits apart. With the
scale held at 0.4, 300 steps moved the hit rates from 13% to 34% / 20%.
At 0.4 a window with its centre on a digit's has IoU 28^2 / 33.6^2 = 0.69
with that digit's box; at `s >= 0.47` no box can reach IoU 0.5.

Reported on the test split (10,000 canvases unless `--test-examples`), at
initialisation and after training:
- set accuracy: both digits right, as a multiset (the predicted pair equals
  the true pair in some order); digit accuracy: the fraction of digits
  right under the better pairing;
- per transformer, hit rate: the fraction of canvases where its box has
  IoU > 0.5 with one of the two digit boxes (at most one can pass, since
  the digit boxes do not overlap), and its mean best IoU;
- both-hit rate: the fraction where the two transformers hit two different
  digits; and, among hits, how often the transformer's crop is classified as
  the digit it hit.
A transformer's box is the footprint of its sampling grid in input pixels:
the extreme sample centres (pixel `x = ((gx + 1) * W - 1) / 2`, as
`align_corners=False`) widened by half a sample spacing, not clipped to the
canvas; the digit boxes are the 28x28 frames.

Writes into `--out-dir`: `results.json` and `results.md` (atomically; also
after the initial evaluation, with `"status": "running"`),
`attention_init.png` and `attention_trained.png` (test canvases with each
transformer's box in its colour, the digit frames dashed, and each
transformer's 28x28 crop).

Default schedule: 3 epochs of all 60,000 training digits (each epoch draws
fresh partners and places), batch 64, 2,814 steps, Adam at 1e-3 with cosine
decay to 0. Measured on 2 CPU cores shared with other jobs: 97-125 ms a
step (8-10 steps/s), so 4.5-6 minutes of training, plus about 15 s of
start-up and 15-20 s for each evaluation on the 10,000 test canvases:
about 5.5-6.5 minutes in all.

Run from the repository root (matplotlib is in the `examples` extra):

    python examples/parallel_attention.py --manual-dir ../shared/data/mnist
    python examples/parallel_attention.py --manual-dir ../shared/data/mnist \\
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
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402
from keras import ops  # noqa: E402

import keras_stn  # noqa: E402
from keras_stn import viz  # noqa: E402

CANVAS = 84
CROP = 28
NUM_CLASSES = 10
COLOURS = ("tab:red", "tab:cyan")


# --- model -----------------------------------------------------------------


def build_models(localization_size):
    """The training model and a probe sharing its layers.

    Returns:
        `(model, probe, transformers)`: `model` maps canvases
        `(B, 84, 84, 1)` to logits `(B, 2, 10)`; `probe` to a dict of
        `logits`, `crops` `(B, 2, 28, 28, 1)`, `theta` `(B, 2, 3)` and
        `grid` `(B, 2, 28, 28, 2)`; `transformers` is the
        `ParallelSpatialTransformers` layer.
    """
    transformers = keras_stn.ParallelSpatialTransformers(
        2,
        localization=keras_stn.default_localization(
            size=localization_size, name="localization"
        ),
        transform="attention",
        output_size=(CROP, CROP),
        merge="list",
        return_theta=True,
        return_grid=True,
        name="transformers",
    )
    classifier = keras.Sequential(
        [
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(NUM_CLASSES),
        ],
        name="classifier",
    )
    inputs = keras.Input((CANVAS, CANVAS, 1))
    crops, theta, grid = transformers(inputs)
    logits = ops.stack([classifier(crop) for crop in crops], axis=1)
    model = keras.Model(inputs, logits, name="parallel_attention")
    probe = keras.Model(
        inputs,
        {
            "logits": logits,
            "crops": ops.stack(crops, axis=1),
            "theta": theta,
            "grid": grid,
        },
        name="probe",
    )
    return model, probe, transformers


def break_symmetry(transformers, scale, offset):
    """Sets head k's bias to theta `(scale, (2k - 1) * offset, 0)`."""
    for k, head in enumerate(transformers.heads):
        tx = (2 * k - 1) * offset
        head.bias.assign(np.array([scale, tx, 0.0], dtype=head.bias.dtype))


class _PinColumn(keras.constraints.Constraint):
    """Holds entry `index` of a weight's last axis at `value` (0 for the
    kernel, the starting scale for the bias): theta's scale stays fixed."""

    def __init__(self, index, value):
        self.index, self.value = index, value

    def __call__(self, weight):
        mask = np.ones(weight.shape[-1], dtype=weight.dtype)
        mask[self.index] = 0.0
        pinned = np.zeros(weight.shape[-1], dtype=weight.dtype)
        pinned[self.index] = self.value
        return weight * mask + pinned


def fix_scale(transformers, scale):
    """Pins theta's scale (entry 0) at `scale` for every input: the heads
    then learn translation only. Keras applies a variable's `constraint`
    after every optimizer step."""
    for head in transformers.heads:
        head.kernel.constraint = _PinColumn(0, 0.0)
        head.bias.constraint = _PinColumn(0, scale)


def _pairings(y_true):
    """One-hot labels `(B, 2, 10)` as given and with the digits swapped."""
    one_hot = ops.one_hot(ops.cast(y_true, "int32"), NUM_CLASSES)
    return one_hot, ops.flip(one_hot, axis=1)


def permutation_invariant_crossentropy(y_true, y_pred):
    """min over the two pairings of the summed cross-entropies, `(B,)`.

    Args:
        y_true: int `(B, 2)`, the two digits in any order.
        y_pred: logits `(B, 2, 10)`, one row per transformer.
    """
    log_probs = ops.log_softmax(y_pred, axis=-1)
    losses = [
        -ops.sum(one_hot * log_probs, axis=(1, 2))
        for one_hot in _pairings(y_true)
    ]
    return ops.minimum(*losses)


def set_accuracy(y_true, y_pred):
    """1 where the predicted pair equals the true pair in some order."""
    predicted = ops.sort(ops.argmax(y_pred, axis=-1), axis=-1)
    true = ops.sort(ops.cast(y_true, predicted.dtype), axis=-1)
    return ops.cast(ops.all(ops.equal(predicted, true), axis=-1), "float32")


def digit_accuracy(y_true, y_pred):
    """The fraction of the two digits right under the better pairing."""
    predicted = ops.one_hot(ops.argmax(y_pred, axis=-1), NUM_CLASSES)
    hits = [
        ops.sum(one_hot * predicted, axis=(1, 2))
        for one_hot in _pairings(y_true)
    ]
    return ops.maximum(*hits) / 2.0


# --- boxes (pixel edges [x0, y0, x1, y1]; the canvas is [0, 0, 84, 84]) ----


def tfds_to_pixels(boxes, size):
    """Normalised `(y_min, x_min, y_max, x_max)` -> `[x0, y0, x1, y1]`."""
    boxes = np.asarray(boxes, dtype=np.float64) * size
    return boxes[..., [1, 0, 3, 2]]


# --- evaluation ------------------------------------------------------------


def evaluate(probe, test, align_corners, keep=8):
    """Accuracies and box statistics over the test set.

    Returns:
        `(metrics, sample)`: a dict of floats, and the first batch's first
        `keep` canvases, labels, digit boxes and probe outputs (numpy).
    """
    totals = {}
    count = 0
    sample = None

    def add(name, values):
        totals[name] = totals.get(name, 0.0) + float(np.sum(values))

    for images, labels, params in _common.numpy_batches(test):
        out = probe.predict_on_batch(images)
        logits = np.asarray(out["logits"])
        add("set_accuracy", np.asarray(set_accuracy(labels, logits)))
        add("digit_accuracy", np.asarray(digit_accuracy(labels, logits)))
        grids = np.asarray(out["grid"])  # (B, 2, 28, 28, 2)
        boxes = viz.grid_boxes(
            grids.reshape(-1, *grids.shape[2:]), (CANVAS, CANVAS), align_corners
        ).reshape(len(grids), 2, 4)
        truth = tfds_to_pixels(params["boxes"], CANVAS)
        iou = viz.box_iou(boxes[:, :, None], truth[:, None, :])  # (B, 2, 2)
        best = iou.max(axis=-1)
        hit = best > 0.5
        target = iou.argmax(axis=-1)  # the digit each transformer hits
        predicted = logits.argmax(axis=-1)
        correct = predicted == np.take_along_axis(labels, target, axis=1)
        for k in range(2):
            add(f"hit_rate_{k}", hit[:, k])
            add(f"mean_iou_{k}", best[:, k])
            add(f"hits_{k}", hit[:, k])
            add(f"hit_and_read_{k}", hit[:, k] & correct[:, k])
        add("both_hit_rate", hit.all(axis=1) & (target[:, 0] != target[:, 1]))
        count += len(labels)
        if sample is None:
            sample = {
                "images": images[:keep],
                "labels": labels[:keep],
                "truth": truth[:keep],
                "boxes": boxes[:keep],
                "logits": logits[:keep],
                "crops": np.asarray(out["crops"])[:keep],
                "theta": np.asarray(out["theta"])[:keep],
            }
    metrics = {}
    for k in range(2):
        hits = totals.pop(f"hits_{k}")
        read = totals.pop(f"hit_and_read_{k}")
        metrics[f"read_given_hit_{k}"] = read / hits if hits else None
    metrics.update({name: value / count for name, value in totals.items()})
    metrics["examples"] = count
    metrics["mean_theta"] = (
        sample["theta"].astype(np.float64).mean(axis=0).round(4).tolist()
    )
    return metrics, sample


# --- pictures --------------------------------------------------------------


def _rectangle(box, colour, dashed=False):
    x0, y0, x1, y1 = box
    # imshow puts pixel centres at integers: edges sit at -0.5 + i.
    return matplotlib.patches.Rectangle(
        (x0 - 0.5, y0 - 0.5),
        x1 - x0,
        y1 - y0,
        fill=False,
        edgecolor=colour,
        linewidth=1.6 if not dashed else 1.0,
        linestyle="--" if dashed else "-",
    )


def save_picture(sample, path, title):
    count = len(sample["images"])
    figure, axes = plt.subplots(
        3, count, figsize=(1.6 * count, 5.2), squeeze=False
    )
    predicted = sample["logits"].argmax(axis=-1)
    for j in range(count):
        axis = axes[0, j]
        axis.imshow(sample["images"][j, ..., 0], cmap="gray", vmin=0, vmax=1)
        for box in sample["truth"][j]:
            axis.add_patch(_rectangle(box, "white", dashed=True))
        for k, colour in enumerate(COLOURS):
            axis.add_patch(_rectangle(sample["boxes"][j, k], colour))
        axis.set_xlim(-0.5, CANVAS - 0.5)
        axis.set_ylim(CANVAS - 0.5, -0.5)
        a, b = sample["labels"][j]
        axis.set_title(f"digits {a}, {b}", fontsize=8)
        for k, colour in enumerate(COLOURS):
            crop_axis = axes[1 + k, j]
            crop = sample["crops"][j, k, ..., 0]
            crop_axis.imshow(crop, cmap="gray", vmin=0, vmax=1)
            crop_axis.set_title(
                f"T{k}: reads {predicted[j, k]}", fontsize=8, color=colour
            )
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    for k, colour in enumerate(COLOURS):
        for spine in axes[1 + k, 0].spines.values():
            spine.set_edgecolor(colour)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return viz.save_figure(figure, path, dpi=110)


# --- results ---------------------------------------------------------------


def _percent(value):
    return "—" if value is None else f"{100 * value:.1f}"


def markdown(record):
    rows = [
        ("set accuracy (both digits right)", "set_accuracy"),
        ("digit accuracy", "digit_accuracy"),
        ("T0 hit rate (IoU > 0.5)", "hit_rate_0"),
        ("T1 hit rate (IoU > 0.5)", "hit_rate_1"),
        ("both hit different digits", "both_hit_rate"),
        ("T0 mean best IoU", "mean_iou_0"),
        ("T1 mean best IoU", "mean_iou_1"),
        ("T0 crop read right, given a hit", "read_given_hit_0"),
        ("T1 crop read right, given a hit", "read_given_hit_1"),
    ]
    init, final = record["init"], record.get("trained") or {}
    s = record["schedule"]
    lines = [
        "# Parallel attention transformers on the two-digit canvas",
        "",
        f"Status: {record['status']}. {record['params']:,} parameters; "
        f"{s['epochs']} epochs of {s['train_examples']:,} canvases, batch "
        f"{s['batch_size']}, Adam {s['learning_rate']:g} (cosine), scale "
        f"{s['scale']}; {record['seconds']:.0f} s of training. Test canvases: "
        f"{init['examples']:,}.",
        "",
        "| metric (%, test) | initialisation | trained |",
        "|---|---:|---:|",
    ]
    for label, key in rows:
        lines.append(
            f"| {label} | {_percent(init.get(key))} | "
            f"{_percent(final.get(key))} |"
        )
    lines += [
        "",
        "Mean best IoU is shown in percent too. Initial thetas "
        f"`(scale, tx, ty)`: {record['init_thetas']}; the mean theta over "
        f"the first test batch after training: "
        f"{final.get('mean_theta', '—')}.",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_run_arguments(parser, "parallel_attention")
    parser.add_argument("--init-scale", type=float, default=0.4)
    parser.add_argument("--init-offset", type=float, default=0.5)
    parser.add_argument(
        "--scale",
        choices=("learned", "fixed"),
        default="fixed",
        help="hold theta's scale at --init-scale (default) or learn it",
    )
    parser.add_argument(
        "--localization-size",
        type=int,
        default=42,
        help="side the localization trunk resizes the canvas to",
    )
    args = _common.parse_run_arguments(parser)

    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    common = {"data_dir": args.data_dir, "manual_dir": args.manual_dir}
    train_split, num_train = _common.split("train", args.train_examples)
    test_split, _ = _common.split("test", args.test_examples)
    # Training batches carry no params: Keras would read a third element as
    # sample weights. Only the evaluation reads the digit boxes.
    train = _common.dataset(
        "two_digit_canvas",
        train_split,
        args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        **common,
    )
    test = _common.dataset(
        "two_digit_canvas", test_split, 256, with_params=True, **common
    )

    model, probe, transformers = build_models(args.localization_size)
    break_symmetry(transformers, args.init_scale, args.init_offset)
    if args.scale == "fixed":
        fix_scale(transformers, args.init_scale)
    init_thetas = [
        np.asarray(head.bias, dtype=np.float64).round(4).tolist()
        for head in transformers.heads
    ]
    steps = math.ceil(num_train / args.batch_size) * args.epochs
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(args.learning_rate, steps)
        ),
        loss=permutation_invariant_crossentropy,
        metrics=[set_accuracy, digit_accuracy],
    )
    align = transformers.align_corners
    tick = time.perf_counter()
    init_metrics, init_sample = evaluate(probe, test, align)
    init_metrics["seconds"] = time.perf_counter() - tick
    save_picture(
        init_sample,
        os.path.join(args.out_dir, "attention_init.png"),
        "initialisation (symmetry-breaking thetas); dashed: digit frames",
    )
    record = {
        "experiment": "parallel_attention",
        "params": int(model.count_params()),
        "schedule": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "train_examples": num_train,
            "steps": steps,
            "optimizer": "adam, cosine decay",
            "learning_rate": args.learning_rate,
            "seed": args.seed,
            "localization_size": args.localization_size,
            "scale": args.scale,
        },
        "init_thetas": init_thetas,
        "init": init_metrics,
        "trained": None,
        "epochs": [],
        "seconds": 0.0,
        "status": "running",
    }
    _common.write_results(args.out_dir, record, markdown(record))
    print(
        f"{record['params']:,} parameters; initial test set accuracy "
        f"{100 * init_metrics['set_accuracy']:.1f}%, hit rates "
        f"{100 * init_metrics['hit_rate_0']:.1f}% / "
        f"{100 * init_metrics['hit_rate_1']:.1f}%"
    )

    start = time.perf_counter()
    history = model.fit(
        train,
        epochs=args.epochs,
        verbose=args.verbose,
    )
    record["seconds"] = time.perf_counter() - start
    record["steps_per_second"] = steps / record["seconds"]
    names = sorted(history.history)
    record["epochs"] = [
        {"epoch": e + 1, **{n: float(history.history[n][e]) for n in names}}
        for e in range(len(history.epoch))
    ]
    tick = time.perf_counter()
    trained_metrics, trained_sample = evaluate(probe, test, align)
    trained_metrics["seconds"] = time.perf_counter() - tick
    save_picture(
        trained_sample,
        os.path.join(args.out_dir, "attention_trained.png"),
        f"after {args.epochs} epochs; dashed: digit frames",
    )
    record["trained"] = trained_metrics
    record["status"] = "complete"
    _common.write_results(args.out_dir, record, markdown(record))
    print(markdown(record))
    print(f"results in {args.out_dir}")


if __name__ == "__main__":
    main()
