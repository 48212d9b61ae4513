import keras
import numpy as np
import pytest

from keras_stn.experiments.data import distorted
from keras_stn.experiments.data import distortions
from keras_stn.experiments.data import mnist
from tests.experiments.data import helpers

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.large]

distorted_mnist = distorted.distorted_mnist
SIZES = {"R": 28, "RTS": 42, "P": 28, "E": 28, "TC": 60}
# float32 rounding of the grid: sampling points are pixel centres +-1e-6.
TOLERANCE = 1e-5
IDENTITY_STRENGTH = {
    "R": {"angle_range": (0, 0)},
    "RTS": {"angle_range": (0, 0), "scale_range": (1, 1), "canvas_size": 28},
    "P": {"scale_range": (1, 1), "corner_sigma": 0},
    "E": {"control_sigma": 0},
    "TC": {"canvas_size": 28, "num_patches": 0},
}


@pytest.mark.parametrize("variant", list(SIZES))
def test_batches_shapes_dtypes_and_labels(variant, mnist_dirs):
    dataset = distorted_mnist(
        variant.lower(), "test", batch_size=32, with_params=True, **mnist_dirs
    )
    images, labels, params = helpers.first(dataset)
    size = SIZES[variant]
    assert images.shape == (32, size, size, 1) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    assert labels.shape == (32,) and labels.dtype == np.int64
    np.testing.assert_array_equal(params["index"], np.arange(32))
    source = mnist.load_split("test", **mnist_dirs)
    np.testing.assert_array_equal(labels, source.labels[:32])
    # Every digit keeps its ink on the canvas, times the area factor.
    ink = helpers.digits(mnist_dirs, "test", params["index"]).sum((1, 2))
    ratio = images.sum((1, 2, 3)) / ink
    if variant != "P":
        assert ratio.min() > 0.4
    else:
        # P's area factor is the moved corners' quadrilateral's: strong
        # perspective squeezes a digit (and may push part of it out).
        corners = params["scale"][:, None, None] * 14 * distortions.CORNERS
        corners = corners + params["corners"]
        x, y = corners[..., 0], corners[..., 1]
        x_next, y_next = np.roll(x, -1, axis=1), np.roll(y, -1, axis=1)
        area = np.abs((x * y_next - y * x_next).sum(1)) / 2 / 28**2
        assert np.corrcoef(ratio, area)[0, 1] > 0.8
        assert ratio.min() > 0.05


@pytest.mark.parametrize("variant", list(IDENTITY_STRENGTH))
def test_identity_strength_returns_the_source_digits(variant, mnist_dirs):
    dataset = distorted_mnist(
        variant,
        "train",
        batch_size=16,
        seed=1,
        with_params=True,
        **IDENTITY_STRENGTH[variant],
        **mnist_dirs,
    )
    images, labels, params = helpers.first(dataset)
    index = params["index"]
    assert len(set(index.tolist())) == 16  # a shuffled training batch
    source = helpers.digits(mnist_dirs, "train", index)
    np.testing.assert_allclose(images[..., 0], source, atol=TOLERANCE)
    train = mnist.load_split("train", **mnist_dirs)
    np.testing.assert_array_equal(labels, train.labels[index])


def test_recorded_ranges_hold(mnist_dirs):
    def params(variant):
        dataset = distorted_mnist(
            variant, "test", batch_size=256, with_params=True, **mnist_dirs
        )
        return helpers.first(dataset)[2]

    angle = params("R")["angle"]
    assert angle.min() >= -90 and angle.max() <= 90
    assert angle.min() < -85 and angle.max() > 85
    rts = params("RTS")
    assert rts["angle"].min() >= -45 and rts["angle"].max() <= 45
    assert rts["scale"].min() >= 0.7 and rts["scale"].max() <= 1.2
    margin = (42 - 28 * rts["scale"])[:, None] / 2
    assert (np.abs(rts["position"]) <= margin + 1e-5).all()
    assert (np.abs(rts["position"]) / margin).max() > 0.95
    projective = params("P")
    assert projective["scale"].min() >= 0.75
    assert projective["scale"].max() <= 1.0
    assert projective["corners"].std() == pytest.approx(5.0, rel=0.1)
    elastic = params("E")
    assert elastic["displacement"].shape == (256, 16, 2)
    assert elastic["displacement"].std() == pytest.approx(1.5, rel=0.05)


def test_rts_images_follow_their_recorded_parameters(mnist_dirs):
    """The centroid of each digit lands where its parameters send it."""
    images, _, params = helpers.first(
        distorted_mnist(
            "RTS", "test", batch_size=64, with_params=True, **mnist_dirs
        )
    )
    source = helpers.digits(mnist_dirs, "test", params["index"])

    def centroid(image):
        y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
        return np.array([(image * x).sum(), (image * y).sum()]) / image.sum()

    for k in range(64):
        angle = np.deg2rad(params["angle"][k])
        rotation = np.array(
            [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
        )
        offset = centroid(source[k]) - 14.0
        expected = 21.0 + params["scale"][k] * rotation @ offset
        expected = expected + params["position"][k]
        np.testing.assert_allclose(
            centroid(images[k, ..., 0]), expected, atol=0.25
        )


def test_tc_patches_keep_clear_of_the_digit_centre(mnist_dirs):
    clutter = dict(batch_size=64, seed=5, with_params=True, **mnist_dirs)
    images, _, params = helpers.first(distorted_mnist("TC", "train", **clutter))
    bare, _, bare_params = helpers.first(
        distorted_mnist("TC", "train", num_patches=0, **clutter)
    )
    np.testing.assert_array_equal(params["index"], bare_params["index"])
    np.testing.assert_array_equal(params["top_left"], bare_params["top_left"])
    source = helpers.digits(mnist_dirs, "train", params["index"])
    for k in range(64):
        x, y = params["top_left"][k]
        np.testing.assert_allclose(
            bare[k, y : y + 28, x : x + 28, 0], source[k], atol=TOLERANCE
        )
        centre = (slice(y + 10, y + 18), slice(x + 10, x + 18))
        np.testing.assert_array_equal(images[k][centre], bare[k][centre])
        patches = params["patch_top_left"][k]
        for axis, start in ((0, x), (1, y)):
            apart = (patches[:, axis] + 6 <= start + 10) | (
                patches[:, axis] >= start + 18
            )
            if axis == 0:
                clear = apart
            else:
                clear = clear | apart
        assert clear.all()
    assert (params["patch_index"] != params["index"][:, None]).all()
    assert (images.sum((1, 2, 3)) > bare.sum((1, 2, 3))).mean() > 0.9


def test_the_test_split_is_identical_on_every_call(mnist_dirs):
    for variant in ("RTS", "TC"):
        first = helpers.batches(
            distorted_mnist(variant, "test", batch_size=32, **mnist_dirs), 2
        )
        again = helpers.batches(
            distorted_mnist(variant, "test", batch_size=32, **mnist_dirs), 2
        )
        for (a, la), (b, lb) in zip(first, again):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(la, lb)
    other = helpers.first(
        distorted_mnist("RTS", "test", batch_size=32, seed=1, **mnist_dirs)
    )
    assert not np.array_equal(other[0], first[0][0])


def test_validation_is_fixed_and_disjoint_from_training(mnist_dirs):
    dataset = distorted_mnist(
        "R", "validation", batch_size=32, with_params=True, **mnist_dirs
    )
    epochs = [helpers.first(dataset) for _ in range(2)]
    np.testing.assert_array_equal(epochs[0][0], epochs[1][0])
    np.testing.assert_array_equal(epochs[0][2]["index"], 50000 + np.arange(32))


def test_training_draws_fresh_distortions_each_epoch(mnist_dirs):
    def epochs(seed):
        dataset = distorted_mnist(
            "RTS",
            "train[:64]",
            batch_size=64,
            seed=seed,
            with_params=True,
            **mnist_dirs,
        )
        return [helpers.first(dataset) for _ in range(2)]

    def by_index(element):
        order = np.argsort(element[2]["index"])
        return element[0][order], element[2]["angle"][order]

    for seed in (None, 4):
        first, second = epochs(seed)
        assert sorted(first[2]["index"]) == list(range(64))
        assert sorted(second[2]["index"]) == list(range(64))
        images_1, angles_1 = by_index(first)
        images_2, angles_2 = by_index(second)
        assert (angles_1 != angles_2).all()
        assert not np.allclose(images_1, images_2)
    seeded, again = epochs(4), epochs(4)
    for a, b in zip(seeded, again):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    unseeded, other = epochs(None), epochs(None)
    assert not np.array_equal(by_index(unseeded[0])[1], by_index(other[0])[1])


@pytest.mark.parametrize("variant", ["RTS", "TC"])
def test_numbered_epochs_depend_on_the_seed_and_epoch_alone(
    variant, mnist_dirs
):
    def batches(initial_epoch, seed=4):
        dataset = distorted_mnist(
            variant,
            "train[:40]",
            batch_size=16,
            seed=seed,
            epochs=3,
            initial_epoch=initial_epoch,
            with_params=True,
            **mnist_dirs,
        )
        return list(dataset.as_numpy_iterator())

    run = batches(0)
    # Three epochs of 16 + 16 + 8, one after another.
    assert [len(b[1]) for b in run] == [16, 16, 8] * 3
    epochs = [
        np.concatenate([b[2]["index"] for b in run[i : i + 3]])
        for i in (0, 3, 6)
    ]
    for indices in epochs:
        assert sorted(indices) == list(range(40))
    assert not np.array_equal(epochs[0], epochs[1])
    # From epoch 2 (as a resumed run starts), epochs 2 and 3 are the same.
    resumed = batches(1)
    assert len(resumed) == 6
    for got, want in zip(resumed, run[3:]):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert batches(3) == []
    other = batches(0, seed=5)
    assert not np.array_equal(other[0][0], run[0][0])


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"epochs": 2}, "needs training=True and an int seed"),
        ({"epochs": 2, "seed": 1, "training": False}, "training=False"),
        ({"epochs": 0, "seed": 1}, "`epochs`"),
        ({"epochs": 2, "initial_epoch": 3, "seed": 1}, "`initial_epoch`"),
    ],
)
def test_bad_epochs_are_named(arguments, message, mnist_dirs):
    with pytest.raises(ValueError, match=message):
        distorted_mnist("R", "train[:40]", **arguments, **mnist_dirs)


def test_drop_remainder(mnist_dirs):
    dataset = distorted_mnist(
        "R", "test[:40]", batch_size=16, drop_remainder=True, **mnist_dirs
    )
    shapes = [images.shape for images, _ in dataset.as_numpy_iterator()]
    assert shapes == [(16, 28, 28, 1)] * 2
    assert dataset.element_spec[0].shape == (16, 28, 28, 1)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"variant": "Q"}, "`variant`"),
        ({"variant": None}, "`variant`"),
        ({"variant": "R", "scale_range": (1, 1)}, "scale_range"),
        ({"variant": "TC", "corner_sigma": 1}, "corner_sigma"),
        ({"variant": "R", "batch_size": 0}, "`batch_size`"),
        ({"variant": "R", "seed": 1.5}, "`seed`"),
        ({"variant": "R", "with_params": 1}, "`with_params`"),
        ({"variant": "RTS", "canvas_size": 30}, "`canvas_size`"),
    ],
)
def test_bad_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        distorted_mnist(**arguments)


def test_other_keras_backends_get_a_clear_error(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=tensorflow"):
        distorted_mnist("R")
