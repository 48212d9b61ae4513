"""Training runs: result files per epoch, resuming, and what they report."""

import os

import keras
import numpy as np
import pytest

from keras_stn.experiments import training
from keras_stn.experiments import results

pytestmark = pytest.mark.tensorflow_only


class _Interrupt(keras.callbacks.Callback):
    """Stops training with an exception after the first epoch's files."""

    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def _run(mnist_dirs, out_dir, **kwargs):
    options = {
        "data": "r",
        "model": "st-fcn",
        "transform": "affine",
        "epochs": 2,
        "batch_size": 64,
        "train_examples": 256,
        "out_dir": str(out_dir),
        "pictures": False,
        "verbose": 0,
        **mnist_dirs,
    }
    options.update(kwargs)
    return training.train_run(**options)


@pytest.mark.large
def test_an_interrupted_run_leaves_complete_files_and_resumes(
    mnist_dirs, tmp_path
):
    directory = tmp_path / "r-st-fcn-affine"
    with pytest.raises(KeyboardInterrupt):
        _run(mnist_dirs, tmp_path, callbacks=[_Interrupt()])
    record = results.read_json(str(directory / "results.json"))
    assert record["status"] == "running"
    assert [e["epoch"] for e in record["epochs"]] == [1]
    assert 0.0 <= record["test_error"] <= 1.0
    assert "ST-FCN affine" in (directory / "results.md").read_text()
    assert (directory / "backup").is_dir()
    assert not (directory / "model.keras").exists()

    resumed = _run(mnist_dirs, tmp_path, resume=True)
    assert resumed["status"] == "complete"
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2]
    assert resumed["epochs"][0] == record["epochs"][0]
    assert not (directory / "backup").exists()
    model = keras.saving.load_model(str(directory / "model.keras"))
    assert model.count_params() == resumed["params"]

    # A finished run is not trained again on --resume.
    again = _run(mnist_dirs, tmp_path, resume=True)
    assert again == resumed


@pytest.mark.large
def test_a_short_run_learns_and_reports_its_schedule(mnist_dirs, tmp_path):
    record = _run(
        mnist_dirs,
        tmp_path,
        model="cnn",
        epochs=1,
        train_examples=2048,
        batch_size=32,
    )
    assert record["transform"] is None
    assert record["schedule"]["train_examples"] == 2048
    assert record["paper_error"] == 1.2
    # Chance is 0.9; a tenth of an epoch of rotated MNIST already beats it.
    assert record["test_error"] < 0.8
    assert np.isfinite(record["epochs"][0]["loss"])
    assert os.path.exists(tmp_path / "r-cnn" / "model.keras")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"data": "svhn"}, "`data` must be one of r, rts, p, e, tc"),
        ({"model": "mlp"}, "`model` must be one of cnn, st-cnn, fcn"),
        ({"transform": "warp"}, "Received: transform='warp'"),
        ({"optimizer": "rmsprop"}, "`optimizer` must be one of adam, sgd"),
        ({"epochs": 1.5}, "Received: epochs=1.5"),
        ({"learning_rate": -1.0}, "Received: learning_rate=-1.0"),
        ({"train_examples": 0}, "Received: train_examples=0"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        training.train_run(out_dir=str(tmp_path), verbose=0, **kwargs)


def test_sgd_follows_the_papers_schedule_scaled_to_the_run():
    # 0.01, divided by 10 after each third of the steps (150k: every 50k).
    schedule = training.learning_rate_schedule("sgd", 0.01, 9)
    rates = [float(schedule(step)) for step in (0, 2, 3, 5, 6, 8)]
    np.testing.assert_allclose(
        rates, [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001], rtol=1e-6
    )
    cosine = training.learning_rate_schedule("adam", 1e-3, 10)
    np.testing.assert_allclose(
        [float(cosine(0)), float(cosine(5)), float(cosine(10))],
        [1e-3, 5e-4, 0.0],
        rtol=1e-5,
        atol=1e-9,
    )
