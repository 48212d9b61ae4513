"""Measures the TFLite flatbuffer's size against the batch it is built for.

A TFLite model is converted from a concrete function of fixed shapes, so a
constant whose shape holds the batch (a base grid tiled over the batch,
the batch index of a gather) would be stored once per sample and the file
would grow with the batch: other converters' GridSample does. This script
converts, with `tf.lite.TFLiteConverter.from_concrete_functions` (builtin
ops only, no optimisations), at each `--batch-sizes` entry:

- `sampler-60x60x1`, `sampler-224x224x3`: the bare sampler,
  `affine_grid` then `bilinear_sample` (zeros padding,
  align_corners=False), images `(B, H, W, C)` and theta `(B, 6)` in,
  `(B, H, W, C)` out;
- `st-cnn-28x28x1`, `st-cnn-60x60x1`: `keras_stn.models.st_cnn` at that
  input, in inference mode, its localization head moved off the identity
  (kernel drawn from N(0, 0.05)) so that every sample gets its own theta.

Each model is also converted once with a dynamic batch (`None`), then run
at every batch size after `Interpreter.resize_tensor_input`. The table
gives the `.tflite` bytes, their ratio to the file of the first batch size
(1 by default) and the largest absolute difference between the
interpreter's output and the Keras model's on the same random inputs
(fixed seed; theta is the identity plus N(0, 0.1) noise); for the dynamic
row, over all the batch sizes it ran. A conversion or run that fails shows
the exception in the table. Below it, per model, the bytes each sample
adds between the two largest batches.

TensorFlow only (TFLite is TensorFlow's). Run from the repository root:

    python benchmarks/tflite_size.py
    python benchmarks/tflite_size.py --models st-cnn-28x28x1 \\
        --batch-sizes 1,32 --json tflite.json
"""

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a script, `benchmarks/` is on sys.path; the package sits above it.
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _device  # noqa: E402
import _subsets  # noqa: E402
import _timing  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_stn  # noqa: E402

SEED = 1234
# name: (kind, (H, W, C) input); samplers output H x W.
MODELS = {
    "sampler-60x60x1": ("sampler", (60, 60, 1)),
    "sampler-224x224x3": ("sampler", (224, 224, 3)),
    "st-cnn-28x28x1": ("st-cnn", (28, 28, 1)),
    "st-cnn-60x60x1": ("st-cnn", (60, 60, 1)),
}
DEFAULT_BATCH_SIZES = (1, 8, 32, 128)


def _sampler(shape):
    """`(fn, input_shapes)`: fn(images, theta) -> warped images."""
    size = shape[:2]

    def warp(images, theta):
        grid = keras_stn.ops.affine_grid(theta, size)
        return keras_stn.ops.bilinear_sample(images, grid)

    return warp, [shape, (6,)]


def _st_cnn(shape):
    """`(fn, input_shapes)`: fn(images) -> class probabilities."""
    keras.utils.set_random_seed(SEED)
    model = keras_stn.models.st_cnn(input_shape=shape)
    # A new head returns the identity: give each sample its own theta.
    rng = np.random.default_rng(SEED)
    for layer in model.layers:
        if isinstance(layer, keras_stn.SpatialTransformer):
            for head in layer.heads:
                head.kernel.assign(
                    rng.normal(0.0, 0.05, head.kernel.shape).astype("float32")
                )

    def classify(images):
        return model(images, training=False)

    return classify, [shape]


def build(name):
    """The model named `name`: `(fn, input_shapes without the batch)`."""
    kind, shape = MODELS[name]
    return (_sampler if kind == "sampler" else _st_cnn)(shape)


def make_inputs(input_shapes, batch):
    """Random float32 inputs: images in [0, 1), theta near the identity."""
    rng = np.random.default_rng(SEED)
    inputs = []
    for shape in input_shapes:
        if shape == (6,):
            identity = np.array([1, 0, 0, 0, 1, 0], "float32")
            noise = rng.normal(0.0, 0.1, (batch, 6)).astype("float32")
            inputs.append(identity + noise)
        else:
            inputs.append(rng.random((batch, *shape), "float32"))
    return inputs


def convert(fn, input_shapes, batch):
    """The `.tflite` bytes of `fn` traced at `batch` (None: dynamic)."""
    import tensorflow as tf

    specs = [
        tf.TensorSpec((batch, *shape), tf.float32) for shape in input_shapes
    ]
    concrete = tf.function(fn).get_concrete_function(*specs)
    # No trackable object: with one the converter keeps the weights as
    # resource variables, which the Python interpreter leaves uninitialised
    # (NaN outputs with TF 2.21).
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()


def interpret(model_content, inputs, resize):
    """Runs the flatbuffer on `inputs`; `resize` for a dynamic batch."""
    import tensorflow as tf

    with warnings.catch_warnings():
        # tf.lite.Interpreter's deprecation notice (ai_edge_litert).
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(model_content=model_content)
    details = interpreter.get_input_details()
    # Match inputs by rank: the converter may reorder them.
    by_rank = {x.ndim: x for x in inputs}
    if resize:
        for detail in details:
            value = by_rank[len(detail["shape"])]
            interpreter.resize_tensor_input(detail["index"], value.shape)
    interpreter.allocate_tensors()
    for detail in details:
        interpreter.set_tensor(detail["index"], by_rank[len(detail["shape"])])
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def max_difference(fn, model_content, input_shapes, batch, resize):
    """Max |interpreter - Keras| on the batch's inputs."""
    inputs = make_inputs(input_shapes, batch)
    expected = keras.ops.convert_to_numpy(fn(*inputs))
    actual = interpret(model_content, inputs, resize)
    if actual.shape != expected.shape:
        raise ValueError(f"output {actual.shape}, expected {expected.shape}")
    return float(np.max(np.abs(actual - expected)))


def _failure(error):
    return f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"


def measure(name, batch_sizes):
    """One row per fixed batch, then the dynamic-batch row."""
    fn, input_shapes = build(name)
    rows = []
    for batch in [*batch_sizes, None]:
        row = {"model": name, "batch": batch}
        start = time.perf_counter()
        try:
            content = convert(fn, input_shapes, batch)
        except Exception as error:  # reported in the table
            row["failed"] = "convert: " + _failure(error)
            rows.append(row)
            continue
        row["convert_s"] = time.perf_counter() - start
        row["bytes"] = len(content)
        try:
            row["max_abs_diff"] = max(
                max_difference(fn, content, input_shapes, b, batch is None)
                for b in ([batch] if batch else batch_sizes)
            )
        except Exception as error:  # reported in the table
            row["failed"] = "run: " + _failure(error)
        rows.append(row)
    first = rows[0].get("bytes")
    for row in rows:
        if first and "bytes" in row:
            row["ratio"] = row["bytes"] / first
    return rows


def table(rows, batch_sizes):
    """Formats the rows as Markdown."""
    ran = ", ".join(map(str, batch_sizes))
    lines = [
        "| model | batch | .tflite bytes | x batch "
        f"{batch_sizes[0]} | max abs diff vs Keras |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        batch = row["batch"] or f"None (run at {ran})"
        size = f"{row['bytes']:,}" if "bytes" in row else ""
        ratio = f"{row['ratio']:.4f}" if "ratio" in row else ""
        diff = (
            f"{row['max_abs_diff']:.1e}"
            if "max_abs_diff" in row
            else row.get("failed", "")
        )
        lines.append(
            f"| {row['model']} | {batch} | {size} | {ratio} | {diff} |"
        )
    return "\n".join(lines)


def growth_lines(rows):
    """Per model, the bytes each sample adds between the two largest fixed
    batches: 0 when nothing batch-sized is stored."""
    lines = []
    for name in dict.fromkeys(row["model"] for row in rows):
        fixed = [
            row
            for row in rows
            if row["model"] == name and row["batch"] and "bytes" in row
        ]
        if len(fixed) < 2:
            continue
        low, high = sorted(fixed, key=lambda row: row["batch"])[-2:]
        slope = (high["bytes"] - low["bytes"]) / (high["batch"] - low["batch"])
        lines.append(
            f"{name}: {slope:+.1f} bytes per sample from batch "
            f"{low['batch']} to {high['batch']}"
        )
    return lines


def parse_args(argv=None):
    """The command line: `--models`, `--batch-sizes`, `--json`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _subsets.add_subset_argument(parser, "--models", list(MODELS))
    parser.add_argument(
        "--batch-sizes",
        default=",".join(map(str, DEFAULT_BATCH_SIZES)),
        help="comma-separated fixed batch sizes; the first is the reference "
        "of the ratio column (default: %(default)s)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    args.models = _subsets.parse_subset(parser, args.models, MODELS, "models")
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        parser.error(f"--batch-sizes must be ints, got {args.batch_sizes!r}")
    if any(b < 1 for b in args.batch_sizes):
        parser.error("--batch-sizes must be >= 1")
    return args


def main(argv=None):
    """Converts every model at every batch size and prints the table."""
    args = parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        sys.exit("TFLite conversion needs KERAS_BACKEND=tensorflow")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    header = _device.header()
    print(header)
    start = time.perf_counter()
    rows = [
        row for name in args.models for row in measure(name, args.batch_sizes)
    ]
    print()
    print(table(rows, args.batch_sizes))
    print()
    growth = growth_lines(rows)
    print("\n".join(growth))
    total_s = time.perf_counter() - start
    print(f"\ntotal time {total_s:.0f} s")
    if args.json:
        _timing.write_json(
            args.json,
            {
                "benchmark": "tflite_size",
                "header": header,
                "batch_sizes": args.batch_sizes,
                "rows": rows,
                "growth": growth,
                "total_s": total_s,
            },
        )


if __name__ == "__main__":
    main()
