"""The TensorFlow-free sources (`source`, `arrays`) on every backend.

The warps are checked against the tf.data pipelines' classes where
TensorFlow is installed, and everywhere against their documented
distributions, determinism and identity cases.
"""

import gzip
import hashlib
import importlib.util
import os
import shutil
import struct

import keras
import numpy as np
import pytest
from keras import ops

from keras_stn import models
from keras_stn.experiments.data import arrays
from keras_stn.experiments.data import source

BACKEND = keras.backend.backend()
TENSORFLOW = importlib.util.find_spec("tensorflow") is not None
MNIST_DIR = os.path.normpath(
    os.path.join(__file__, "..", "..", "..", "..", "..", "shared", "data")
)
MNIST_DIR = os.path.join(MNIST_DIR, "mnist")
# float32 rounding: for R and RTS the two sides compute theta in different
# precisions (TF in float32, here float64 then float32), which moves the
# sampling points by about 1e-7 of the half-side; on random images a pixel
# changes by at most a few 1e-6 (P and E compute theta as TF does and agree
# bit for bit). The dtype-keyed float32 tolerance of test_case.
TOLERANCE = 1e-5
# Statistical checks: a sample mean or variance is within FIVE of its
# standard error of the documented value (a false alarm about once in
# 1.7 million runs per check; every draw is seeded, so a run repeats).
FIVE = 5.0
DRAWS = 20000
# tfds' MNIST order, pinned: the first labels and the sha256 of all labels
# (int64, little-endian) of `mnist.load_split`, tensorflow-datasets 4.x.
TFDS_LABELS = {
    "train": (
        [4, 1, 0, 7, 8, 1, 2, 7, 1, 6, 6, 4, 7, 7, 3, 3, 7, 9, 9, 1],
        "0e44ecaf2547dac741c83ddf0bcf9e3ced796f00dcc8784057618b7001d89aff",
    ),
    "test": (
        [2, 0, 4, 8, 7, 6, 0, 6, 3, 1, 8, 0, 7, 9, 8, 4, 5, 3, 4, 0],
        "d515834c278b04a6887dcb28e527fe6a2e43826cb9fbebc4c9eefb19c499bbe1",
    ),
}
# The files' own order starts with these labels (MNIST's documentation).
FILE_LABELS = {"train": [5, 0, 4, 1, 9, 2, 1, 3, 1, 4], "test": [7, 2, 1, 0, 4]}


@pytest.fixture(scope="module")
def manual_dir():
    missing = [
        name
        for names in arrays.FILES.values()
        for name in names
        if not os.path.isfile(os.path.join(MNIST_DIR, name))
    ]
    if missing:
        pytest.skip(f"MNIST files {missing} not found in {MNIST_DIR}")
    return MNIST_DIR


def _numpy(x):
    return ops.convert_to_numpy(x)


def _images(count, seed=0, size=28):
    rng = np.random.default_rng(seed)
    return rng.random((count, size, size, 1)).astype("float32")


# (a) The same parameters give the tf.data pipeline's images. -------------


def _tensorflow():
    if not TENSORFLOW or BACKEND != "tensorflow":
        pytest.skip(
            "compares with the tf.data pipelines: needs TensorFlow and the "
            f"TensorFlow backend (Keras backend: {BACKEND}, TensorFlow "
            f"installed: {TENSORFLOW})"
        )
    import tensorflow as tf

    from keras_stn.experiments.data import distorted

    return tf, distorted


def _tf_draws(draw, count):
    """`count` draws of a TF distortion, stacked into NumPy arrays."""
    import tensorflow as tf

    draws = [draw(tf.constant([i, 7], tf.int64), i) for i in range(count)]
    return {k: np.stack([np.asarray(d[k]) for d in draws]) for k in draws[0]}


@pytest.mark.parametrize("variant", ["R", "RTS", "P", "E"])
def test_warp_equals_the_tf_pipelines_on_its_parameters(variant):
    tf, distorted = _tensorflow()
    theirs = distorted.make_distortion(variant)
    ours = source.make_distortion(variant)
    params = _tf_draws(lambda seed, i: theirs.draw(seed), 32)
    images = _images(32)
    expected = theirs.warp(
        tf.constant(images), {k: tf.constant(v) for k, v in params.items()}
    )
    got = ours.warp(ops.convert_to_tensor(images), params)
    np.testing.assert_allclose(_numpy(got), expected.numpy(), atol=TOLERANCE)


def test_clutter_equals_the_tf_pipelines_on_its_parameters():
    tf, distorted = _tensorflow()
    theirs, ours = distorted.make_distortion("TC"), source.Clutter()
    pool = np.random.default_rng(1).integers(0, 256, (40, 28, 28), np.uint8)
    params = _tf_draws(lambda seed, i: theirs.draw(seed, 40, i), 16)
    digits = _images(16)
    expected = theirs.render(
        tf.constant(digits),
        tf.constant(pool[..., None]),
        {k: tf.constant(v) for k, v in params.items()},
    )
    got = ours.warp(ops.convert_to_tensor(digits), params, pool)
    np.testing.assert_allclose(_numpy(got), expected.numpy(), atol=TOLERANCE)


def test_place_equals_the_tf_pipelines():
    _tensorflow()
    from keras_stn.experiments.data import placement

    top_left = np.random.default_rng(2).integers(0, 57, (8, 2), np.int32)
    digits = _images(8)
    expected = placement.place(digits, top_left, 84)
    got = source.place(ops.convert_to_tensor(digits), top_left, 84)
    np.testing.assert_allclose(_numpy(got), expected.numpy(), atol=TOLERANCE)


# (b) Distributions: the documented ranges, means and spreads. -------------


def _check_uniform(values, low, high):
    """All in `[low, high]`, mean and variance within FIVE standard errors
    of the continuous uniform's."""
    values = np.asarray(values, np.float64).ravel()
    n, width = len(values), high - low
    assert values.min() >= low and values.max() <= high
    assert abs(values.mean() - (low + high) / 2) < FIVE * width / np.sqrt(
        12 * n
    )
    # Var(s^2) = (mu_4 - sigma^4) / n, mu_4 = width^4 / 80 for a uniform.
    error = width**2 * np.sqrt((1 / 80 - 1 / 144) / n)
    assert abs(values.var() - width**2 / 12) < FIVE * error


def _check_normal(values, sigma):
    """Mean 0 and variance sigma^2 within FIVE standard errors."""
    values = np.asarray(values, np.float64).ravel()
    n = len(values)
    assert abs(values.mean()) < FIVE * sigma / np.sqrt(n)
    assert abs(values.var() - sigma**2) < FIVE * sigma**2 * np.sqrt(2 / n)


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_rotation_angles_are_uniform_on_the_range():
    params = source.Rotation().draw(_rng(), DRAWS)
    _check_uniform(params["angle"], -90.0, 90.0)


def test_rts_parameters_are_uniform_and_keep_the_frame_on_the_canvas():
    params = source.RotationScaleTranslation().draw(_rng(), DRAWS)
    _check_uniform(params["angle"], -45.0, 45.0)
    _check_uniform(params["scale"], 0.7, 1.2)
    margin = (42 - 28 * params["scale"].astype(np.float64)) / 2
    unit = params["position"] / margin[:, None]
    _check_uniform(unit, -1.0 - 1e-6, 1.0 + 1e-6)


def test_projective_parameters():
    params = source.ProjectiveWarp().draw(_rng(), DRAWS)
    _check_uniform(params["scale"], 0.75, 1.0)
    assert params["corners"].shape == (DRAWS, 4, 2)
    _check_normal(params["corners"], 5.0)


def test_elastic_parameters_move_a_4x4_lattice():
    distortion = source.ElasticWarp()
    params = distortion.draw(_rng(), DRAWS)
    assert params["displacement"].shape == (DRAWS, 16, 2)
    _check_normal(params["displacement"], 1.5)
    axis = np.linspace(-1, 1, 4)
    np.testing.assert_array_equal(np.unique(distortion.control_points), axis)


def test_clutter_draws_keep_the_centre_clear_and_patches_from_others():
    clutter = source.Clutter()
    own = np.arange(DRAWS) % 100
    params = clutter.draw(_rng(), DRAWS, 100, exclude=own)
    top_left = params["top_left"]
    assert top_left.min() == 0 and top_left.max() == 60 - 28
    # Integers uniform on 0..32: mean 16, variance (33^2 - 1) / 12.
    se = np.sqrt((33**2 - 1) / 12 / top_left.size)
    assert abs(top_left.mean() - 16) < FIVE * se
    index = params["patch_index"]
    assert index.min() >= 0 and index.max() < 100
    assert not np.any(index == own[:, None])
    crop = params["patch_crop"]
    assert crop.min() == 0 and crop.max() == 28 - 6
    where = params["patch_top_left"]
    assert where.min() == 0 and where.max() == 60 - 6
    low = top_left[:, None, :] + 10  # the central 8x8 of the 28x28 frame
    overlap = (where < low + 8) & (where + 6 > low)
    assert not np.any(overlap.all(axis=-1))


def test_position_outside_is_exactly_uniform_on_the_allowed_cells():
    # 3x3 positions, (0..1, 0..1) forbidden: 5 allowed cells, p = 1/5.
    xy = source.uniform_position_outside(_rng(), 3, [0, 0], [1, 1], (DRAWS,))
    cells, counts = np.unique(xy[:, 1] * 3 + xy[:, 0], return_counts=True)
    np.testing.assert_array_equal(cells, [2, 5, 6, 7, 8])
    expected = DRAWS / 5
    assert np.all(np.abs(counts - expected) < FIVE * np.sqrt(expected * 0.8))


# (c) Determinism. ------------------------------------------------------


def _batch(dataset, index):
    images, labels, params = dataset[index]
    return _numpy(images), labels, params


def test_test_split_is_identical_across_instances(manual_dir):
    def make():
        return source.DistortedMNIST(
            "E", "test[:300]", 64, manual_dir=manual_dir, with_params=True
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
    # Changing the seeding scheme would silently change the test set.
    dataset = source.DistortedMNIST(
        "R", "test", 4, manual_dir=manual_dir, with_params=True
    )
    angles = dataset[0][2]["angle"]
    np.testing.assert_allclose(angles, PINNED_ANGLES, atol=1e-4)


# `DistortedMNIST("R", "test", 4)[0]`'s angles (seed 0, NumPy 2.4).
PINNED_ANGLES = [-63.117905, -56.786034, 15.801168, -15.634444]


def test_training_epochs_differ_repeat_and_resume_exactly(manual_dir):
    def make(**kwargs):
        return source.DistortedMNIST(
            "RTS",
            "train[:200]",
            64,
            manual_dir=manual_dir,
            seed=5,
            with_params=True,
            **kwargs,
        )

    run = make(epochs=3)
    steps = run.steps_per_epoch
    assert steps == 4 and len(run) == 12 and run.locate(9) == (2, 1)
    epoch_0, epoch_2 = _batch(run, 1), _batch(run, 2 * steps + 1)
    # The same (seed, epoch) gives the same batch, however it is reached.
    np.testing.assert_array_equal(epoch_0[0], _batch(make(), 1)[0])
    for resumed in (make(initial_epoch=2, epochs=3), make(initial_epoch=2)):
        again = _batch(resumed, 1)
        np.testing.assert_array_equal(again[0], epoch_2[0])
        np.testing.assert_array_equal(again[2]["index"], epoch_2[2]["index"])
    # Each epoch a fresh permutation of the split and fresh distortions.
    for epoch in (0, 2):
        np.testing.assert_array_equal(np.sort(run.order(epoch)), np.arange(200))
    assert not np.array_equal(run.order(0), run.order(2))
    assert not np.allclose(epoch_2[0], epoch_0[0])
    other_seed = source.DistortedMNIST(
        "RTS", "train[:200]", 64, manual_dir=manual_dir, seed=6
    )
    assert not np.allclose(_numpy(other_seed[1][0]), epoch_0[0])
    assert make().num_batches is None
    with pytest.raises(TypeError, match="endless"):
        len(make())
    with pytest.raises(IndexError, match="< 4"):
        make(initial_epoch=2, epochs=3)[4]


def test_numpy_output_equals_the_tensors(manual_dir):
    def make(**kwargs):
        return source.TwoDigitCanvas(
            "test[:40]", 20, manual_dir=manual_dir, **kwargs
        )

    tensors, arrays_ = make()[1], make(return_numpy=True)[1]
    assert isinstance(arrays_[0], np.ndarray)
    assert not isinstance(tensors[0], np.ndarray)
    np.testing.assert_array_equal(arrays_[0], _numpy(tensors[0]))
    np.testing.assert_array_equal(arrays_[1], tensors[1])


# (d) Identity settings return the digits where they belong. -------------


def _digits(manual_dir, split, index):
    images = arrays.load_mnist(manual_dir, split)[0]
    return images[index].astype(np.float32) / 255.0


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
    dataset = source.DistortedMNIST(
        variant, "test[:32]", 32, manual_dir=manual_dir, **options
    )
    images, labels = dataset[0]
    expected = _digits(manual_dir, "test", np.arange(32))
    np.testing.assert_allclose(_numpy(images)[..., 0], expected, atol=TOLERANCE)
    np.testing.assert_array_equal(
        labels, arrays.load_mnist(manual_dir, "test")[1][:32]
    )


def test_rts_unscaled_upright_digit_sits_at_its_position(manual_dir):
    dataset = source.DistortedMNIST(
        "RTS",
        "test[:16]",
        16,
        manual_dir=manual_dir,
        with_params=True,
        angle_range=(0, 0),
        scale_range=(1, 1),
    )
    images, _, params = _batch(dataset, 0)
    ink = images[..., 0]
    y, x = np.mgrid[0:42, 0:42] + 0.5
    digits = _digits(manual_dir, "test", np.arange(16))
    dy, dx = np.mgrid[0:28, 0:28] + 0.5
    for image, digit, position in zip(ink, digits, params["position"]):
        centroid = [(image * x).sum(), (image * y).sum()] / image.sum()
        source_centroid = [(digit * dx).sum(), (digit * dy).sum()]
        source_centroid = np.array(source_centroid) / digit.sum()
        # A digit's centroid moves by the placement: 21 - 14 + position.
        np.testing.assert_allclose(
            centroid, source_centroid + 7 + position, atol=0.05
        )


def test_clutter_without_patches_pastes_the_digit(manual_dir):
    dataset = source.DistortedMNIST(
        "TC",
        "test[:8]",
        8,
        manual_dir=manual_dir,
        with_params=True,
        num_patches=0,
    )
    images, _, params = _batch(dataset, 0)
    digits = _digits(manual_dir, "test", np.arange(8))
    for image, digit, (x, y) in zip(images, digits, params["top_left"]):
        pasted = np.zeros((60, 60), np.float32)
        pasted[y : y + 28, x : x + 28] = digit
        np.testing.assert_allclose(image[..., 0], pasted, atol=TOLERANCE)


def test_two_digit_canvas_places_both_digits_apart(manual_dir):
    dataset = source.TwoDigitCanvas(
        "test[:64]", 64, manual_dir=manual_dir, with_params=True
    )
    images, labels, params = _batch(dataset, 0)
    all_labels = arrays.load_mnist(manual_dir, "test")[1]
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
        for digit, (x, y) in zip(_digits(manual_dir, "test", index), corners):
            pasted[y : y + 28, x : x + 28] += digit
        np.testing.assert_allclose(image[..., 0], pasted, atol=TOLERANCE)


def test_addition_puts_each_digit_in_its_channel(manual_dir):
    dataset = source.MNISTAddition(
        "test[:32]",
        32,
        manual_dir=manual_dir,
        with_params=True,
        angle_range=(0, 0),
        scale_range=(1, 1),
        canvas_size=28,
    )
    images, labels, params = _batch(dataset, 0)
    pair = params["pair_index"]
    all_labels = arrays.load_mnist(manual_dir, "test")[1]
    np.testing.assert_array_equal(labels, all_labels[pair].sum(-1))
    for channel in (0, 1):
        expected = _digits(manual_dir, "test", pair[:, channel])
        np.testing.assert_allclose(
            images[..., channel], expected, atol=TOLERANCE
        )


# (e) Reading the files. ----------------------------------------------------


@pytest.mark.parametrize("split, count", [("train", 60000), ("test", 10000)])
def test_load_mnist_reads_the_files_in_tfds_order(manual_dir, split, count):
    images, labels = arrays.load_mnist(manual_dir, split)
    assert images.shape == (count, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (count,) and labels.dtype == np.int64
    np.testing.assert_array_equal(np.unique(labels), np.arange(10))
    first, digest = TFDS_LABELS[split]
    assert labels[:20].tolist() == first
    assert hashlib.sha256(labels.astype("<i8").tobytes()).hexdigest() == digest
    _, in_file_order = arrays.load_mnist(manual_dir, split, order="file")
    expected = FILE_LABELS[split]
    assert in_file_order[: len(expected)].tolist() == expected


def _copy_test_files(manual_dir, folder):
    folder.mkdir()
    for name in arrays.FILES["test"]:
        shutil.copy(os.path.join(manual_dir, name), folder / name)
    return folder


def _rewrite(path, change):
    with gzip.open(path, "rb") as file:
        data = file.read()
    with gzip.open(path, "wb", compresslevel=1) as file:
        file.write(change(data))


IMAGES, LABELS = arrays.FILES["test"]
CORRUPTIONS = {
    "truncated gzip": (
        IMAGES,
        None,
        "not a whole gzip stream",
    ),
    "magic": (
        IMAGES,
        lambda d: struct.pack(">I", 2049) + d[4:],
        "magic number is 2049",
    ),
    "count": (
        LABELS,
        lambda d: d[:4] + struct.pack(">I", 9999) + d[8:],
        "counts 9999 labels, not 10000",
    ),
    "image size": (
        IMAGES,
        lambda d: d[:8] + struct.pack(">II", 27, 29) + d[16:],
        "27x29",
    ),
    "length": (IMAGES, lambda d: d + b"\0", "7840017 bytes unzipped"),
    "label": (LABELS, lambda d: d[:8] + b"\x0a" + d[9:], "a label 10"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_load_mnist_names_a_corrupt_file(manual_dir, tmp_path, case):
    name, change, what = CORRUPTIONS[case]
    folder = _copy_test_files(manual_dir, tmp_path / case.replace(" ", "_"))
    path = folder / name
    if change is None:
        path.write_bytes(path.read_bytes()[:1000])
    else:
        _rewrite(path, change)
    with pytest.raises(ValueError, match=str(path)) as error:
        arrays.load_mnist(str(folder), "test")
    assert what in str(error.value)


def test_load_mnist_lists_the_missing_files(manual_dir, tmp_path, monkeypatch):
    folder = _copy_test_files(manual_dir, tmp_path / "files")
    os.remove(folder / LABELS)
    with pytest.raises(FileNotFoundError, match=str(folder / LABELS)):
        arrays.load_mnist(str(folder), "test")
    monkeypatch.setenv(arrays.MANUAL_DIR_ENV, str(folder))
    with pytest.raises(FileNotFoundError, match=r"\$KERAS_STN_MNIST_DIR"):
        arrays.load_mnist(None, "test")
    monkeypatch.delenv(arrays.MANUAL_DIR_ENV)
    data_dir = tmp_path / "tfds"
    manual = data_dir / "downloads" / "manual"
    with pytest.raises(FileNotFoundError, match=str(manual / IMAGES)):
        arrays.load_mnist(None, "test", data_dir=str(data_dir))


def test_load_mnist_reads_the_environment_variables_folder(
    manual_dir, monkeypatch
):
    monkeypatch.setenv(arrays.MANUAL_DIR_ENV, manual_dir)
    labels = arrays.load_mnist(None, "test")[1]
    assert labels[:20].tolist() == TFDS_LABELS["test"][0]


@pytest.mark.parametrize(
    "split, expected",
    [
        ("train", ("train", 0, 60000)),
        ("validation", ("train", 50000, 60000)),
        ("train[:50000]", ("train", 0, 50000)),
        ("test[10%:20%]", ("test", 1000, 2000)),
        ("train[-100:]", ("train", 59900, 60000)),
    ],
)
def test_split_range(split, expected):
    assert arrays.split_range(split) == expected


@pytest.mark.parametrize("split", ["valid", "train[5:5]", 3, "train+test"])
def test_split_range_refuses(split):
    with pytest.raises(ValueError, match="`split` must"):
        arrays.split_range(split)


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: source.DistortedMNIST("Q"), "`variant` must be one of"),
        (lambda: source.DistortedMNIST("R", sigma=1), "Unknown option"),
        (lambda: source.DistortedMNIST("R", batch_size=0), "`batch_size`"),
        (lambda: source.DistortedMNIST("E", num_control_points=10), "square"),
        (lambda: source.DistortedMNIST("TC", clear_centre=3), "even int"),
        (lambda: source.TwoDigitCanvas(canvas_size=80), "`canvas_size`"),
        (lambda: source.MNISTAddition(initial_epoch=-1), "`initial_epoch`"),
        (
            lambda: source.DistortedMNIST(
                "R", "test[:10]", 20, drop_remainder=True
            ),
            "`batch_size` must be at most",
        ),
    ],
)
def test_bad_arguments_are_named(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


# (f) model.fit on the current backend. ---------------------------------


class _Recording(source.DistortedMNIST):
    """Records the items it serves, in order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served = []

    def __getitem__(self, index):
        self.served.append(index)
        return super().__getitem__(index)


@pytest.mark.large
def test_fit_st_cnn_runs_through_the_numbered_epochs(manual_dir):
    keras.utils.set_random_seed(0)
    train = _Recording(
        "RTS", "train[:96]", 32, manual_dir=manual_dir, seed=3, epochs=2
    )
    model = models.st_cnn((42, 42, 1))
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(
        train,
        epochs=2,
        steps_per_epoch=train.steps_per_epoch,
        shuffle=False,
        verbose=0,
    )
    assert np.all(np.isfinite(history.history["loss"]))
    # Keras first reads a batch or two for its build and the data's specs
    # (a pure function of the index), then every item once, in order:
    # epoch 0's batches, then epoch 1's.
    assert train.served[-6:] == list(range(6))
