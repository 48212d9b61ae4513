"""The model builders: shapes, identity start, one training step, errors."""

import keras
import numpy as np
import pytest

from keras_stn import models
from tests import test_case


@pytest.mark.parametrize(
    "builder,kwargs",
    [
        (models.cnn, {}),
        (models.fcn, {}),
        (models.st_cnn, {"transform": "affine"}),
        (models.st_cnn, {"transform": "projective"}),
        (models.st_cnn, {"transform": "tps"}),
        (models.st_fcn, {"transform": "affine"}),
    ],
)
def test_mnist_builders_classify_and_train(builder, kwargs):
    model = builder((42, 42, 1), 10, **kwargs)
    images = test_case.rng(0).random((4, 42, 42, 1)).astype("float32")
    probs = model.predict(images, verbose=0)
    assert probs.shape == (4, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = [np.array(w) for w in model.trainable_weights]
    model.fit(images, np.arange(4), epochs=1, verbose=0)
    after = [np.array(w) for w in model.trainable_weights]
    assert any(np.any(a != b) for a, b in zip(before, after))


def test_st_cnn_trains_one_batch_and_round_trips_through_keras_file(tmp_path):
    # Every family's layers round-trip in layers_test; this is the paper's
    # network as a whole, on each backend.
    model = models.st_cnn((28, 28, 1), 10, transform="affine", filters=(4, 4))
    images = test_case.rng(5).random((4, 28, 28, 1)).astype("float32")
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss="sparse_categorical_crossentropy",
    )
    head = [w for w in model.weights if "spatial_transformer" in w.path]
    before = [test_case.to_numpy(w) for w in head]
    model.fit(images, np.arange(4), epochs=1, batch_size=4, verbose=0)
    # The transformer's own weights learn, off the identity start.
    after = [test_case.to_numpy(w) for w in head]
    assert any(np.any(a != b) for a, b in zip(before, after))
    path = str(tmp_path / "st_cnn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        test_case.to_numpy(loaded(images)), test_case.to_numpy(model(images))
    )


def test_st_cnn_starts_as_its_cnn():
    # Same classifier weights: at initialisation the transformer is the
    # identity, so the ST-CNN computes the CNN's function.
    keras.utils.set_random_seed(1)
    plain = models.cnn((28, 28, 1), 10, classifier_activation=None)
    st = models.st_cnn(
        (28, 28, 1), 10, classifier_activation=None, filters=(32, 32)
    )
    st_body = [w for w in st.weights if "spatial_transformer" not in w.path]
    for dst, src in zip(st_body, plain.weights):
        dst.assign(src)
    images = test_case.rng(2).random((3, 28, 28, 1)).astype("float32")
    test_case.assert_close(st(images), plain(images), 1e-4)


@pytest.mark.parametrize("side", [28, 42])
@pytest.mark.parametrize("transform", ["affine", "projective", "tps"])
def test_st_networks_have_about_their_plain_parameters(side, transform):
    # As in the paper: the transformer's parameters come out of the body.
    shape = (side, side, 1)
    for st, plain in [
        (models.st_cnn(shape, transform=transform), models.cnn(shape)),
        (models.st_fcn(shape, transform=transform), models.fcn(shape)),
    ]:
        ratio = st.count_params() / plain.count_params()
        assert abs(ratio - 1) < 0.03, (st.name, ratio)


def test_explicit_widths_are_kept():
    model = models.st_cnn((42, 42, 1), filters=(8, 4))
    assert [
        layer.filters for layer in model.layers if "conv" in layer.name
    ] == [
        8,
        4,
    ]


def test_logits_when_no_classifier_activation():
    model = models.st_fcn((28, 28, 1), 5, classifier_activation=None)
    out = model(np.zeros((2, 28, 28, 1), "float32"))
    assert out.shape == (2, 5)


@pytest.mark.parametrize(
    "call,pattern",
    [
        (lambda: models.cnn((28, 28), 10), r"`input_shape` must be three"),
        (lambda: models.fcn((28, 28, 1), 0), r"`num_classes` must be a"),
        (
            lambda: models.st_cnn((28, 28, 1), 10, transform="warp"),
            r"`transform` must be one of",
        ),
        (
            lambda: models.wrap_backbone("resnet", 10),
            r"`backbone` must be a keras.Model",
        ),
    ],
)
def test_bad_arguments_name_the_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def _tiny_backbone(size):
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(4, 3, strides=2),
            keras.layers.ReLU(),
        ],
        name="tiny",
    )


def test_wrap_backbone_runs_parallel_attention_views():
    model = models.wrap_backbone(
        _tiny_backbone(16), 7, num_transformers=3, input_size=32, sample_size=16
    )
    images = test_case.rng(3).random((2, 32, 32, 3)).astype("float32")
    assert model.predict(images, verbose=0).shape == (2, 7)
    # One backbone, shared by the three views.
    assert sum(1 for layer in model.layers if layer.name == "tiny") == 1
    with pytest.raises(ValueError, match=r"`backbone` must take the"):
        models.wrap_backbone(_tiny_backbone(16), 7, sample_size=24)


@pytest.mark.large
def test_wrap_backbone_with_inception_v3():
    backbone = keras.applications.InceptionV3(
        include_top=False, weights=None, input_shape=(75, 75, 3)
    )
    model = models.wrap_backbone(
        backbone, 200, num_transformers=2, input_size=150, sample_size=75
    )
    images = test_case.rng(4).random((1, 150, 150, 3)).astype("float32")
    assert model.predict(images, verbose=0).shape == (1, 200)
