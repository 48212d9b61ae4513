"""Result files of training runs: atomic JSON and Markdown, beside the
paper's numbers.

A run's `results.json` is rewritten after every epoch (a temporary file in
the same folder, then `os.replace`), so an interrupted run always leaves a
complete file describing the epochs it finished.
"""

import json
import math
import os

from keras_stn.utils import files

# Jaderberg et al., 2015, Table 1 (left): test error (%) on distorted MNIST.
# TC is the appendix's 60x60 translated-and-cluttered set (as we read it;
# the paper reports the affine transformers there).
PAPER_TABLE1 = {
    ("fcn", None): {"R": 2.1, "RTS": 5.2, "P": 3.1, "E": 3.2, "TC": 13.2},
    ("cnn", None): {"R": 1.2, "RTS": 0.8, "P": 1.5, "E": 1.4, "TC": 3.5},
    ("st-fcn", "affine"): {"R": 1.2, "RTS": 0.8, "P": 1.5, "E": 2.7},
    ("st-fcn", "projective"): {"R": 1.3, "RTS": 0.9, "P": 1.4, "E": 2.6},
    ("st-fcn", "tps"): {"R": 1.1, "RTS": 0.8, "P": 1.4, "E": 2.4},
    ("st-cnn", "affine"): {"R": 0.7, "RTS": 0.5, "P": 0.8, "E": 1.2},
    ("st-cnn", "projective"): {"R": 0.8, "RTS": 0.6, "P": 0.8, "E": 1.3},
    ("st-cnn", "tps"): {"R": 0.7, "RTS": 0.5, "P": 0.8, "E": 1.1},
}
RESULTS_FILE = "results.json"


def write_text(path, text):
    """Writes `text` to `path` atomically (a temporary file beside it, then
    `os.replace`), creating the parent folders. Returns `path`."""

    def write(temporary):
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)

    return files.atomic_write(path, write)


def write_json(path, record):
    """Writes `record` (JSON-serialisable) to `path` atomically."""
    return write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_json(path):
    """The record at `path`, or None when there is no file.

    Raises:
        ValueError: the file is not a JSON object (damaged, or not a result
            file); the message names it.
    """
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            record = json.load(file)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is damaged: it must be a result file (a JSON object) "
            f"but does not parse ({error}). Move it away, or start the run "
            "afresh with --overwrite."
        ) from error
    if not isinstance(record, dict):
        raise ValueError(
            f"{path} must hold a JSON object (a run's record). Received: "
            f"a {type(record).__name__}"
        )
    return record


def paper_error(model, transform, data):
    """The paper's test error (%) for a table cell, or None."""
    key = (model, transform if model.startswith("st-") else None)
    return PAPER_TABLE1.get(key, {}).get(data.upper())


def row_name(model, transform):
    """`"CNN"`, `"ST-CNN affine"`, ...: a table row's label."""
    name = model.upper()
    return f"{name} {transform}" if model.startswith("st-") else name


def _cell(record):
    error = record.get("test_error")
    if error is None or not math.isfinite(error):
        return "—"
    text = f"{100 * error:.2f}"
    if record.get("status") != "complete":
        text += "*"
    paper = paper_error(record["model"], record["transform"], record["data"])
    return text if paper is None else f"{text} ({paper})"


def markdown_table(records):
    """A Markdown table of test errors: one row per model (and transform),
    one column per data set, each cell `ours (paper)` in percent.

    Args:
        records: iterable of run records (dicts with `model`, `transform`,
            `data`, `test_error` as a fraction, `status`, `params`,
            `seconds`).
    Returns:
        str: the table (with a parameter column when it has one data set,
        else followed by a table of parameter counts: they depend on the
        input size) and a legend line.
    """
    records = list(records)
    columns = []
    rows = []
    cells = {}
    for record in records:
        row = row_name(record["model"], record["transform"])
        column = record["data"].upper()
        if row not in rows:
            rows.append(row)
        if column not in columns:
            columns.append(column)
        cells[row, column] = record
    single = len(columns) == 1
    lines = [
        "| model |"
        + (" params |" if single else "")
        + "".join(f" {c} |" for c in columns),
        "|---|" + ("---:|" if single else "") + "---:|" * len(columns),
    ]
    for row in rows:
        found = [cells.get((row, column)) for column in columns]
        values = [_cell(r) if r is not None else "" for r in found]
        params = [f"{r['params']:,}" if r else "" for r in found]
        lines.append(
            f"| {row} |"
            + (f" {params[0]} |" if single else "")
            + "".join(f" {v} |" for v in values)
        )
    if not single:
        lines += ["", "Parameters:", "", lines[0], lines[1]]
        for row in rows:
            found = [cells.get((row, column)) for column in columns]
            lines.append(
                f"| {row} |"
                + "".join(f" {r['params']:,} |" if r else " |" for r in found)
            )
    lines.append("")
    lines.append(
        "Test error (%), ours (paper's Table 1); * marks a run that has not"
        " finished its epochs."
    )
    return "\n".join(lines) + "\n"
