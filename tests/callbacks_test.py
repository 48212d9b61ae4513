"""keras_stn.callbacks.TransformerSnapshots during a real `fit`."""

import os
import sys

import keras
import numpy as np
import pytest

import keras_stn
from keras_stn import callbacks

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")


def _data(count=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((count, 16, 16, 1)).astype("float32")
    labels = rng.integers(0, 3, count)
    return images, labels


def _transformer(name):
    localization = keras.Sequential(
        [keras.layers.Flatten(), keras.layers.Dense(4, activation="relu")]
    )
    return keras_stn.SpatialTransformer(
        localization, transform="attention", output_size=(8, 8), name=name
    )


def _model(*names):
    inputs = keras.Input((16, 16, 1))
    x = inputs
    for name in names:
        x = _transformer(name)(x)
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    model.compile(
        keras.optimizers.SGD(0.1),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image)
    assert pixels.ndim == 3 and pixels.shape[-1] in (3, 4)
    assert min(pixels.shape[:2]) > 0
    return pixels


def test_fit_writes_snapshots_and_an_animation(tmp_path):
    images, labels = _data()
    snapshots = callbacks.TransformerSnapshots(
        images,
        tmp_path / "snaps",
        labels=labels,
        every_n_batches=1,
        max_examples=2,
    )
    model = _model("st")
    model.fit(
        images, labels, batch_size=4, epochs=1, callbacks=[snapshots], verbose=0
    )
    names = [os.path.basename(path) for path in snapshots.paths]
    assert names == [
        "st_initial.png",
        "st_batch_000001.png",
        "st_batch_000002.png",
        "st_epoch_001.png",
    ]
    for path in snapshots.paths:
        _png(path)
    assert snapshots.animation_path == str(
        tmp_path / "snaps" / "st_training.gif"
    )
    assert snapshots.animation_paths == [snapshots.animation_path]
    with Image.open(snapshots.animation_path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 4
    assert sorted(os.listdir(tmp_path / "snaps")) == sorted(
        [*names, "st_training.gif"]
    )


def test_one_file_set_per_transformer_or_only_the_named_one(tmp_path):
    images, labels = _data()
    model = _model("first", "second")
    every = callbacks.TransformerSnapshots(
        images, tmp_path / "all", every_n_epochs=2, max_examples=1
    )
    named = callbacks.TransformerSnapshots(
        images,
        tmp_path / "named",
        animation=False,
        max_examples=1,
        layer_name="second",
    )
    model.fit(
        images,
        labels,
        batch_size=8,
        epochs=2,
        callbacks=[every, named],
        verbose=0,
    )
    assert sorted(os.listdir(tmp_path / "all")) == [
        "first_epoch_002.png",
        "first_initial.png",
        "first_training.gif",
        "second_epoch_002.png",
        "second_initial.png",
        "second_training.gif",
    ]
    assert every.animation_path.endswith("first_training.gif")
    assert len(every.animation_paths) == 2
    assert sorted(os.listdir(tmp_path / "named")) == [
        "second_epoch_001.png",
        "second_epoch_002.png",
        "second_initial.png",
    ]
    assert named.animation_path is None


def test_snapshots_change_exactly_when_theta_does(tmp_path):
    images, _ = _data()
    model = _model("st")

    def initial(directory):
        snapshots = callbacks.TransformerSnapshots(
            images, tmp_path / directory, max_examples=2
        )
        snapshots.set_model(model)
        snapshots.on_train_begin()
        # The initial picture waits for the first epoch's index: at 0 the
        # run starts afresh (a later one resumes).
        assert snapshots.paths == []
        snapshots.on_epoch_begin(0)
        (path,) = snapshots.paths
        return _png(path)

    first, again = initial("a"), initial("b")
    np.testing.assert_array_equal(first, again)
    model.get_layer("st").heads[0].bias.assign([0.5, 0.25, 0.0])
    shifted = initial("c")
    assert shifted.shape == first.shape
    assert np.any(shifted != first)


def test_unknown_layer_name_fails_at_train_begin(tmp_path):
    images, _ = _data()
    snapshots = callbacks.TransformerSnapshots(
        images, tmp_path, layer_name="nope"
    )
    snapshots.set_model(_model("st"))
    with pytest.raises(ValueError, match="`layer_name`.*'st'.*nope"):
        snapshots.on_train_begin()


@pytest.mark.parametrize(
    "name,value",
    [
        ("images", np.zeros((16, 16, 1))),
        ("images", np.zeros((0, 16, 16, 1))),
        ("images", [["a"]]),
        ("directory", None),
        ("labels", [1]),
        ("labels", 3),
        ("every_n_epochs", 0),
        ("every_n_epochs", True),
        ("every_n_epochs", 1.5),
        ("every_n_batches", -2),
        ("animation", "yes"),
        ("max_examples", 0),
        ("layer_name", 3),
    ],
)
def test_bad_arguments(tmp_path, name, value):
    kwargs = {"images": _data()[0], "directory": tmp_path, name: value}
    with pytest.raises(ValueError, match=f"`{name}`"):
        callbacks.TransformerSnapshots(**kwargs)


def test_needs_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="keras-stn\\[examples\\]"):
        callbacks.TransformerSnapshots(_data()[0], tmp_path)


# Resuming -------------------------------------------------------------------


def _record_animations(monkeypatch):
    """Records the frames each GIF is written from (Pillow merges equal
    consecutive frames, so the GIF alone cannot tell)."""
    from keras_stn import viz

    written = {}
    save = viz.save_animation

    def recording(frames, path, **kwargs):
        written[os.path.basename(path)] = [os.path.basename(f) for f in frames]
        return save(frames, path, **kwargs)

    monkeypatch.setattr(viz, "save_animation", recording)
    return written


def _read(path):
    with open(path, "rb") as file:
        return file.read()


def test_resuming_keeps_the_initial_picture_and_the_earlier_frames(
    tmp_path, monkeypatch
):
    written = _record_animations(monkeypatch)
    images, labels = _data()
    model = _model("st")
    directory = tmp_path / "snaps"

    def fit(**kwargs):
        snapshots = callbacks.TransformerSnapshots(
            images, directory, every_n_batches=1, max_examples=1
        )
        model.fit(
            images,
            labels,
            batch_size=4,
            callbacks=[snapshots],
            verbose=0,
            **kwargs,
        )
        return [os.path.basename(path) for path in snapshots.paths]

    fit(epochs=2)
    initial = _read(directory / "st_initial.png")
    # Pictures of an interrupted run past the resume point: left out.
    for stale in ("st_epoch_009.png", "st_batch_000099.png"):
        (directory / stale).write_bytes(initial)
    # A state that draws differently from the initial one.
    model.get_layer("st").heads[0].bias.assign([0.5, 0.25, 0.0])
    resumed = fit(initial_epoch=2, epochs=3)
    # Two steps per epoch: the resumed run numbers its steps on from 4.
    assert resumed == [
        "st_batch_000005.png",
        "st_batch_000006.png",
        "st_epoch_003.png",
    ]
    assert _read(directory / "st_initial.png") == initial
    assert written["st_training.gif"] == [
        "st_initial.png",
        "st_batch_000001.png",
        "st_batch_000002.png",
        "st_epoch_001.png",
        "st_batch_000003.png",
        "st_batch_000004.png",
        "st_epoch_002.png",
        *resumed,
    ]
    # A new run from epoch 0 in the same directory starts afresh.
    assert fit(epochs=1)[0] == "st_initial.png"
    assert _read(directory / "st_initial.png") != initial
    assert written["st_training.gif"][0] == "st_initial.png"
    assert len(written["st_training.gif"]) == 4


def test_backup_and_restore_resume(tmp_path, monkeypatch):
    written = _record_animations(monkeypatch)
    images, labels = _data()
    model = _model("st")
    bias = model.get_layer("st").heads[0].bias

    class Shift(keras.callbacks.Callback):
        """Moves theta visibly at each epoch's end."""

        def on_epoch_end(self, epoch, logs=None):
            bias.assign(np.asarray(bias) * [0.8, 1.0, 1.0] + [0, 0.1, 0])

    class Stop(keras.callbacks.Callback):
        def __init__(self, stop):
            super().__init__()
            self.stop = stop

        def on_epoch_end(self, epoch, logs=None):
            if epoch == self.stop:
                raise RuntimeError("interrupted")

    def fit(stop):
        snapshots = callbacks.TransformerSnapshots(
            images, tmp_path / "snaps", max_examples=1
        )
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        # Shift first, so the pictures and the backup hold the shifted
        # weights; Stop last, after the backup of its epoch.
        model.fit(
            images,
            labels,
            batch_size=8,
            epochs=4,
            callbacks=[Shift(), snapshots, backup, Stop(stop)],
            verbose=0,
        )
        return snapshots

    with pytest.raises(RuntimeError, match="interrupted"):
        fit(stop=1)
    initial = _read(tmp_path / "snaps" / "st_initial.png")
    snapshots = fit(stop=None)
    assert _read(tmp_path / "snaps" / "st_initial.png") == initial
    assert [os.path.basename(path) for path in snapshots.paths] == [
        "st_epoch_003.png",
        "st_epoch_004.png",
    ]
    assert written["st_training.gif"] == [
        "st_initial.png",
        *[f"st_epoch_{epoch:03d}.png" for epoch in (1, 2, 3, 4)],
    ]


def test_resuming_without_a_step_count_numbers_steps_after_the_last(
    tmp_path, monkeypatch
):
    written = _record_animations(monkeypatch)
    images, _ = _data()
    snapshots = callbacks.TransformerSnapshots(
        images, tmp_path, every_n_batches=1, max_examples=1
    )
    for name in ("st_initial.png", "st_batch_000007.png", "st_epoch_001.png"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / name)
    snapshots.set_model(_model("st"))
    snapshots.set_params({"epochs": 3, "steps": None, "verbose": 0})
    snapshots.on_train_begin()
    snapshots.on_epoch_begin(1)
    snapshots.on_train_batch_end(0)
    snapshots.on_train_end()
    assert [os.path.basename(path) for path in snapshots.paths] == [
        "st_batch_000008.png"
    ]
    # Without a step count the earlier steps cannot be placed among the
    # epochs: the animation keeps the earlier initial and epoch pictures.
    assert written["st_training.gif"] == [
        "st_initial.png",
        "st_epoch_001.png",
        "st_batch_000008.png",
    ]
