"""Keras callbacks that record what spatial transformers learn."""

import importlib.util
import os
import re

import keras

from keras_stn import viz
from keras_stn.utils import argument_validation


def _check_every(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive int or None. Received: "
            f"{name}={value!r}"
        )
    return value


def _file_stem(name):
    """A layer name made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class TransformerSnapshots(keras.callbacks.Callback):
    """Saves pictures of every transformer's view of fixed images as it
    trains, and an animation of them at the end.

    At the start of training (the identity, `{layer}_initial.png`), every
    `every_n_epochs` epochs (`{layer}_epoch_{epoch:03d}.png`, epochs from
    1) and every `every_n_batches` training steps counted across epochs
    (`{layer}_batch_{step:06d}.png`), each transformer of the model (or only
    `layer_name`) is drawn with `viz.plot_views` on `images`. At the end,
    with `animation`, the snapshots of this training run become
    `{layer}_training.gif`. Each `fit` call starts a new record: `paths`
    and the animation cover that run only.
    Convention: as `viz.plot_views`; the model runs in inference mode.

    Args:
        images: float array `(B, H, W, C)`, the model's input; the first
            `max_examples` are kept.
        directory: str or path-like, where files go (created if needed).
        labels: optional sequence of ints or strings, one per image (the
            first `max_examples` are kept), shown at the left of each row.
        every_n_epochs: positive int or None (no epoch snapshots).
            Defaults to 1.
        every_n_batches: positive int or None (the default, no step
            snapshots).
        animation: bool, write the GIF at the end. Defaults to `True`.
        max_examples: positive int, rows per picture. Defaults to 8.
        layer_name: optional str, draw only this transformer.
    Attributes:
        paths: list of str, the PNGs written in this run, in order.
        animation_path: str or None, the GIF of the first (often only)
            transformer; `animation_paths` holds one per transformer.
    Raises:
        ValueError: bad arguments (the message names the argument); at the
            start of training, a model with no transformer or none named
            `layer_name`.
        ImportError: without matplotlib.

    Example:
    >>> import tempfile
    >>> import numpy as np, keras, keras_stn
    >>> model = keras.Sequential([
    ...     keras_stn.SpatialTransformer(transform="attention", name="st"),
    ...     keras.layers.Flatten(),
    ...     keras.layers.Dense(2),
    ... ])
    >>> images = np.random.rand(4, 16, 16, 1).astype("float32")
    >>> model.compile("sgd", "mse")
    >>> directory = tempfile.TemporaryDirectory()
    >>> snapshots = TransformerSnapshots(images[:2], directory.name)
    >>> _ = model.fit(images, np.zeros((4, 2)), callbacks=[snapshots],
    ...               verbose=0)
    >>> [os.path.basename(path) for path in snapshots.paths]
    ['st_initial.png', 'st_epoch_001.png']
    >>> os.path.basename(snapshots.animation_path)
    'st_training.gif'
    >>> directory.cleanup()
    """

    def __init__(
        self,
        images,
        directory,
        labels=None,
        every_n_epochs=1,
        every_n_batches=None,
        animation=True,
        max_examples=8,
        layer_name=None,
    ):
        super().__init__()
        if importlib.util.find_spec("matplotlib") is None:
            raise ImportError(
                "TransformerSnapshots draws with matplotlib: "
                'pip install "keras-stn[examples]"'
            )
        argument_validation.check_positive_int(max_examples, "max_examples")
        self.images = viz.check_images(images)[:max_examples]
        if not isinstance(directory, (str, os.PathLike)) or not str(directory):
            raise ValueError(
                "`directory` must be a non-empty str or path. Received: "
                f"directory={directory!r}"
            )
        if labels is not None:
            try:
                count = len(labels)
            except TypeError:
                count = None
            if count is None or count < len(self.images):
                raise ValueError(
                    "`labels` must hold one label per image. Received: "
                    f"labels={labels!r} for {len(self.images)} images"
                )
            labels = list(labels)[: len(self.images)]
        if not isinstance(animation, bool):
            raise ValueError(
                f"`animation` must be a bool. Received: animation={animation!r}"
            )
        if layer_name is not None and not isinstance(layer_name, str):
            raise ValueError(
                "`layer_name` must be a str or None. Received: "
                f"layer_name={layer_name!r}"
            )
        self.directory = os.fspath(directory)
        self.labels = labels
        self.every_n_epochs = _check_every(every_n_epochs, "every_n_epochs")
        self.every_n_batches = _check_every(every_n_batches, "every_n_batches")
        self.animation = animation
        self.max_examples = max_examples
        self.layer_name = layer_name
        self.paths = []
        self.animation_path = None
        self.animation_paths = []
        self._frames = {}
        self._steps = 0
        self._epoch_start_steps = 0

    def _snapshot(self, suffix, caption):
        """Draws every transformer and writes `{layer}_{suffix}.png`."""
        views = viz.transformer_views(
            self.model, self.images, layer_name=self.layer_name
        )
        for view in views:
            stem = _file_stem(view["name"])
            figure = viz.plot_views(
                view,
                labels=self.labels,
                max_examples=self.max_examples,
                title=f"{view['name']}: {caption}",
            )
            path = os.path.join(self.directory, f"{stem}_{suffix}.png")
            viz.save_figure(figure, path)
            self.paths.append(path)
            self._frames.setdefault(stem, []).append(path)

    def on_train_begin(self, logs=None):
        self.paths, self._frames = [], {}
        self.animation_path, self.animation_paths = None, []
        self._steps = self._epoch_start_steps = 0
        self._snapshot("initial", "initial")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start_steps = self._steps

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the last step run in this epoch (with
        # `steps_per_execution` > 1, calls skip steps).
        previous = self._steps
        self._steps = self._epoch_start_steps + batch + 1
        every = self.every_n_batches
        if every and self._steps // every > previous // every:
            step = self._steps // every * every
            self._snapshot(f"batch_{step:06d}", f"step {step}")

    def on_epoch_end(self, epoch, logs=None):
        every = self.every_n_epochs
        if every and (epoch + 1) % every == 0:
            self._snapshot(f"epoch_{epoch + 1:03d}", f"epoch {epoch + 1}")

    def on_train_end(self, logs=None):
        if not self.animation:
            return
        for stem, frames in self._frames.items():
            path = os.path.join(self.directory, f"{stem}_training.gif")
            self.animation_paths.append(viz.save_animation(frames, path))
        if self.animation_paths:
            self.animation_path = self.animation_paths[0]
