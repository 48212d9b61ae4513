"""Unsupervised registration of MNIST digits to a fixed digit (VoxelMorph's
tutorial task), with a diffeomorphic (velocity-field) warp.

A small U-Net reads a moving digit and the fixed digit and predicts a
stationary velocity field; `VelocityIntegration` (scaling and squaring)
turns it into a displacement and `DenseSpatialTransformer` warps the moving
digit with it. The loss is the image similarity (mean squared error between
the warped and the fixed digit) plus `--smoothness` times the mean squared
spatial gradient of the displacement. No labels, no correspondences.

Every digit of one class (`--digit`) is registered to one fixed example of
that class (the first of the training split). Held-out numbers on the test
digits of that class, before and after: MSE to the fixed digit, Dice of the
thresholded digit (pixels > 0.5), and the fraction of pixels whose
deformation has a non-positive Jacobian determinant (folding), which the
diffeomorphic warp should keep near zero.

    python examples/mnist_registration.py --manual-dir ../shared/data/mnist

Runs on any Keras backend (MNIST is read with NumPy; no TensorFlow needed):
`KERAS_BACKEND=jax python examples/mnist_registration.py ...`. With
`--volume-smoke` it also registers a small synthetic 3-D volume pair.
Writes `results.json`, `results.md` and `registration.png` under
`--out-dir`.
"""

import argparse
import os
import time

import _common  # first: environment, package path
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_stn  # noqa: E402
from keras_stn.experiments.data import mnist  # noqa: E402

SIZE = 32  # digits padded from 28 so the U-Net halves twice evenly


def _pad(images):
    """uint8 `(N, 28, 28)` -> float32 `(N, 32, 32, 1)` in [0, 1]."""
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2))).astype("float32")
    return padded[..., None] / 255.0


def _conv(x, filters, strides=1):
    x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same")(x)
    return keras.layers.LeakyReLU(0.2)(x)


def registration_model(steps=7, width=16):
    """`[moving, fixed]` -> `[warped, displacement]`, both `(B, 32, 32, .)`.

    The U-Net: encoder 32 -> 16 -> 8, decoder back to 32 with skip
    connections, then a 3x3 conv to the 2-channel velocity (small initial
    weights, so training starts near the identity).
    """
    moving = keras.Input((SIZE, SIZE, 1), name="moving")
    fixed = keras.Input((SIZE, SIZE, 1), name="fixed")
    x0 = _conv(keras.layers.Concatenate()([moving, fixed]), width)
    x1 = _conv(x0, 2 * width, strides=2)
    x2 = _conv(x1, 2 * width, strides=2)
    up1 = keras.layers.UpSampling2D()(_conv(x2, 2 * width))
    y1 = _conv(keras.layers.Concatenate()([up1, x1]), 2 * width)
    up0 = keras.layers.UpSampling2D()(y1)
    y0 = _conv(keras.layers.Concatenate()([up0, x0]), width)
    velocity = keras.layers.Conv2D(
        2,
        3,
        padding="same",
        kernel_initializer=keras.initializers.RandomNormal(stddev=1e-5),
        name="velocity",
    )(y0)
    displacement = keras_stn.layers.VelocityIntegration(
        steps=steps, name="displacement"
    )(velocity)
    warped = keras_stn.layers.DenseSpatialTransformer(name="warped")(
        [moving, displacement]
    )
    return keras.Model([moving, fixed], [warped, displacement])


def smoothness(_, displacement):
    """Mean squared forward difference of the displacement along each
    spatial axis (the target is unused)."""
    ops = keras.ops
    d_rows = displacement[:, 1:] - displacement[:, :-1]
    d_cols = displacement[:, :, 1:] - displacement[:, :, :-1]
    return ops.mean(ops.square(d_rows)) + ops.mean(ops.square(d_cols))


def folding_fraction(displacement):
    """Fraction of pixels where `x -> x + u(x)` has a Jacobian determinant
    <= 0 (central differences; 'ij' channels: rows, columns).

    >>> folding_fraction(np.zeros((1, 5, 5, 2)))
    0.0
    """
    u = np.asarray(displacement, np.float64)
    du_rows = np.gradient(u, axis=1)  # d u / d row, both channels
    du_cols = np.gradient(u, axis=2)
    det = (1.0 + du_rows[..., 0]) * (1.0 + du_cols[..., 1]) - (
        du_cols[..., 0] * du_rows[..., 1]
    )
    return float(np.mean(det <= 0.0))


def dice(a, b, threshold=0.5):
    """Dice overlap of the thresholded images, averaged over the batch."""
    a, b = a > threshold, b > threshold
    overlap = np.sum(a & b, axis=(1, 2, 3))
    total = np.sum(a, axis=(1, 2, 3)) + np.sum(b, axis=(1, 2, 3))
    return float(np.mean(2.0 * overlap / np.maximum(total, 1)))


def _evaluate(model, moving, fixed, batch_size):
    fixed_batch = np.repeat(fixed[None], len(moving), axis=0)
    warped, displacement = model.predict(
        [moving, fixed_batch], batch_size=batch_size, verbose=0
    )
    return {
        "mse_before": float(np.mean((moving - fixed_batch) ** 2)),
        "mse_after": float(np.mean((warped - fixed_batch) ** 2)),
        "dice_before": dice(moving, fixed_batch),
        "dice_after": dice(warped, fixed_batch),
        "folding_fraction": folding_fraction(displacement),
        "max_displacement_px": float(np.abs(displacement).max()),
    }, (warped, displacement)


def _plot(path, moving, fixed, warped, displacement, count=6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_stn import viz

    figure, axes = plt.subplots(count, 4, figsize=(8, 2 * count))
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype("float64")
    for i in range(count):
        u = displacement[i]
        panels = [moving[i], fixed, warped[i]]
        titles = ["moving", "fixed", "warped"]
        for ax, image, title in zip(axes[i], panels, titles):
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
            ax.set_title(title if i == 0 else "")
        # Where each output pixel reads the moving digit: the deformed grid.
        ax = axes[i, 3]
        ax.imshow(moving[i, ..., 0], cmap="gray", vmin=0, vmax=1, alpha=0.4)
        read_r, read_c = rows + u[..., 0], cols + u[..., 1]
        for k in range(0, SIZE, 2):
            ax.plot(read_c[k, :], read_r[k, :], color="tab:red", lw=0.6)
            ax.plot(read_c[:, k], read_r[:, k], color="tab:red", lw=0.6)
        ax.set_xlim(-0.5, SIZE - 0.5)
        ax.set_ylim(SIZE - 0.5, -0.5)
        ax.set_title("deformed grid" if i == 0 else "")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    figure.tight_layout()
    viz.save_figure(figure, path)


def volume_smoke(steps, seed):
    """Registers a synthetic 16^3 blob to a shifted copy with a tiny 3-D
    network: a smoke run of the 3-D path (training lowers the MSE)."""
    gen = np.random.default_rng(seed)
    grid = np.stack(np.mgrid[0:16, 0:16, 0:16], -1).astype("float32")

    def blob(centre):
        return np.exp(-np.sum((grid - centre) ** 2, -1) / 8.0)[..., None]

    moving = np.stack([blob(gen.uniform(6, 9, 3)) for _ in range(8)])
    fixed = np.stack([blob(np.full(3, 7.5))] * 8).astype("float32")
    moving_in = keras.Input((16, 16, 16, 1))
    fixed_in = keras.Input((16, 16, 16, 1))
    x = keras.layers.Concatenate()([moving_in, fixed_in])
    x = keras.layers.Conv3D(8, 3, padding="same", activation="relu")(x)
    velocity = keras.layers.Conv3D(
        3,
        3,
        padding="same",
        kernel_initializer=keras.initializers.RandomNormal(stddev=1e-5),
    )(x)
    displacement = keras_stn.layers.VelocityIntegration(steps=5)(velocity)
    warped = keras_stn.layers.DenseSpatialTransformer()(
        [moving_in, displacement]
    )
    model = keras.Model([moving_in, fixed_in], warped)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    before = float(np.mean((moving - fixed) ** 2))
    for _ in range(steps):
        model.train_on_batch([moving, fixed], fixed)
    after = float(
        np.mean((model.predict([moving, fixed], verbose=0) - fixed) ** 2)
    )
    return {"volume_mse_before": before, "volume_mse_after": after}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_run_arguments(
        parser, "registration", epochs=10, batch_size=64, train_examples=0
    )
    parser.add_argument("--digit", type=int, default=5, choices=range(10))
    parser.add_argument(
        "--smoothness",
        type=float,
        default=0.05,
        help="weight of the displacement's squared gradient (default 0.05)",
    )
    parser.add_argument(
        "--steps", type=int, default=7, help="scaling-and-squaring steps"
    )
    parser.add_argument(
        "--volume-smoke",
        type=int,
        default=0,
        metavar="STEPS",
        help="also train a tiny 3-D registration for STEPS steps",
    )
    args = _common.parse_run_arguments(parser)
    keras.utils.set_random_seed(args.seed)

    train_images, train_labels = mnist.load_mnist(
        args.manual_dir, "train", args.data_dir
    )
    test_images, test_labels = mnist.load_mnist(
        args.manual_dir, "test", args.data_dir
    )
    train = _pad(train_images[train_labels == args.digit])
    test = _pad(test_images[test_labels == args.digit])
    fixed, train = train[0], train[1:]
    if args.train_examples:
        train = train[: args.train_examples]
    if args.test_examples:
        test = test[: args.test_examples]

    model = registration_model(steps=args.steps)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=["mse", smoothness],
        loss_weights=[1.0, args.smoothness],
    )
    before, _ = _evaluate(model, test, fixed, args.batch_size)
    fixed_batch = np.repeat(fixed[None], len(train), axis=0)
    start = time.perf_counter()
    model.fit(
        [train, fixed_batch],
        [fixed_batch, np.zeros((len(train), SIZE, SIZE, 2), "float32")],
        batch_size=args.batch_size,
        epochs=args.epochs,
        shuffle=True,
        verbose=args.verbose,
    )
    seconds = time.perf_counter() - start
    after, (warped, displacement) = _evaluate(
        model, test, fixed, args.batch_size
    )
    record = {
        "backend": keras.backend.backend(),
        "digit": args.digit,
        "train_digits": len(train),
        "test_digits": len(test),
        "epochs": args.epochs,
        "smoothness": args.smoothness,
        "steps": args.steps,
        "training_seconds": round(seconds, 1),
        "identity": before,
        "trained": after,
    }
    if args.volume_smoke:
        record["volume"] = volume_smoke(args.volume_smoke, args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    _plot(
        os.path.join(args.out_dir, "registration.png"),
        test,
        fixed,
        warped,
        displacement,
    )
    rows = [
        ("MSE to the fixed digit", "mse_before", "mse_after"),
        ("Dice (pixels > 0.5)", "dice_before", "dice_after"),
    ]
    lines = [
        f"# MNIST registration, digit {args.digit} "
        f"({keras.backend.backend()})",
        "",
        "| metric (test) | moving (before) | warped (after) |",
        "|---|---:|---:|",
    ]
    for label, key_before, key_after in rows:
        lines.append(
            f"| {label} | {after[key_before]:.4f} | {after[key_after]:.4f} |"
        )
    lines.append(
        f"| pixels with det(J) <= 0 | {before['folding_fraction']:.4%} | "
        f"{after['folding_fraction']:.4%} |"
    )
    if args.volume_smoke:
        volume = record["volume"]
        lines.append(
            f"| 3-D smoke MSE | {volume['volume_mse_before']:.4f} | "
            f"{volume['volume_mse_after']:.4f} |"
        )
    markdown = "\n".join(lines) + "\n"
    _common.write_results(args.out_dir, record, markdown)
    print(markdown)
    print(f"written: {args.out_dir}/results.json, results.md, registration.png")


if __name__ == "__main__":
    main()
