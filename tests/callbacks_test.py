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
