"""The sets' batches: determinism per (seed, epoch, batch), labels and
the digits where the parameters put them, through the PyDataset adapter
(any backend)."""

import numpy as np
import pytest
from keras import ops

from keras_stn.experiments.data import distorted
from keras_stn.experiments.data import mnist
from keras_stn.experiments.data import source
from keras_stn.experiments.data import two_digit
from tests.experiments.data.conftest import digits

# float32 rounding of bilinear samples at pixel centres (test_case's
# dtype-keyed float32 tolerance).
TOLERANCE = 1e-5
# `DistortedMNIST("R", "test", 4)`'s first angles (seed 0, NumPy 2.x):
# changing the seeding scheme would silently change the test set.
PINNED_ANGLES = [-63.117905, -56.786034, 15.801168, -15.634444]


def _numpy(x):
    return ops.convert_to_numpy(x)


def _pydataset(batches, **kwargs):
    return source.PyDatasetSource(batches, **kwargs)


def _batch(dataset, index):
    images, labels, params = dataset[index]
    return _numpy(images), labels, params


def test_test_split_is_identical_across_instances(manual_dir):
    def make():
        return _pydataset(
            distorted.DistortedMNIST(
                "E", "test[:300]", 64, manual_dir=manual_dir, with_params=True
            )
        )

    first, second = make(), make()
    second.on_epoch_end()  # Keras' callbacks change nothing
    for index in (4, 0):
        a, b = _batch(first, index), _batch(second, index)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(_batch(first, 0)[2]["index"], np.arange(64))
    assert len(first) == 5 and len(first[4][1]) == 300 - 4 * 64
    with pytest.raises(IndexError, match="`index` must be an int >= 0 and < 5"):
        first[5]


def test_test_split_draws_are_pinned(manual_dir):
    batches = distorted.DistortedMNIST(
        "R", "test", 4, manual_dir=manual_dir, with_params=True
    )
    angles = batches.host(0)[2]["angle"]
    np.testing.assert_allclose(angles, PINNED_ANGLES, atol=1e-4)


def test_training_epochs_differ_repeat_and_resume_exactly(manual_dir):
    def make(**kwargs):
        return _pydataset(
            distorted.DistortedMNIST(
                "RTS",
                "train[:200]",
                64,
                manual_dir=manual_dir,
                seed=5,
                with_params=True,
                **kwargs,
            )
        )

    run = make(epochs=3)
    steps = run.steps_per_epoch
    assert steps == 4 and len(run) == 12 and run.batches.locate(9) == (2, 1)
    epoch_0, epoch_2 = _batch(run, 1), _batch(run, 2 * steps + 1)
    # The same (seed, epoch) gives the same batch, however it is reached.
    np.testing.assert_array_equal(epoch_0[0], _batch(make(), 1)[0])
    for resumed in (make(initial_epoch=2, epochs=3), make(initial_epoch=2)):
        again = _batch(resumed, 1)
        np.testing.assert_array_equal(again[0], epoch_2[0])
        np.testing.assert_array_equal(again[2]["index"], epoch_2[2]["index"])
    # Each epoch a fresh permutation of the split and fresh distortions.
    for epoch in (0, 2):
        order = run.batches.order(epoch)
        np.testing.assert_array_equal(np.sort(order), np.arange(200))
    assert not np.array_equal(run.batches.order(0), run.batches.order(2))
    assert not np.allclose(epoch_2[0], epoch_0[0])
    other_seed = distorted.DistortedMNIST(
        "RTS", "train[:200]", 64, manual_dir=manual_dir, seed=6
    )
    assert not np.allclose(_numpy(other_seed.element(1)[0]), epoch_0[0])
    assert make().num_batches is None
    with pytest.raises(TypeError, match="endless"):
        len(make())
    with pytest.raises(IndexError, match="< 4"):
        make(initial_epoch=2, epochs=3)[4]


def test_validation_is_fixed_and_disjoint_from_training(manual_dir):
    validation = distorted.DistortedMNIST(
        "R", "validation", 500, manual_dir=manual_dir, with_params=True
    )
    train = distorted.DistortedMNIST(
        "R", "train[:50000]", 500, manual_dir=manual_dir, with_params=True
    )
    assert not validation.training and train.training
    held = validation.host(0)[2]["index"]
    np.testing.assert_array_equal(held, np.arange(50000, 50500))
    assert train.order(0).max() < 50000


def test_labels_are_the_digits_labels(manual_dir):
    batches = distorted.DistortedMNIST(
        "TC",
        "train[:300]",
        100,
        manual_dir=manual_dir,
        seed=2,
        with_params=True,
    )
    all_labels = mnist.load_mnist(manual_dir, "train")[1]
    for index in (0, 4):
        _, labels, params = batches.element(index)
        np.testing.assert_array_equal(labels, all_labels[params["index"]])


def test_drop_remainder(manual_dir):
    def make(drop):
        return distorted.DistortedMNIST(
            "R", "test[:100]", 64, manual_dir=manual_dir, drop_remainder=drop
        )

    assert make(True).steps_per_epoch == 1 and make(False).steps_per_epoch == 2
    assert len(make(False).element(1)[1]) == 36
    with pytest.raises(ValueError, match="`batch_size` must be at most"):
        distorted.DistortedMNIST(
            "R", "test[:10]", 64, manual_dir=manual_dir, drop_remainder=True
        )


def test_numpy_output_equals_the_tensors(manual_dir):
    batches = two_digit.TwoDigitCanvas("test[:40]", 20, manual_dir=manual_dir)
    tensors = _pydataset(batches)[1]
    arrays = _pydataset(batches, return_numpy=True)[1]
    assert isinstance(arrays[0], np.ndarray)
    assert not isinstance(tensors[0], np.ndarray)
    np.testing.assert_array_equal(arrays[0], _numpy(tensors[0]))
    np.testing.assert_array_equal(arrays[1], tensors[1])


@pytest.mark.parametrize(
    "make, pattern",
    [
        (
            lambda d: distorted.DistortedMNIST("R", "test", 0, manual_dir=d),
            "batch_size",
        ),
        (
            lambda d: distorted.DistortedMNIST("R", "valid", manual_dir=d),
            "`split` must",
        ),
        (
            lambda d: distorted.DistortedMNIST(
                "R", "test", epochs=2, manual_dir=d
            ),
            "`epochs` numbers training epochs",
        ),
        (
            lambda d: distorted.DistortedMNIST(
                "R", "train", epochs=2, initial_epoch=3, manual_dir=d
            ),
            "initial_epoch",
        ),
        (
            lambda d: distorted.DistortedMNIST("R", seed=1.5, manual_dir=d),
            "`seed` must be None or an int",
        ),
        (
            lambda d: two_digit.TwoDigitCanvas("test[:1]", manual_dir=d),
            "at least 2 digits",
        ),
        (
            lambda d: two_digit.TwoDigitCanvas(canvas_size=82, manual_dir=d),
            "canvas_size",
        ),
        (
            lambda d: _pydataset(
                distorted.DistortedMNIST("R", "test", manual_dir=d), workers=0
            ),
            "workers",
        ),
    ],
)
def test_bad_arguments_are_named(manual_dir, make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make(manual_dir)


# Identity settings return the digits where they belong. ------------------


@pytest.mark.parametrize(
    "variant, options",
    [
        ("R", {"angle_range": (0, 0)}),
        (
            "RTS",
            {"angle_range": (0, 0), "scale_range": (1, 1), "canvas_size": 28},
        ),
        ("P", {"scale_range": (1, 1), "corner_sigma": 0}),
        ("E", {"control_sigma": 0}),
    ],
)
def test_identity_settings_return_the_digits(manual_dir, variant, options):
    batches = distorted.DistortedMNIST(
        variant, "test[:32]", 32, manual_dir=manual_dir, **options
    )
    images, labels = _pydataset(batches)[0]
    expected = digits(manual_dir, "test", np.arange(32))
    np.testing.assert_allclose(_numpy(images)[..., 0], expected, atol=TOLERANCE)
    np.testing.assert_array_equal(
        labels, mnist.load_mnist(manual_dir, "test")[1][:32]
    )


def test_rts_unscaled_upright_digit_sits_at_its_position(manual_dir):
    batches = distorted.DistortedMNIST(
        "RTS",
        "test[:16]",
        16,
        manual_dir=manual_dir,
        with_params=True,
        angle_range=(0, 0),
        scale_range=(1, 1),
    )
    images, _, params = _batch(_pydataset(batches), 0)
    ink = images[..., 0]
    y, x = np.mgrid[0:42, 0:42] + 0.5
    sources = digits(manual_dir, "test", np.arange(16))
    dy, dx = np.mgrid[0:28, 0:28] + 0.5
    for image, digit, position in zip(ink, sources, params["position"]):
        centroid = [(image * x).sum(), (image * y).sum()] / image.sum()
        source_centroid = [(digit * dx).sum(), (digit * dy).sum()]
        source_centroid = np.array(source_centroid) / digit.sum()
        # A digit's centroid moves by the placement: 21 - 14 + position.
        np.testing.assert_allclose(
            centroid, source_centroid + 7 + position, atol=0.05
        )


def test_rotated_digits_keep_their_ink_and_turn_clockwise(manual_dir):
    # A quarter turn clockwise as displayed maps the digit's pixel
    # (row r, column c) to (c, 27 - r): np.rot90 with k=-1.
    batches = distorted.DistortedMNIST(
        "R", "test[:8]", 8, manual_dir=manual_dir, angle_range=(90, 90)
    )
    images = _numpy(batches.element(0)[0])[..., 0]
    expected = np.rot90(digits(manual_dir, "test", np.arange(8)), -1, (1, 2))
    np.testing.assert_allclose(images, expected, atol=TOLERANCE)


def test_clutter_without_patches_pastes_the_digit(manual_dir):
    batches = distorted.DistortedMNIST(
        "TC",
        "test[:8]",
        8,
        manual_dir=manual_dir,
        with_params=True,
        num_patches=0,
    )
    images, _, params = _batch(_pydataset(batches), 0)
    sources = digits(manual_dir, "test", np.arange(8))
    for image, digit, (x, y) in zip(images, sources, params["top_left"]):
        pasted = np.zeros((60, 60), np.float32)
        pasted[y : y + 28, x : x + 28] = digit
        np.testing.assert_allclose(image[..., 0], pasted, atol=TOLERANCE)


def test_clutter_patches_stay_off_the_digits_centre(manual_dir):
    batches = distorted.DistortedMNIST(
        "TC",
        "test[:64]",
        64,
        manual_dir=manual_dir,
        with_params=True,
    )
    images, _, params = _batch(_pydataset(batches), 0)
    sources = digits(manual_dir, "test", np.arange(64))
    for image, digit, (x, y) in zip(images, sources, params["top_left"]):
        # The central 8x8 of the frame is the digit's, untouched.
        centre = image[y + 10 : y + 18, x + 10 : x + 18, 0]
        np.testing.assert_allclose(centre, digit[10:18, 10:18], atol=TOLERANCE)
    assert images.max() <= 1.0 and images.min() >= 0.0


def test_two_digit_canvas_places_both_digits_apart(manual_dir):
    batches = two_digit.TwoDigitCanvas(
        "test[:64]", 64, manual_dir=manual_dir, with_params=True
    )
    images, labels, params = _batch(_pydataset(batches), 0)
    all_labels = mnist.load_mnist(manual_dir, "test")[1]
    pair = params["pair_index"]
    np.testing.assert_array_equal(labels, all_labels[pair])
    assert np.all(pair[:, 0] != pair[:, 1]) and pair.max() < 64
    top_left = params["top_left"]
    apart = np.abs(top_left[:, 0] - top_left[:, 1]) >= 28
    assert np.all(apart.any(axis=-1))
    np.testing.assert_allclose(
        params["boxes"],
        np.concatenate([top_left[..., ::-1], top_left[..., ::-1] + 28], -1)
        / 84,
        atol=1e-7,
    )
    for image, index, corners in zip(images, pair, top_left):
        pasted = np.zeros((84, 84), np.float32)
        for digit, (x, y) in zip(digits(manual_dir, "test", index), corners):
            pasted[y : y + 28, x : x + 28] += digit
        np.testing.assert_allclose(image[..., 0], pasted, atol=TOLERANCE)


def test_addition_puts_each_digit_in_its_channel(manual_dir):
    batches = two_digit.MNISTAddition(
        "test[:32]",
        32,
        manual_dir=manual_dir,
        with_params=True,
        angle_range=(0, 0),
        scale_range=(1, 1),
        canvas_size=28,
    )
    images, labels, params = _batch(_pydataset(batches), 0)
    pair = params["pair_index"]
    all_labels = mnist.load_mnist(manual_dir, "test")[1]
    np.testing.assert_array_equal(labels, all_labels[pair].sum(-1))
    for channel in (0, 1):
        expected = digits(manual_dir, "test", pair[:, channel])
        np.testing.assert_allclose(
            images[..., channel], expected, atol=TOLERANCE
        )
