"""Saves PNG grids of samples from every data set, to look at them.

One PNG per set in `--out-dir`: the distorted MNIST sets (R, RTS, P, E, TC,
titled with their label and drawn parameters), MNIST addition (the two
channels side by side, titled `a + b = sum`), the two-digit canvas (with
its two boxes drawn) and, with `--cub`, CUB-200-2011 crops (needs the data
set, which tfds downloads or reads from `--cub-manual-dir`).

Run from the repository root (matplotlib is in the `examples` extra):

    python examples/data_samples.py --manual-dir ../shared/data/mnist
    python examples/data_samples.py --split train --seed 3 --count 25
"""

import argparse
import math
import os

import _common  # first: environment, package path
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_stn import viz  # noqa: E402
from keras_stn.experiments import data  # noqa: E402


def _grid(count, panel_width=1.0):
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(1.7 * columns * panel_width, 1.9 * rows),
        squeeze=False,
    )
    for axis in axes.flat:
        axis.axis("off")
    return figure, axes.flat


def _describe(variant, params, k):
    """A short title with the parameters a variant draws."""
    if variant == "R":
        return f"{params['angle'][k]:+.0f}°"
    if variant == "RTS":
        x, y = params["position"][k]
        return (
            f"{params['angle'][k]:+.0f}° x{params['scale'][k]:.2f} "
            f"({x:+.0f},{y:+.0f})"
        )
    if variant == "P":
        return f"x{params['scale'][k]:.2f}"
    if variant == "TC":
        x, y = params["top_left"][k]
        return f"at ({x},{y})"
    return ""


def save_distorted(variant, args):
    dataset = data.distorted_mnist(
        variant,
        args.split,
        batch_size=args.count,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        seed=args.seed,
        with_params=True,
    )
    images, labels, params = next(dataset.as_numpy_iterator())
    figure, axes = _grid(args.count)
    for k, axis in enumerate(axes):
        if k >= len(labels):
            break
        axis.imshow(images[k, ..., 0], cmap="gray", vmin=0, vmax=1)
        title = f"{labels[k]}  {_describe(variant, params, k)}"
        axis.set_title(title, fontsize=7)
    size = images.shape[1]
    figure.suptitle(f"{variant} ({size}x{size}, {args.split})")
    return figure


def save_addition(args):
    dataset = data.mnist_addition(
        args.split,
        batch_size=args.count,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        seed=args.seed,
        with_params=True,
    )
    images, labels, params = next(dataset.as_numpy_iterator())
    figure, axes = _grid(args.count, panel_width=2.0)
    for k, axis in enumerate(axes):
        if k >= len(labels):
            break
        first, second = images[k, ..., 0], images[k, ..., 1]
        separator = np.full((first.shape[0], 2), 0.5)
        side_by_side = np.concatenate([first, separator, second], axis=1)
        axis.imshow(side_by_side, cmap="gray", vmin=0, vmax=1)
        a, b = params["digit_labels"][k]
        axis.set_title(f"{a} + {b} = {labels[k]}", fontsize=8)
    figure.suptitle(f"MNIST addition (2 channels of 42x42, {args.split})")
    return figure


def save_canvas(args):
    dataset = data.two_digit_canvas(
        args.split,
        batch_size=args.count,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        seed=args.seed,
        with_params=True,
    )
    images, labels, params = next(dataset.as_numpy_iterator())
    size = images.shape[1]
    figure, axes = _grid(args.count)
    for k, axis in enumerate(axes):
        if k >= len(labels):
            break
        axis.imshow(images[k, ..., 0], cmap="gray", vmin=0, vmax=1)
        for box, colour in zip(params["boxes"][k], ("tab:red", "tab:cyan")):
            y_min, x_min, y_max, x_max = box * size
            # Boxes span pixels [min, max); pixel i covers [i - 0.5, i + 0.5].
            axis.add_patch(
                matplotlib.patches.Rectangle(
                    (x_min - 0.5, y_min - 0.5),
                    x_max - x_min,
                    y_max - y_min,
                    fill=False,
                    edgecolor=colour,
                    linewidth=1.0,
                )
            )
        axis.set_title(f"{labels[k][0]}, {labels[k][1]}", fontsize=8)
    figure.suptitle(f"Two-digit canvas ({size}x{size}, {args.split})")
    return figure


def save_cub(args):
    dataset = data.cub_200_2011(
        "train",
        batch_size=args.count,
        image_size=224,
        data_dir=args.data_dir,
        manual_dir=args.cub_manual_dir,
        seed=args.seed,
        with_params=True,
    )
    images, labels, params = next(dataset.as_numpy_iterator())
    figure, axes = _grid(args.count)
    for k, axis in enumerate(axes):
        if k >= len(labels):
            break
        axis.imshow(images[k])
        flipped = " flipped" if params["flipped"][k] else ""
        axis.set_title(f"class {labels[k]}{flipped}", fontsize=7)
    figure.suptitle("CUB-200-2011 (224 crops, train)")
    return figure


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default=os.path.join("out", "samples"))
    parser.add_argument(
        "--manual-dir",
        default=None,
        help="folder with the four original MNIST files (offline use)",
    )
    parser.add_argument("--data-dir", default=None, help="tfds data dir")
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--count", type=int, default=16, help="per grid")
    parser.add_argument("--cub", action="store_true", help="add CUB crops")
    parser.add_argument("--cub-manual-dir", default=None)
    args = parser.parse_args()
    _common.require_tensorflow_backend("the tf.data pipelines it draws")

    os.makedirs(args.out_dir, exist_ok=True)
    figures = {
        f"mnist_{variant.lower()}": lambda v=variant: save_distorted(v, args)
        for variant in data.VARIANTS
    }
    figures["mnist_addition"] = lambda: save_addition(args)
    figures["two_digit_canvas"] = lambda: save_canvas(args)
    if args.cub:
        figures["cub_200_2011"] = lambda: save_cub(args)
    for name, make in figures.items():
        figure = make()
        path = os.path.join(args.out_dir, f"{name}.png")
        figure.tight_layout()
        print(viz.save_figure(figure, path, dpi=110))


if __name__ == "__main__":
    main()
