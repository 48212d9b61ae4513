"""Result files: atomic writes and the Markdown table beside the paper."""

import os

import pytest

from keras_stn.experiments import results


def _record(model, transform, data, error, status="complete"):
    return {
        "model": model,
        "transform": transform,
        "data": data,
        "test_error": error,
        "status": status,
        "params": 1234,
    }


def test_write_json_round_trips_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "results.json"
    results.write_json(str(path), {"a": [1, 2.5]})
    assert results.read_json(str(path)) == {"a": [1, 2.5]}
    assert os.listdir(path.parent) == ["results.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "results.json")
    results.write_json(path, {"epoch": 1})
    with pytest.raises(TypeError):
        results.write_json(path, {"epoch": object()})
    assert results.read_json(path) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["results.json"]


def test_read_json_of_a_missing_file_is_none(tmp_path):
    assert results.read_json(str(tmp_path / "nothing.json")) is None


def test_paper_errors_are_the_papers_table():
    assert results.paper_error("cnn", None, "rts") == 0.8
    assert results.paper_error("cnn", "affine", "R") == 1.2
    assert results.paper_error("st-cnn", "tps", "e") == 1.1
    assert results.paper_error("st-fcn", "affine", "P") == 1.5
    assert results.paper_error("st-cnn", "rigid", "R") is None


def test_markdown_table_puts_ours_beside_the_paper():
    table = results.markdown_table(
        [
            _record("cnn", None, "rts", 0.0123),
            _record("st-cnn", "affine", "rts", 0.0081, status="running"),
            _record("cnn", None, "r", 0.02),
        ]
    )
    lines = table.splitlines()
    assert lines[0] == "| model | RTS | R |"
    assert lines[2] == "| CNN | 1.23 (0.8) | 2.00 (1.2) |"
    assert lines[3] == "| ST-CNN affine | 0.81* (0.5) |  |"
    assert lines[5:9] == ["Parameters:", "", lines[0], lines[1]]
    assert lines[9] == "| CNN | 1,234 | 1,234 |"
    assert lines[10] == "| ST-CNN affine | 1,234 | |"
    assert "not finished" in table


def test_one_data_set_puts_parameters_beside_the_errors():
    table = results.markdown_table([_record("cnn", None, "rts", 0.0123)])
    assert table.splitlines()[:3] == [
        "| model | params | RTS |",
        "|---|---:|---:|",
        "| CNN | 1,234 | 1.23 (0.8) |",
    ]


def test_result_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = results.write_json(str(tmp_path / "results.json"), {})
    finally:
        os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o644
