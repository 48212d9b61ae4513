"""Training runs: result files per epoch, resuming, and what they report."""

import json
import os

import keras
import numpy as np
import pytest

from keras_stn.experiments import results
from keras_stn.experiments import run_folder
from keras_stn.experiments import training

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
        (
            {"train_examples": 100000},
            "`train_examples` must be an int from 1 to 60000",
        ),
        ({"seed": -1}, "`seed` must be an int from 0 to 4294967295"),
        ({"resume": True, "overwrite": True}, "pass at most one"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        training.train_run(out_dir=str(tmp_path), verbose=0, **kwargs)


def test_an_out_dir_that_is_a_file_is_named_before_anything_runs(tmp_path):
    out = tmp_path / "file"
    out.write_text("not a folder")
    with pytest.raises(ValueError, match="`out_dir` must be a folder"):
        # No MNIST here: the folder is checked first.
        training.train_run(
            out_dir=str(out / "runs"),
            manual_dir=str(tmp_path / "no-mnist"),
            data_dir=str(tmp_path / "tfds"),
            verbose=0,
        )
    assert out.read_text() == "not a folder"


def _finished_run(directory):
    """A run folder as a finished run leaves it."""
    directory.mkdir(parents=True)
    record = {
        "data": "r",
        "model": "st-fcn",
        "transform": "affine",
        "epochs": [{"epoch": 1}, {"epoch": 2}],
        "schedule": {"epochs": 2},
        "status": "complete",
    }
    (directory / "results.json").write_text(json.dumps(record))
    (directory / "model.keras").write_bytes(b"the trained model")
    return record


def _run_files(directory):
    return {
        name: (directory / name).read_bytes()
        for name in sorted(os.listdir(directory))
    }


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_typo_in_the_data_folder_deletes_nothing(tmp_path, overwrite):
    directory = tmp_path / "r-st-fcn-affine"
    _finished_run(directory)
    before = _run_files(directory)
    error = training.RunExistsError if not overwrite else FileNotFoundError
    with pytest.raises(error):
        _run(
            {
                "manual_dir": str(tmp_path / "mnist-typo"),
                "data_dir": str(tmp_path / "tfds"),
            },
            tmp_path,
            overwrite=overwrite,
        )
    assert _run_files(directory) == before


def test_a_finished_run_is_kept_without_resume_or_overwrite(
    mnist_dirs, tmp_path
):
    directory = tmp_path / "r-st-fcn-affine"
    _finished_run(directory)
    before = _run_files(directory)
    with pytest.raises(training.RunExistsError) as error:
        _run(mnist_dirs, tmp_path)
    message = str(error.value)
    assert "holds a finished run" in message
    assert "--resume" in message and "--overwrite" in message
    assert _run_files(directory) == before


@pytest.mark.large
def test_overwrite_replaces_a_run_and_keeps_other_files(mnist_dirs, tmp_path):
    directory = tmp_path / "r-st-fcn-affine"
    _finished_run(directory)
    # Not the package's: overwrite leaves it.
    (directory / "notes.txt").write_text("left by the user")
    record = _run(
        mnist_dirs, tmp_path, overwrite=True, epochs=1, train_examples=64
    )
    assert record["status"] == "complete"
    assert [e["epoch"] for e in record["epochs"]] == [1]
    assert results.read_json(str(directory / "results.json")) == record
    assert sorted(os.listdir(directory)) == [
        run_folder.MANIFEST_FILE,
        "model.keras",
        "notes.txt",
        "results.json",
        "results.md",
    ]
    keras.saving.load_model(str(directory / "model.keras"))


def test_resume_refuses_other_settings_naming_them(tmp_path):
    directory = tmp_path / "r-st-fcn-affine"
    directory.mkdir()
    record = {
        "data": "r",
        "model": "st-fcn",
        "transform": "affine",
        "epochs": [{"epoch": 1}],
        "schedule": {
            "epochs": 2,
            "batch_size": 64,
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "train_examples": 256,
            "seed": 0,
        },
        "status": "running",
    }
    (directory / "results.json").write_text(json.dumps(record))
    with pytest.raises(ValueError) as error:
        _run({}, tmp_path, resume=True, epochs=3, learning_rate=0.01)
    message = str(error.value)
    assert "epochs=3 (the run's: 2)" in message
    assert "learning_rate=0.01 (the run's: 0.001)" in message
    assert "batch_size" not in message and "seed" not in message
    assert str(directory / "results.json") in message


def test_resume_names_a_damaged_results_file(tmp_path):
    directory = tmp_path / "r-st-fcn-affine"
    directory.mkdir()
    (directory / "results.json").write_text('{"epochs": [')
    with pytest.raises(ValueError, match="is damaged") as error:
        _run({}, tmp_path, resume=True)
    assert str(directory / "results.json") in str(error.value)


def test_a_run_folder_in_use_is_refused(mnist_dirs, tmp_path):
    directory = tmp_path / "r-st-fcn-affine"
    with run_folder.RunLock(str(directory)):
        with pytest.raises(run_folder.RunInUseError) as error:
            _run(mnist_dirs, tmp_path)
        assert f"pid {os.getpid()}" in str(error.value)
        assert not (directory / "results.json").exists()
    assert os.listdir(directory) == []


def test_a_lock_left_by_a_killed_run_is_taken(tmp_path):
    # A pid no process has, in the lock file, as a killed run leaves it.
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / run_folder.LOCK_FILE).write_text("999999999\n")
    with run_folder.RunLock(str(directory)) as lock:
        assert (directory / run_folder.LOCK_FILE).read_text() == (
            f"{os.getpid()}\n"
        )
        with pytest.raises(run_folder.RunInUseError):
            run_folder.RunLock(str(directory)).__enter__()
    assert lock.path == str(directory / run_folder.LOCK_FILE)
    assert not (directory / run_folder.LOCK_FILE).exists()


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


def _weights(directory):
    model = keras.saving.load_model(str(directory / "model.keras"))
    return [np.asarray(w) for w in model.get_weights()]


def _without_times(record):
    return {k: v for k, v in record.items() if k != "seconds"}


def _assert_same_run(directory, expected_record, expected_weights):
    record = results.read_json(str(directory / "results.json"))
    assert _without_times(record) == _without_times(expected_record)
    for got, want in zip(_weights(directory), expected_weights, strict=True):
        np.testing.assert_array_equal(got, want)
    assert sorted(os.listdir(directory)) == [
        run_folder.MANIFEST_FILE,
        "model.keras",
        "results.json",
        "results.md",
    ]


def _dies_while_writing(method, call):
    """A `keras.Model` method that, on its `call`-th call, writes half its
    file and is interrupted, as a kill in the middle of the write would."""
    original = getattr(keras.Model, method)
    calls = []

    def write_half_then_die(self, path, *args, **kwargs):
        calls.append(path)
        original(self, path, *args, **kwargs)
        if len(calls) == call:
            with open(path, "r+b") as file:
                file.truncate(os.path.getsize(path) // 2)
            raise KeyboardInterrupt

    return write_half_then_die


@pytest.mark.large
def test_seeded_runs_and_resumed_runs_end_bit_for_bit_alike(
    mnist_dirs, tmp_path, monkeypatch
):
    name = "r-st-fcn-affine"
    reference = _run(mnist_dirs, tmp_path / "a")
    weights = _weights(tmp_path / "a" / name)
    assert reference["epochs"][0]["loss"] != reference["epochs"][1]["loss"]

    # The seed seeds the initial weights too.
    _run(mnist_dirs, tmp_path / "b")
    _assert_same_run(tmp_path / "b" / name, reference, weights)

    # Stopped after epoch 1, the files describe epoch 1; resumed, epoch 2
    # sees the data an uninterrupted run sees, from the weights and
    # optimizer state it had.
    directory = tmp_path / "c" / name
    with pytest.raises(KeyboardInterrupt):
        _run(mnist_dirs, tmp_path / "c", callbacks=[_Interrupt()])
    record = results.read_json(str(directory / "results.json"))
    assert record["status"] == "running"
    assert record["epochs"] == reference["epochs"][:1]
    assert record["test_error"] == reference["epochs"][0]["test_error"]
    assert "ST-FCN affine" in (directory / "results.md").read_text()
    assert os.listdir(directory / "backup") == ["epoch-0001.keras"]
    assert not (directory / "model.keras").exists()
    resumed = _run(mnist_dirs, tmp_path / "c", resume=True)
    _assert_same_run(directory, reference, weights)
    assert (
        keras.saving.load_model(str(directory / "model.keras")).count_params()
        == resumed["params"]
    )
    # A finished run is not trained again on resume.
    assert _run(mnist_dirs, tmp_path / "c", resume=True) == resumed

    # Killed while writing epoch 2's backup: resumed from epoch 1's.
    with monkeypatch.context() as patch:
        # Backups and model.keras are `save`d: the 2nd is epoch 2's backup.
        patch.setattr(keras.Model, "save", _dies_while_writing("save", 2))
        with pytest.raises(KeyboardInterrupt):
            _run(mnist_dirs, tmp_path / "d")
    record = results.read_json(str(tmp_path / "d" / name / "results.json"))
    assert [e["epoch"] for e in record["epochs"]] == [1]
    _run(mnist_dirs, tmp_path / "d", resume=True)
    _assert_same_run(tmp_path / "d" / name, reference, weights)

    # Killed while writing model.keras after the last epoch: resumed from
    # the last epoch's backup, nothing trained again.
    with monkeypatch.context() as patch:
        # After the backups of epochs 1 and 2.
        patch.setattr(keras.Model, "save", _dies_while_writing("save", 3))
        with pytest.raises(KeyboardInterrupt):
            _run(mnist_dirs, tmp_path / "e")
    record = results.read_json(str(tmp_path / "e" / name / "results.json"))
    assert record["status"] == "running"
    assert record["epochs"] == reference["epochs"]
    assert not (tmp_path / "e" / name / "model.keras").exists()
    _run(mnist_dirs, tmp_path / "e", resume=True)
    _assert_same_run(tmp_path / "e" / name, reference, weights)
