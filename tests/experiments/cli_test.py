"""The `keras-stn` command line: parsing, errors, and the table's cells."""

import json
import os

import keras
import pytest

import keras_stn_cli as cli
from keras_stn.experiments import commands
from keras_stn.experiments import training
from keras_stn.experiments.data import mnist
from keras_stn.ops import transforms


def test_names_match_the_package():
    assert cli.DATA == tuple(training.DATASETS)
    assert cli.MODELS == training.MODELS
    # The command trains on 2-D digits: every image family, no volume one.
    assert set(cli.TRANSFORMS) == {
        name
        for name in transforms.names()
        if transforms.get(name).spatial_dims == 2
    }
    assert cli.DATA_SOURCES == training.DATA_SOURCES
    assert cli.MNIST_TRAIN_EXAMPLES == training.MNIST_TRAIN_EXAMPLES
    assert cli.MNIST_TEST_EXAMPLES == commands.MNIST_TEST_EXAMPLES
    assert cli.MAX_PICTURE_EXAMPLES == commands.MAX_PICTURE_EXAMPLES
    assert cli.MAX_SEED == training.MAX_SEED


def _parse_error(argv, capsys):
    """The error line argparse prints (after its usage lines)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "argv,expected",
    [
        (
            ["train", "--train-examples", "100000"],
            "argument --train-examples: must be an int from 1 to 60000",
        ),
        (["train", "--epochs", "0"], "argument --epochs: must be an int >= 1"),
        (["table", "--batch-size", "-2"], "argument --batch-size"),
        (["train", "--learning-rate", "nan"], "argument --learning-rate"),
        (["train", "--seed", "-1"], "argument --seed: must be an int from 0"),
        (["show", "--run", "x", "--count", "0"], "must be an int from 1 to 64"),
        (["show", "--run", "x", "--count", "5000"], "Received: '5000'"),
        (["samples", "--count", "100"], "argument --count"),
        (
            ["invariance", "--runs", "x", "--examples", "-5"],
            "argument --examples: must be an int from 1 to 10000",
        ),
        (
            ["train", "--resume", "--overwrite"],
            "argument --overwrite: not allowed with argument --resume",
        ),
    ],
)
def test_bad_numbers_are_named_with_their_range(argv, expected, capsys):
    error = _parse_error(argv, capsys)
    assert expected in error
    assert "split" not in error


@pytest.mark.parametrize(
    "argv,valid",
    [
        (["train", "--data", "svhn"], "'r', 'rts', 'p', 'e', 'tc'"),
        (["train", "--model", "resnet"], "'cnn', 'st-cnn', 'fcn', 'st-fcn'"),
        (["train", "--transform", "warp"], "'affine', 'projective', 'tps'"),
        (["table", "--models", "cnn", "mlp"], "'cnn', 'st-cnn'"),
    ],
)
def test_unknown_names_list_the_valid_ones(argv, valid, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "invalid choice" in error
    assert valid in error


def test_names_are_case_insensitive():
    args = cli._parser().parse_args(
        ["train", "--data", "RTS", "--model", "ST-CNN"]
    )
    assert (args.data, args.model) == ("rts", "st-cnn")


def test_a_missing_data_directory_names_the_paths(tmp_path, capsys):
    missing = tmp_path / "no-mnist"
    status = cli.main(
        [
            "train",
            "--data",
            "r",
            "--manual-dir",
            str(missing),
            "--data-dir",
            str(tmp_path / "tfds"),
            "--out-dir",
            str(tmp_path / "runs"),
            "--verbose",
            "0",
        ]
    )
    assert status == 2
    error = capsys.readouterr().err
    assert str(missing) in error
    assert "train-images-idx3-ubyte.gz" in error


def _train(tmp_path, *options, manual_dir=None):
    return cli.main(
        [
            "train",
            "--data",
            "r",
            "--model",
            "cnn",
            "--manual-dir",
            str(manual_dir or tmp_path / "no-mnist"),
            "--data-dir",
            str(tmp_path / "tfds"),
            "--verbose",
            "0",
            *options,
        ]
    )


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_an_out_dir_that_cannot_be_written_is_named_first(
    kind, tmp_path, capsys
):
    if kind == "file":
        out = tmp_path / "runs"
        out.write_text("")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes in any folder")
        out = tmp_path / "locked"
        out.mkdir(mode=0o500)
    # No MNIST here: the folder must be checked before the data.
    assert _train(tmp_path, "--out-dir", str(out / "sub")) == 2
    error = capsys.readouterr().err
    assert "`--out-dir` must be a folder" in error
    assert str(out) in error
    assert "MNIST" not in error


def test_a_corrupt_mnist_file_is_named(tmp_path, capsys):
    manual = tmp_path / "mnist"
    manual.mkdir()
    for name in mnist.FILES:
        os.symlink(
            os.path.join(
                os.path.dirname(__file__),
                "..",
                "..",
                "..",
                "shared",
                "data",
                "mnist",
                name,
            ),
            manual / name,
        )
    if not all(os.path.exists(manual / name) for name in mnist.FILES):
        pytest.skip("the four MNIST files are not in ../shared/data/mnist")
    broken = manual / mnist.FILES[1]
    content = broken.read_bytes()
    broken.unlink()
    broken.write_bytes(content[: len(content) // 2])
    status = _train(
        tmp_path, "--out-dir", str(tmp_path / "runs"), manual_dir=manual
    )
    assert status == 2
    error = capsys.readouterr().err
    assert f"{broken} is corrupt" in error
    assert "Traceback" not in error
    assert not (tmp_path / "runs").exists()


def test_resume_names_a_damaged_results_file(tmp_path, capsys):
    run = tmp_path / "runs" / "r-cnn"
    run.mkdir(parents=True)
    (run / "results.json").write_text('{"status": "runn')
    assert (
        _train(tmp_path, "--out-dir", str(tmp_path / "runs"), "--resume") == 2
    )
    error = capsys.readouterr().err
    assert f"{run / 'results.json'} is damaged" in error
    assert (run / "results.json").read_text() == '{"status": "runn'


def test_a_table_refuses_before_training_any_cell(tmp_path, capsys):
    # The table's second cell holds a finished run: nothing starts.
    run = tmp_path / "runs" / "r-fcn"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"status": "complete"}))
    status = cli.main(
        [
            "table",
            "--data",
            "r",
            "--models",
            "cnn",
            "fcn",
            "--out-dir",
            str(tmp_path / "runs"),
            "--manual-dir",
            str(tmp_path / "no-mnist"),
        ]
    )
    assert status == 2
    error = capsys.readouterr().err
    assert "1 of the table's 2 runs cannot start" in error
    assert f"{run} holds a finished run" in error
    assert sorted(os.listdir(tmp_path / "runs")) == ["r-fcn"]


def _show(path, capsys, *options):
    status = cli.main(["show", "--model", str(path), "--data", "r", *options])
    assert status == 2
    return capsys.readouterr().err


@keras.saving.register_keras_serializable(package="elsewhere")
class _Unregistered(keras.layers.Layer):
    def call(self, inputs):
        return inputs


def test_show_names_a_model_that_does_not_load(tmp_path, capsys):
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10)(
        keras.layers.Flatten()(_Unregistered()(inputs))
    )
    path = tmp_path / "custom.keras"
    keras.Model(inputs, outputs).save(str(path))
    # As in a process that never imported the code of this layer.
    objects = keras.saving.get_custom_objects()
    saved = objects.pop("elsewhere>_Unregistered")
    try:
        error = _show(path, capsys)
    finally:
        objects["elsewhere>_Unregistered"] = saved
    assert "`--model` must be a .keras file written by keras-stn" in error
    assert str(path) in error and "class '_Unregistered'" in error
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(b"not a zip file")
    assert str(damaged) in _show(damaged, capsys)


def test_show_needs_a_one_output_classifier(tmp_path, capsys):
    inputs = keras.Input((28, 28, 1))
    features = keras.layers.Flatten()(inputs)
    outputs = [
        keras.layers.Dense(10)(features),
        keras.layers.Dense(4)(features),
    ]
    path = tmp_path / "two.keras"
    keras.Model(inputs, outputs).save(str(path))
    error = _show(path, capsys)
    assert "one output of class scores" in error
    assert "with 2 outputs" in error


def test_show_without_a_model_names_the_path(tmp_path, capsys):
    status = cli.main(["show", "--run", str(tmp_path / "run")])
    assert status == 2
    assert "model.keras" in capsys.readouterr().err


def test_table_cells_order_and_transforms():
    cells = commands.table_cells(
        ["r", "rts"],
        ["cnn", "st-cnn", "fcn", "st-fcn"],
        ["affine", "tps"],
        ["affine"],
    )
    assert cells[:5] == [
        ("r", "cnn", None),
        ("r", "st-cnn", "affine"),
        ("r", "st-cnn", "tps"),
        ("r", "fcn", None),
        ("r", "st-fcn", "affine"),
    ]
    assert len(cells) == 10
