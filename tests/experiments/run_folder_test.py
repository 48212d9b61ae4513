"""A run folder never reaches outside itself: symbolic links are refused,
`overwrite` deletes only what the package wrote, a run is resumed under
the backend that trained it."""

import json
import os

import keras
import pytest

from keras_stn.experiments import results
from keras_stn.experiments import run_folder
from keras_stn.experiments import training
from keras_stn.utils import files
from tests.experiments import tiny_runs

RUN = "r-fcn"


@pytest.fixture
def tiny_data(monkeypatch):
    """`train_run` on a few random digits instead of MNIST."""
    monkeypatch.setattr(training, "make_datasets", tiny_runs.make_datasets)


def _run(out_dir, **kwargs):
    return training.train_run(**tiny_runs.options(out_dir, **kwargs))


def _user_folder(tmp_path):
    """A folder of the user's, outside any run folder, with two files."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    (folder / "epoch-0001.keras").write_text("not a backup")
    return folder


def _contents(folder):
    return {name: (folder / name).read_bytes() for name in os.listdir(folder)}


def _running_record(backend=None):
    settings = training.run_settings(**_settings())
    record = {
        "data": "r",
        "model": "fcn",
        "transform": None,
        "schedule": {k: settings[k] for k in training._SCHEDULE_KEYS},
        "data_source": "pydataset",
        "epochs": [{"epoch": 1}],
        "status": "running",
    }
    if backend:
        record["backend"] = backend
    return record


def _settings():
    options = tiny_runs.options("unused")
    for name in ("out_dir", "pictures", "verbose"):
        options.pop(name)
    return options


def _refusal(error, link):
    message = str(error.value)
    assert isinstance(error.value, files.LinkError)
    assert f"{link} is a symbolic link" in message
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "name,kind",
    [
        (".lock", "file"),
        ("results.json", "file"),
        ("results.md", "file"),
        ("model.keras", "file"),
        (".manifest.json", "file"),
        ("backup", "folder"),
        ("pictures", "folder"),
        ("backup/epoch-0001.keras", "file"),
        ("pictures/st_initial.png", "file"),
    ],
)
@pytest.mark.parametrize("mode", ["fresh", "resume", "overwrite"])
def test_a_link_in_the_run_folder_is_refused_and_its_target_kept(
    tmp_path, name, kind, mode
):
    mine = _user_folder(tmp_path)
    directory = tmp_path / "runs" / RUN
    link = directory / name
    link.parent.mkdir(parents=True)
    if mode == "resume" and name != "results.json":
        (directory / results.RESULTS_FILE).write_text(
            json.dumps(_running_record())
        )
    target = mine if kind == "folder" else mine / "thesis.tex"
    os.symlink(target, link)
    before = _contents(mine)
    # No MNIST is needed: the folder is refused before the data is read.
    with pytest.raises(ValueError) as error:
        _run(
            tmp_path / "runs",
            resume=mode == "resume",
            overwrite=mode == "overwrite",
            manual_dir=str(tmp_path / "no-mnist"),
        )
    _refusal(error, link)
    assert _contents(mine) == before


def test_the_lock_never_writes_through_a_link(tmp_path):
    mine = _user_folder(tmp_path)
    directory = tmp_path / "run"
    directory.mkdir()
    os.symlink(mine / "thesis.tex", directory / run_folder.LOCK_FILE)
    with pytest.raises(files.LinkError) as error:
        with run_folder.RunLock(str(directory)):
            pass
    _refusal(error, directory / run_folder.LOCK_FILE)
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert os.path.islink(directory / run_folder.LOCK_FILE)


def test_overwrite_refuses_a_linked_run_folder(tmp_path):
    mine = _user_folder(tmp_path)
    (tmp_path / "runs").mkdir()
    os.symlink(mine, tmp_path / "runs" / RUN)
    before = _contents(mine)
    with pytest.raises(files.LinkError) as error:
        _run(tmp_path / "runs", overwrite=True, manual_dir=str(tmp_path))
    _refusal(error, tmp_path / "runs" / RUN)
    assert _contents(mine) == before


def test_clear_leaves_a_folder_that_holds_no_run(tmp_path):
    mine = _user_folder(tmp_path)
    (mine / "backup").mkdir()
    (mine / "backup" / "epoch-0001.weights.h5").write_text("mine")
    run_folder.clear(str(mine))
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert (mine / "backup" / "epoch-0001.weights.h5").read_text() == "mine"


def test_clear_of_an_older_run_removes_only_the_names_runs_write(tmp_path):
    # A run folder from before the manifest, with files of the user's.
    directory = tmp_path / RUN
    (directory / "backup").mkdir(parents=True)
    (directory / "pictures").mkdir()
    for name in ("results.json", "results.md", "model.keras"):
        (directory / name).write_text("{}")
    (directory / "backup" / "epoch-0002.weights.h5").write_text("weights")
    (directory / "backup" / "notes.txt").write_text("mine")
    (directory / "notes.txt").write_text("mine")
    (directory / "pictures" / "figure.png").write_text("mine")
    run_folder.clear(str(directory))
    left = sorted(
        os.path.relpath(os.path.join(root, name), directory)
        for root, _, names in os.walk(directory)
        for name in names
    )
    assert left == ["backup/notes.txt", "notes.txt", "pictures/figure.png"]


def test_a_manifest_never_names_a_file_outside_the_run(tmp_path):
    mine = _user_folder(tmp_path)
    directory = tmp_path / RUN
    directory.mkdir()
    (directory / "results.json").write_text("{}")
    listed = [
        "results.json",
        "../mine/thesis.tex",
        str(mine / "thesis.tex"),
        "backup/../../mine/epoch-0001.keras",
        "pictures/sub/x.png",
    ]
    (directory / run_folder.MANIFEST_FILE).write_text(
        json.dumps({"files": listed})
    )
    before = _contents(mine)
    run_folder.clear(str(directory))
    assert _contents(mine) == before
    assert sorted(os.listdir(directory)) == []


def test_a_run_lists_its_files_and_overwrite_deletes_only_those(
    tiny_data, tmp_path
):
    record = _run(tmp_path)
    directory = tmp_path / RUN
    manifest = json.loads((directory / run_folder.MANIFEST_FILE).read_text())
    # The backups of epochs 1 and 2 were listed, written and removed.
    assert manifest == {"files": ["model.keras", "results.json", "results.md"]}
    assert record["status"] == "complete"
    (directory / "notes.txt").write_text("mine")
    (directory / "backup").mkdir()
    (directory / "backup" / "notes.txt").write_text("mine")
    _run(tmp_path, overwrite=True, epochs=1)
    assert (directory / "notes.txt").read_text() == "mine"
    assert os.listdir(directory / "backup") == ["notes.txt"]
    assert sorted(os.listdir(directory)) == [
        run_folder.MANIFEST_FILE,
        "backup",
        "model.keras",
        "notes.txt",
        "results.json",
        "results.md",
    ]


def test_pictures_are_listed_under_a_relative_out_dir(
    tiny_data, tmp_path, monkeypatch
):
    pytest.importorskip("matplotlib", reason="pictures need matplotlib")
    monkeypatch.chdir(tmp_path)
    _run("runs", model="st-fcn", epochs=1, pictures=True)
    directory = tmp_path / "runs" / "r-st-fcn-affine"
    listed = json.loads((directory / run_folder.MANIFEST_FILE).read_text())
    pictures = sorted(os.listdir(directory / "pictures"))
    assert pictures  # the initial and epoch snapshots, and the GIF
    assert listed["files"] == sorted(
        ["model.keras", "results.json", "results.md"]
        + [f"pictures/{name}" for name in pictures]
    )
    _run("runs", model="st-fcn", epochs=1, overwrite=True, pictures=False)
    assert not (directory / "pictures").exists()


def _other_backend():
    return "jax" if keras.backend.backend() != "jax" else "torch"


def test_resume_under_another_backend_is_refused_naming_both(tmp_path):
    directory = tmp_path / RUN
    directory.mkdir()
    other = _other_backend()
    (directory / "results.json").write_text(json.dumps(_running_record(other)))
    before = _contents(directory)
    with pytest.raises(ValueError) as error:
        _run(tmp_path, resume=True, manual_dir=str(tmp_path / "no-mnist"))
    message = str(error.value)
    assert f"trained it, {other!r}" in message
    assert f"this process runs {keras.backend.backend()!r}" in message
    assert "--allow-backend-change" in message
    assert _contents(directory) == before


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def test_allow_backend_change_records_the_backends(tiny_data, tmp_path):
    directory = tmp_path / RUN
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, callbacks=[_Interrupt()])
    # As another backend would have left it after its first epoch.
    record = results.read_json(str(directory / "results.json"))
    other = _other_backend()
    record["backend"] = other
    results.write_json(str(directory / "results.json"), record)
    with pytest.raises(ValueError, match="--allow-backend-change"):
        _run(tmp_path, resume=True)
    resumed = _run(tmp_path, resume=True, allow_backend_change=True)
    assert resumed["status"] == "complete"
    assert resumed["backends"] == [other, keras.backend.backend()]
    assert resumed["backend"] == keras.backend.backend()
    # Resumed again under this backend, nothing changes.
    assert _run(tmp_path, resume=True) == resumed


def test_allow_backend_change_is_a_flag_of_train_and_table():
    import keras_stn_cli as cli

    for command in ("train", "table"):
        args = cli._parser().parse_args(
            [command, "--resume", "--allow-backend-change"]
        )
        assert args.allow_backend_change is True
        assert cli._parser().parse_args([command]).allow_backend_change is (
            False
        )


def _weights(directory):
    model = keras.saving.load_model(str(directory / "model.keras"))
    return model.get_weights()


def test_resume_reads_the_backups_of_older_runs_and_ends_alike(
    tiny_data, tmp_path
):
    reference = _run(tmp_path / "a")
    directory = tmp_path / "b" / RUN
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", callbacks=[_Interrupt()])
    # As keras-stn left a run before backups were .keras files: a
    # .weights.h5 backup (weights and optimizer state) and no manifest.
    backup = directory / "backup" / "epoch-0001.keras"
    older = directory / "backup" / "epoch-0001.weights.h5"
    keras.saving.load_model(str(backup)).save_weights(str(older))
    backup.unlink()
    (directory / run_folder.MANIFEST_FILE).unlink()
    resumed = _run(tmp_path / "b", resume=True)
    for record in (reference, resumed):
        record.pop("seconds")
    assert resumed == reference
    for got, want in zip(
        _weights(directory), _weights(tmp_path / "a" / RUN), strict=True
    ):
        assert (got == want).all()
    assert sorted(os.listdir(directory)) == [
        run_folder.MANIFEST_FILE,
        "model.keras",
        "results.json",
        "results.md",
    ]
