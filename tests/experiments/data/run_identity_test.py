"""The data source is not part of a run's identity; the data stream is.

Both adapters serve the same batches, so a run started on one resumes on
the other. Runs from before the one data stack: those of the PyDataset
source drew the same batches and resume; unfinished tf.data runs drew
others and are refused, naming `--overwrite`; finished ones are kept.
"""

import json

import pytest

from keras_stn.experiments import settings
from keras_stn.experiments import training


def _record(**extra):
    return {
        "data": "r",
        "model": "cnn",
        "transform": None,
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
        **extra,
    }


def _check(tmp_path, record, **settings_kwargs):
    directory = tmp_path / "r-cnn"
    directory.mkdir()
    (directory / "results.json").write_text(json.dumps(record))
    run_settings = training.run_settings(
        "r", "cnn", None, 2, 64, "adam", None, 256, 0, **settings_kwargs
    )
    return training.check_run_folder(str(directory), run_settings, resume=True)


def test_the_data_source_is_not_a_setting():
    assert "data_source" not in training.run_settings()
    with pytest.raises(ValueError, match="data_source"):
        training.run_settings(data_source="numpy")


@pytest.mark.parametrize(
    "started, resumed", [("tfds", "pydataset"), ("pydataset", "auto")]
)
def test_a_run_resumes_on_the_other_adapter(tmp_path, started, resumed):
    record = _record(data_source=started, data_stream=settings.DATA_STREAM)
    assert _check(tmp_path, record, data_source=resumed) == record


def test_an_older_pydataset_run_resumes(tmp_path):
    record = _record(data_source="pydataset")  # its streams are stream 1
    assert _check(tmp_path, record) == record


@pytest.mark.parametrize("source", [{"data_source": "tfds"}, {}])
def test_an_unfinished_older_tf_data_run_is_refused(tmp_path, source):
    with pytest.raises(ValueError) as error:
        _check(tmp_path, _record(**source))
    message = str(error.value)
    assert "data stream 0" in message and "data_source='tfds'" in message
    assert "--overwrite" in message and str(tmp_path / "r-cnn") in message


def test_a_finished_older_tf_data_run_is_kept(tmp_path):
    record = _record(data_source="tfds", status="complete")
    assert _check(tmp_path, record) == record
