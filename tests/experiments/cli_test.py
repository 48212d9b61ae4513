"""The `keras-stn` command line: parsing, errors, and the table's cells."""

import pytest

import keras_stn_cli as cli
from keras_stn.experiments import commands
from keras_stn.experiments import training
from keras_stn.ops import transforms


def test_names_match_the_package():
    assert cli.DATA == tuple(training.DATASETS)
    assert cli.MODELS == training.MODELS
    assert set(cli.TRANSFORMS) == set(transforms.names())


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


def test_bad_numbers_name_the_argument(tmp_path, capsys):
    status = cli.main(
        ["train", "--epochs", "0", "--out-dir", str(tmp_path), "--verbose", "0"]
    )
    assert status == 2
    assert "epochs=0" in capsys.readouterr().err


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
