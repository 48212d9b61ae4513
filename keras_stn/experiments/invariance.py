"""How far a network's invariance reaches: accuracy as one test-time
distortion grows.

Each sweep puts the MNIST test digits on a canvas (the RTS set's 42x42 by
default) with one factor set and the others neutral: turned by a growing
angle, scaled by a growing or shrinking factor, or moved right and down by
a growing offset. `accuracy_curves` measures each model at every value;
`plot_curves` draws them with the range the RTS training set covers shaded,
so one sees where max-pooling's small built-in invariance ends and where a
spatial transformer's begins.
"""

import numpy as np
import tensorflow as tf

from keras_stn.experiments.data import placement

# sweep -> (values, unit, the RTS training set's range of that factor).
SWEEPS = {
    "rotation": (np.arange(0.0, 181.0, 15.0), "degrees", (0.0, 45.0)),
    "scale": (np.round(np.arange(0.4, 1.61, 0.1), 2), "factor", (0.7, 1.2)),
    "translation": (np.arange(0.0, 15.0, 1.0), "px right and down", (0.0, 7.0)),
}


def _check_sweep(sweep):
    if sweep not in SWEEPS:
        raise ValueError(
            f"`sweep` must be one of {', '.join(SWEEPS)}. Received: "
            f"sweep={sweep!r}"
        )


def distort(digits, sweep, value, canvas_size=42):
    """The digits placed on a canvas with one factor set.

    Args:
        digits: float tensor `(B, 28, 28, 1)` in `[0, 1]`.
        sweep: `"rotation"` (value in degrees), `"scale"` (a factor) or
            `"translation"` (pixels right and down, from the centre).
        value: float.
        canvas_size: int, the canvas' side. Defaults to 42 (RTS).
    Returns:
        float32 tensor `(B, S, S, 1)`.
    """
    _check_sweep(sweep)
    batch = tf.shape(digits)[0]
    angle = tf.zeros([batch])
    scale = tf.ones([batch])
    position = tf.zeros([batch, 2])
    if sweep == "rotation":
        angle += value
    elif sweep == "scale":
        scale *= value
    else:
        position += value
    out = placement.warp_similarity(
        tf.cast(digits, tf.float32), angle, scale, position, canvas_size
    )
    return tf.clip_by_value(out, 0.0, 1.0)


def accuracy_curves(
    models, digits, labels, sweeps=tuple(SWEEPS), canvas_size=42
):
    """Test accuracy of each model at every value of every sweep.

    Args:
        models: dict name -> `keras.Model` on `(B, S, S, 1)` images.
        digits: uint8 or float array `(N, 28, 28, 1)` (uint8 is scaled to
            `[0, 1]`).
        labels: int array `(N,)`.
        sweeps: names from `SWEEPS`.
        canvas_size: int. Defaults to 42.
    Returns:
        dict sweep -> `{"values": [...], "unit": str, "trained": [lo, hi],
        "accuracy": {name: [...]}}`.
    """
    digits = np.asarray(digits)
    if digits.dtype == np.uint8:
        digits = digits.astype("float32") / 255.0
    labels = np.asarray(labels)
    curves = {}
    for sweep in sweeps:
        _check_sweep(sweep)
        values, unit, trained = SWEEPS[sweep]
        accuracy = {name: [] for name in models}
        for value in values:
            images = distort(digits, sweep, float(value), canvas_size)
            for name, model in models.items():
                predicted = model.predict(images, batch_size=500, verbose=0)
                accuracy[name].append(
                    float(np.mean(predicted.argmax(-1) == labels))
                )
        curves[sweep] = {
            "values": [float(v) for v in values],
            "unit": unit,
            "trained": list(trained),
            "accuracy": accuracy,
        }
    return curves


def plot_curves(curves, title=None):
    """One panel per sweep: accuracy against the factor, one line per model,
    the training set's range shaded.

    Args:
        curves: as returned by `accuracy_curves`.
        title: str or None.
    Returns:
        A matplotlib `Figure`.
    """
    from keras_stn import viz

    figure = viz.new_figure(figsize=(4.2 * len(curves), 3.4))
    axes = figure.subplots(1, len(curves), squeeze=False)
    for axis, (sweep, curve) in zip(axes.flat, curves.items()):
        axis.axvspan(*curve["trained"], color="0.9", label="RTS training")
        for name, accuracy in curve["accuracy"].items():
            axis.plot(curve["values"], accuracy, marker="o", label=name)
        axis.set_xlabel(f"{sweep} ({curve['unit']})")
        axis.set_ylabel("test accuracy")
        axis.set_ylim(0.0, 1.02)
        axis.grid(alpha=0.3)
    axes.flat[0].legend(loc="lower left", fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
