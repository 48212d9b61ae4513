"""tensorflow-datasets prepares a data dir for one process at a time (CUB;
MNIST is read from its original files without tfds)."""

import os
import threading
import time

import pytest

from keras_stn.utils import files

pytestmark = pytest.mark.tensorflow_only


class _Builder:
    """A tfds builder whose preparation takes a while and counts how many
    run at once, in place of tfds' CUB builder."""

    state = {"prepared": False, "running": 0, "most": 0, "prepared_by": 0}

    def __init__(self, data_dir_root):
        self.data_dir_root = data_dir_root

    def is_prepared(self):
        return self.state["prepared"]

    def download_and_prepare(self, download_config=None):
        state = self.state
        state["running"] += 1
        state["most"] = max(state["most"], state["running"])
        time.sleep(0.3)
        state["prepared"] = True
        state["prepared_by"] += 1
        state["running"] -= 1


@pytest.fixture
def fake_tfds(monkeypatch, tmp_path):
    cub = pytest.importorskip("keras_stn.experiments.data.cub")
    _Builder.state = {
        "prepared": False,
        "running": 0,
        "most": 0,
        "prepared_by": 0,
    }
    data_dir = tmp_path / "tfds"
    monkeypatch.setattr(
        cub.tfds, "builder", lambda name, data_dir: _Builder(data_dir)
    )
    monkeypatch.setattr(cub.tfds, "load", lambda *args, **kwargs: None)
    monkeypatch.setattr(cub._downloads, "reachable", lambda url: True)
    monkeypatch.delenv(cub.MANUAL_DIR_ENV, raising=False)

    def prepare():
        cub._load("train", str(data_dir), None, False, None)

    return prepare, str(data_dir)


def test_two_processes_never_prepare_one_data_dir_at_once(fake_tfds):
    load, data_dir = fake_tfds
    errors = []

    def prepare():
        try:
            load()
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    # The second waited for the lock and found the data prepared.
    assert _Builder.state["most"] == 1
    assert _Builder.state["prepared_by"] == 1
    assert os.listdir(data_dir) == []  # the lock file is gone


def test_a_link_as_the_preparation_lock_is_refused(fake_tfds, tmp_path):
    load, data_dir = fake_tfds
    os.makedirs(data_dir)
    mine = tmp_path / "mine.txt"
    mine.write_text("years of work")
    link = os.path.join(data_dir, ".keras_stn-prepare.lock")
    os.symlink(mine, link)
    with pytest.raises(files.LinkError, match=f"{link} is a symbolic link"):
        load()
    assert mine.read_text() == "years of work"
    assert _Builder.state["prepared_by"] == 0
