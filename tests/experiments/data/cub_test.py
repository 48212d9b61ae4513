import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_stn.experiments.data import _downloads
from keras_stn.experiments.data import cub
from tests.experiments.data import helpers

pytestmark = pytest.mark.large


@pytest.fixture(autouse=True)
def _download_site_up(request, monkeypatch):
    """`tfds.testing.mock_data` stands in for the download; without this
    the offline check would look for the real site first."""
    if "offline" not in request.node.name:
        monkeypatch.setattr(_downloads, "reachable", lambda url: True)


def _coordinate_images(count, height=256, width=300):
    """Images whose pixels spell their own coordinates: channel 0 is
    `x % 256`, channel 1 is `x // 256`, channel 2 is `y`."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x % 256, x // 256, y], axis=-1).astype("uint8")

    def as_dataset(self, *args, **kwargs):
        del self, args, kwargs
        return tf.data.Dataset.from_tensor_slices(
            {
                "image": np.stack([image] * count),
                "label": np.arange(count, dtype="int64") % cub.NUM_CLASSES,
            }
        )

    return as_dataset


def _decode(crops):
    """`(x, y)` of each crop's top-left pixel, read off its values."""
    values = np.rint(crops[:, 0, 0] * 255).astype(int)
    return np.stack([values[:, 0] + 256 * values[:, 1], values[:, 2]], -1)


@pytest.mark.parametrize("image_size", [448, 224])
def test_shapes_dtypes_and_labels(image_size):
    with tfds.testing.mock_data(num_examples=5):
        for split in ("train", "test"):
            images, labels = helpers.first(
                cub.cub_200_2011(split, batch_size=4, image_size=image_size)
            )
            assert images.shape == (4, image_size, image_size, 3)
            assert images.dtype == np.float32 and labels.dtype == np.int64
            assert images.min() >= 0 and images.max() <= 1
            assert images.std() > 0.1  # not blank
            assert labels.min() >= 0 and labels.max() < cub.NUM_CLASSES


def test_train_crops_are_random_and_flipped_as_recorded():
    with tfds.testing.mock_data(as_dataset_fn=_coordinate_images(32)):
        dataset = cub.cub_200_2011(
            "train", batch_size=32, image_size=224, with_params=True, seed=2
        )
        epochs = helpers.batches(dataset.repeat(), 2)
    for images, _, params in epochs:
        np.testing.assert_array_equal(
            params["resized_shape"], [[256, 300]] * 32
        )
        top_left = params["crop_top_left"]
        assert top_left[:, 0].min() >= 0 and top_left[:, 0].max() <= 300 - 224
        assert top_left[:, 1].min() >= 0 and top_left[:, 1].max() <= 256 - 224
        assert len(np.unique(top_left, axis=0)) > 20
        flipped = params["flipped"]
        assert 0 < flipped.sum() < 32
        # An unflipped crop starts at its top-left; a flipped one at its
        # top-right pixel, 223 further right.
        expected = top_left + np.where(flipped, 223, 0)[:, None] * [1, 0]
        np.testing.assert_array_equal(_decode(images), expected)
        # x rises along each unflipped row, falls along each flipped one
        # (decoded whole: channel 0 alone wraps at 256).
        step = _decode(images[:, :, 1:2]) - _decode(images[:, :, :1])
        np.testing.assert_array_equal(step[:, 0] > 0, ~flipped)
    assert not np.array_equal(
        epochs[0][2]["crop_top_left"], epochs[1][2]["crop_top_left"]
    )


def test_a_seed_repeats_training_crops():
    def run(seed):
        with tfds.testing.mock_data(as_dataset_fn=_coordinate_images(16)):
            dataset = cub.cub_200_2011(
                "train", batch_size=16, image_size=224, seed=seed
            )
            return helpers.first(dataset)[0]

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


def test_test_crops_are_central_and_fixed():
    with tfds.testing.mock_data(as_dataset_fn=_coordinate_images(8)):
        dataset = cub.cub_200_2011(
            "test", batch_size=8, image_size=224, with_params=True
        )
        first, again = helpers.first(dataset), helpers.first(dataset)
    images, labels, params = first
    assert not params["flipped"].any()
    np.testing.assert_array_equal(params["crop_top_left"], [[38, 16]] * 8)
    np.testing.assert_array_equal(_decode(images), [[38, 16]] * 8)
    np.testing.assert_array_equal(labels, np.arange(8))
    np.testing.assert_array_equal(images, again[0])


def test_resized_shape_keeps_the_aspect():
    shape = cub.resized_shape(tf.constant([375, 500]), 512).numpy()
    np.testing.assert_array_equal(shape, [512, 683])
    shape = cub.resized_shape(tf.constant([600, 400]), 256).numpy()
    np.testing.assert_array_equal(shape, [384, 256])


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"image_size": 0}, "`image_size`"),
        ({"image_size": 448, "resize_size": 400}, "`resize_size`"),
        ({"batch_size": 2.0}, "`batch_size`"),
        ({"training": "no"}, "`training`"),
        ({"split": None}, "`split`"),
    ],
)
def test_bad_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        cub.cub_200_2011(**arguments)


def test_missing_archives_name_their_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="CUB_200_2011.tgz"):
        cub.cub_200_2011(
            data_dir=str(tmp_path / "data"), manual_dir=str(tmp_path)
        )


def test_offline_without_archives_fails_at_once_saying_where(
    tmp_path, monkeypatch
):
    # Port 9 (discard) on localhost refuses at once: an unreachable site.
    monkeypatch.setattr(cub, "DOWNLOAD_URL", "http://127.0.0.1:9/")
    monkeypatch.delenv(cub.MANUAL_DIR_ENV, raising=False)

    def no_download(*args, **kwargs):
        raise AssertionError("tfds.load was asked to download CUB")

    monkeypatch.setattr(tfds, "load", no_download)
    with pytest.raises(FileNotFoundError) as error:
        cub.cub_200_2011(data_dir=str(tmp_path / "data"))
    assert "http://127.0.0.1:9/" in str(error.value)
    assert "manual_dir" in str(error.value)
    assert "CUB_200_2011.tgz" in str(error.value)
