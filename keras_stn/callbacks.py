"""Keras callbacks that record what spatial transformers learn."""

import importlib.util
import os
import re

import keras

from keras_stn import viz
from keras_stn.utils import argument_validation


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
    `{layer}_training.gif`. Each `fit` call from epoch 0 starts a new
    record: `paths` and the animation cover that run only.
    Resuming: a `fit` whose first epoch is E > 0 (`fit(initial_epoch=E)`,
    or `keras.callbacks.BackupAndRestore` restoring) continues the run
    whose pictures are in `directory`. It leaves `{layer}_initial.png`
    alone, numbers steps on from E times the steps per epoch, and its
    animation starts with that run's pictures still on disk: the initial
    one, the epochs up to E and (when the number of steps per epoch is
    known) the steps up to E's end. Pictures of epochs after E, from an
    interrupted run, are left out and redrawn as training gets there.
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
        self.images = argument_validation.check_images(images)[:max_examples]
        self.directory = argument_validation.check_path(directory, "directory")
        self.labels = argument_validation.check_labels(labels, len(self.images))
        self.every_n_epochs = argument_validation.check_optional_positive_int(
            every_n_epochs, "every_n_epochs"
        )
        self.every_n_batches = argument_validation.check_optional_positive_int(
            every_n_batches, "every_n_batches"
        )
        self.animation = argument_validation.check_bool(animation, "animation")
        self.max_examples = max_examples
        self.layer_name = argument_validation.check_optional_str(
            layer_name, "layer_name"
        )
        self.paths = []
        self.animation_path = None
        self.animation_paths = []
        self._frames = {}
        self._started = False
        self._stems = []
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
        self._started = False
        # Fails now, not after the first epoch, on a model with no
        # transformer or none named `layer_name`.
        self._stems = [
            _file_stem(layer.name)
            for layer in viz.find_transformers(self.model, self.layer_name)
        ]

    def on_epoch_begin(self, epoch, logs=None):
        # The first epoch's index is the first moment a callback learns
        # whether this run starts afresh or resumes (BackupAndRestore
        # restores the weights in its own on_train_begin, before or after
        # this callback's).
        if not self._started:
            self._started = True
            if epoch == 0:
                self._snapshot("initial", "initial")
            else:
                self._resume(epoch)
        self._epoch_start_steps = self._steps

    def _resume(self, epoch):
        """Takes up the earlier run's step count and pictures on disk."""
        steps_per_epoch = (self.params or {}).get("steps")
        for stem in self._stems:
            earlier = _earlier_frames(
                self.directory, stem, epoch, steps_per_epoch
            )
            self._frames[stem] = [path for _, path in earlier]
            if steps_per_epoch is None:
                # Without a step count per epoch, go on after the earlier
                # run's last step picture rather than write over it.
                self._steps = max(
                    [self._steps, *_step_numbers(self.directory, stem)]
                )
        if steps_per_epoch is not None:
            self._steps = epoch * steps_per_epoch

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


def _pictures(directory, stem):
    """`(kind, number, path)` of `stem`'s snapshots in `directory`: kind
    `"initial"` (number 0), `"batch"` or `"epoch"`."""
    pattern = re.compile(
        rf"{re.escape(stem)}_(?:(initial)|(batch|epoch)_(\d+))\.png"
    )
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        match = pattern.fullmatch(name)
        if match:
            kind = match.group(1) or match.group(2)
            number = int(match.group(3) or 0)
            found.append((kind, number, os.path.join(directory, name)))
    return found


def _step_numbers(directory, stem):
    return [
        number
        for kind, number, _ in _pictures(directory, stem)
        if kind == "batch"
    ]


def _earlier_frames(directory, stem, epoch, steps_per_epoch):
    """The earlier run's pictures up to the end of epoch `epoch` (1-based
    count of finished epochs), as `(position, path)` in training order:
    step pictures only when `steps_per_epoch` places them among the epoch
    ones."""
    frames = []
    for kind, number, path in _pictures(directory, stem):
        if kind == "initial":
            frames.append((-1.0, path))
        elif kind == "epoch" and number <= epoch:
            # After the step picture of the same step, as during training.
            steps = 1 if steps_per_epoch is None else steps_per_epoch
            frames.append((number * steps + 0.5, path))
        elif (
            kind == "batch"
            and steps_per_epoch is not None
            and number <= epoch * steps_per_epoch
        ):
            frames.append((float(number), path))
    return sorted(frames)
