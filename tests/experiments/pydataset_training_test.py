"""`train_run` with the TensorFlow-free data source, on every backend."""

import json
import os

import keras
import pytest

from keras_stn.experiments import training
from tests import conftest


def _mnist_dir():
    folder = conftest.MNIST_FILES_DIR
    if not os.path.isfile(os.path.join(folder, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"the MNIST files are not in {folder} (see its README)")
    return folder


@pytest.mark.large
def test_a_run_on_the_pydataset_source_writes_results_and_pictures(tmp_path):
    pytest.importorskip("matplotlib", reason="pictures need matplotlib")
    record = training.train_run(
        data="rts",
        model="st-cnn",
        epochs=1,
        batch_size=64,
        train_examples=256,
        out_dir=str(tmp_path),
        manual_dir=_mnist_dir(),
        data_source="pydataset",
        verbose=0,
    )
    folder = tmp_path / "rts-st-cnn-affine"
    with open(folder / "results.json", encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["status"] == "complete"
    assert saved["data_source"] == "pydataset"
    assert saved["backend"] == keras.backend.backend()
    assert saved["device"]
    assert 0.0 <= record["test_error"] <= 1.0
    assert (folder / "model.keras").exists()
    pictures = sorted(os.listdir(folder / "pictures"))
    assert "spatial_transformer_initial.png" in pictures
    assert "spatial_transformer_epoch_001.png" in pictures


def test_auto_picks_the_source_this_backend_can_run():
    expected = (
        "tfds" if keras.backend.backend() == "tensorflow" else "pydataset"
    )
    assert training.resolve_data_source("auto") == expected
    assert training.resolve_data_source("pydataset") == "pydataset"


def test_tfds_elsewhere_than_tensorflow_is_named():
    if keras.backend.backend() == "tensorflow":
        assert training.resolve_data_source("tfds") == "tfds"
        return
    with pytest.raises(ValueError, match=r"data_source='tfds'"):
        training.resolve_data_source("tfds")


def test_an_unknown_source_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"pydataset"):
        training.resolve_data_source("numpy")
