"""Benchmarks the training-step overhead of a spatial transformer.

Times one training step of a network with a spatial transformer against
the same network without it, in one run, under the current Keras backend
(`KERAS_BACKEND=tensorflow`, `jax` or `torch`), on its GPU when it has
one. A step (`_train_steps.py`) is the forward pass, the sparse
cross-entropy, the gradients w.r.t. the trainable weights, the SGD update
(learning rate 0.01) and the loss read back to the host, on one in-memory
batch of random images and labels (fixed seed).

Workloads:

- `mnist`: `keras_stn.models.cnn((42, 42, 1))` against
  `st_cnn((42, 42, 1), transform="affine")` (the paper's ST-CNN, its
  localization network included), batch 128;
- `backbone`: a `keras.applications` backbone (`--backbone`, ResNet50 by
  default; `include_top=False, weights=None`, 224x224x3) with global
  average pooling and `Dense(200)`, against `wrap_backbone(backbone,
  num_classes=200, num_transformers=1, transform="attention",
  input_size=224, sample_size=224)` (the same layers behind one attention
  transformer and its default localization trunk), batch 16 on the CPU
  and 64 on a GPU.

Configurations, per backend:

- TensorFlow: `op-xla`, a `tf.function` whose samplers compile themselves
  with XLA (`keras_stn.config.set_xla_samplers(True)`, the default);
  `plain`, the same with `set_xla_samplers(False)` (TensorFlow's own
  kernels); `jit`, the whole step under `tf.function(jit_compile=True)`.
  The network without a transformer has no sampler, so for it `op-xla` and
  `plain` are one graph, timed once as `tf.function`, and `jit`;
- JAX: `jit`, `jax.jit` of a stateless step (`model.stateless_call`,
  `jax.value_and_grad`, `optimizer.stateless_apply`), what Keras' own JAX
  trainer compiles, without its per-call Python work;
- PyTorch: `eager`.

A third network, `plain + input grad` (skip it with `--no-input-grad`), is
the network without a transformer whose step also computes the gradient
w.r.t. its input images: a transformer in front needs the gradient at its
output, i.e. the first layer's input gradient, which the network without
one never computes. It is the floor of any transformer's overhead and
separates the transformer's own cost from that one; it is not a candidate
for "plain best".

`set_xla_samplers` is read when a sampler is traced, i.e. during the first
call of a TensorFlow step, so each configuration gets its own model (same
seed, same initial weights), optimizer and step, and the switch is set
only around that first call. The check lines printed last confirm it from
the traced graphs: the number of functions marked for XLA compilation in
each ST step (3 in `op-xla`: the sampler's forward and its two gradients;
none in `plain`; under `jit` they are inlined into the one compiled step),
and that the configurations' first losses, from the same weights, agree.

Each configuration is timed in its own block: its first call (tracing and
compilation, the `first call` column), `--warmup` untimed steps, then
`--repeats` timed steps. Times are medians with the 25th and 75th
percentiles and the minimum, in ms. `x plain best` is the median over the
median of the network without a transformer in its fastest
configuration; the summary gives the ST network's best configuration over
that, against the targets (ST-CNN <= 1.25x CNN; backbone <= 1.06x, the
paper's ~6% on a large network).

Run from the repository root:

    python benchmarks/overhead_benchmark.py
    KERAS_BACKEND=jax python benchmarks/overhead_benchmark.py --quick
    python benchmarks/overhead_benchmark.py --workloads mnist --repeats 30 \\
        --json overhead.json
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a script, `benchmarks/` is on sys.path; the package sits above it.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, _ROOT)

import _device  # noqa: E402
import _subsets  # noqa: E402
import _timing  # noqa: E402
import _train_steps  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_stn import models  # noqa: E402

WORKLOADS = {
    # name: (CPU batch, GPU batch, warm-up steps, timed steps, target ratio)
    "mnist": (128, 128, 5, 20, 1.25),
    "backbone": (16, 64, 3, 10, 1.06),
}
QUICK = {"mnist": (32, 2, 5), "backbone": (2, 1, 3)}
BACKBONES = {
    "resnet50": keras.applications.ResNet50,
    "inceptionv3": keras.applications.InceptionV3,
    "mobilenetv2": keras.applications.MobileNetV2,
}
INPUT_GRAD = "plain + input grad"
NUM_CLASSES = {"mnist": 10, "backbone": 200}
SEED = 1234


def build_model(workload, transformer, backbone):
    """Returns the network of a workload, with or without a transformer."""
    keras.utils.set_random_seed(SEED)
    if workload == "mnist":
        if transformer:
            return models.st_cnn((42, 42, 1), transform="affine")
        return models.cnn((42, 42, 1))
    trunk = BACKBONES[backbone](
        include_top=False, weights=None, input_shape=(224, 224, 3)
    )
    if transformer:
        return models.wrap_backbone(
            trunk,
            num_classes=NUM_CLASSES[workload],
            num_transformers=1,
            transform="attention",
            input_size=224,
            sample_size=224,
        )
    inputs = keras.Input((224, 224, 3))
    x = keras.layers.GlobalAveragePooling2D()(trunk(inputs))
    outputs = keras.layers.Dense(NUM_CLASSES[workload], activation="softmax")(x)
    return keras.Model(inputs, outputs, name=backbone)


def make_data(workload, batch):
    """Returns `(images, labels)` backend tensors: one fixed random batch
    (on the backend's device)."""
    rng = np.random.default_rng(SEED)
    shape = (42, 42, 1) if workload == "mnist" else (224, 224, 3)
    images = rng.random((batch, *shape), dtype=np.float32)
    labels = rng.integers(0, NUM_CLASSES[workload], batch).astype(np.int32)
    return keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(
        labels
    )


class Variant:
    """One network under one configuration: its own model and step."""

    def __init__(self, workload, network, config, args, weights=None):
        self.network = network
        self.transformer = network == "ST"
        self.config = config
        self.model = build_model(workload, self.transformer, args.backbone)
        if weights is not None:
            self.model.set_weights(weights)
        self.initial_weights = self.model.get_weights()
        self.step = _train_steps.make_step(
            self.model,
            keras.optimizers.SGD(learning_rate=0.01),
            config,
            input_grad=network == INPUT_GRAD,
        )
        self.summary = None
        self.first_s = None
        self.first_loss = None
        self.xla_functions = None

    def run(self, images, labels, warmup, repeats):
        """Traces (under its sampler setting), warms up and times."""
        with _train_steps.sampler_setting(self.config):
            start = time.perf_counter()
            self.first_loss = self.step(images, labels)
            self.first_s = time.perf_counter() - start
        if keras.backend.backend() == "tensorflow":
            self.xla_functions = _train_steps.xla_functions(
                self.step, images, labels
            )
        times = _timing.time_block(
            lambda: self.step(images, labels), repeats, warmup
        )
        self.summary = _timing.summarize(times)


def time_workload(workload, args):
    """Times every variant of a workload, each in its own block; returns
    them and a check line."""
    batch, warmup, repeats = args.settings[workload]
    images, labels = make_data(workload, batch)
    networks = [
        ("plain", _train_steps.configs(False)),
        ("ST", _train_steps.configs(True)),
    ]
    if args.input_grad:
        networks.insert(1, (INPUT_GRAD, (_train_steps.input_grad_config(),)))
    variants, weights = [], {}
    for network, configs in networks:
        for config in configs:
            transformer = network == "ST"
            variant = Variant(
                workload, network, config, args, weights.get(transformer)
            )
            weights.setdefault(transformer, variant.initial_weights)
            variant.run(images, labels, warmup, repeats)
            variants.append(variant)
            print(
                f"{workload}: {variant.network} {config} done (first call "
                f"{variant.first_s:.1f} s)",
                file=sys.stderr,
            )
    return variants, check_line(workload, variants)


def check_line(workload, variants):
    """XLA functions per ST step (TensorFlow), and the spread of the
    first-step losses of each network's configurations."""
    parts = []
    for transformer in (False, True):
        group = [v for v in variants if v.transformer == transformer]
        losses = [v.first_loss for v in group]
        spread = (max(losses) - min(losses)) / max(abs(losses[0]), 1e-30)
        parts.append(
            f"{group[0].network} first-loss spread {spread:.1e}"
            f" (loss {losses[0]:.4f})"
        )
    if keras.backend.backend() == "tensorflow":
        counts = ", ".join(
            f"{v.config} {v.xla_functions}" for v in variants if v.transformer
        )
        parts.insert(
            0,
            "functions marked for XLA in the traced ST step (inlined under "
            f"jit): {counts}",
        )
    return f"{workload}: " + "; ".join(parts)


def plain_best(variants):
    """The variant without a transformer with the smallest median."""
    return min(
        (v for v in variants if v.network == "plain"),
        key=lambda v: v.summary["median"],
    )


def detail_table(results):
    """Every variant: median, percentiles, min, ratio and first call."""
    lines = [
        "| workload | network | config | step ms median (p25-p75) | min ms"
        " | x plain best | first call s |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload, variants in results.items():
        base = plain_best(variants).summary
        for v in variants:
            lines.append(
                f"| {workload} | {v.network} | {v.config} | "
                f"{_timing.spread_cell(v.summary, 1)} | "
                f"{v.summary['min']:.1f} | "
                f"{v.summary['median'] / base['median']:.3f} | "
                f"{v.first_s:.1f} |"
            )
    return "\n".join(lines)


def summary_table(results):
    """Per workload: plain best, ST per config, ST best / plain best."""
    st_configs = _train_steps.configs(True)
    lines = [
        "| workload | plain best ms | "
        + " | ".join(f"ST {c} ms" for c in st_configs)
        + " | ST best / plain best | target |",
        "|---|---|" + "---|" * len(st_configs) + "---|---|",
    ]
    for workload, variants in results.items():
        base = plain_best(variants)
        base_ms = base.summary["median"]
        st = {v.config: v.summary["median"] for v in variants if v.transformer}
        best = min(st, key=st.get)
        ratio = st[best] / base_ms
        target = WORKLOADS[workload][4]
        verdict = "ok" if ratio <= target else "ABOVE"
        lines.append(
            f"| {workload} | {base_ms:.1f} ({base.config}) | "
            + " | ".join(f"{st[c]:.1f}" for c in st_configs)
            + f" | {ratio:.3f} ({best}) | <= {target} {verdict} |"
        )
    return "\n".join(lines)


def json_rows(results):
    """Every variant as a dict for `--json`."""
    rows = []
    for workload, variants in results.items():
        base = plain_best(variants).summary["median"]
        for v in variants:
            rows.append(
                {
                    "workload": workload,
                    "network": v.network,
                    "config": v.config,
                    "step_ms": v.summary,
                    "x_plain_best": v.summary["median"] / base,
                    "first_s": v.first_s,
                    "first_loss": v.first_loss,
                    "xla_functions": v.xla_functions,
                }
            )
    return rows


def parse_args(argv=None):
    """Parses the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _subsets.add_subset_argument(parser, "--workloads", WORKLOADS)
    parser.add_argument(
        "--backbone",
        default="resnet50",
        help="the backbone workload's network, one of: "
        + ", ".join(BACKBONES)
        + " (default resnet50)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"backbone batch (default {WORKLOADS['backbone'][0]} on the "
        f"CPU, {WORKLOADS['backbone'][1]} on a GPU)",
    )
    parser.add_argument(
        "--mnist-batch-size",
        type=int,
        default=None,
        help=f"mnist batch (default {WORKLOADS['mnist'][0]})",
    )
    _subsets.add_per_workload_int(
        parser,
        "--warmup",
        "untimed steps per variant after tracing",
        WORKLOADS,
        2,
    )
    _subsets.add_per_workload_int(
        parser, "--repeats", "timed steps per variant", WORKLOADS, 3
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: small batches ({_subsets.per_workload(QUICK, 0)})"
        " and few steps; the times mean little",
    )
    parser.add_argument(
        "--no-input-grad",
        dest="input_grad",
        action="store_false",
        help="skip the plain network's step that also computes the "
        "gradient w.r.t. its input (the floor for a transformer in front)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    args.workloads = _subsets.parse_subset(
        parser, args.workloads, WORKLOADS, "workloads"
    )
    if args.backbone not in BACKBONES:
        parser.error(
            f"unknown backbone {args.backbone!r}; choose from: "
            + ", ".join(BACKBONES)
        )
    for name in ("batch_size", "mnist_batch_size", "warmup", "repeats"):
        value = getattr(args, name)
        low = 0 if name == "warmup" else 1
        if value is not None and value < low:
            parser.error(f"--{name.replace('_', '-')} must be >= {low}")
    args.settings = {}
    gpu = _device.has_gpu()
    for workload, row in WORKLOADS.items():
        batch, warmup, repeats = row[1] if gpu else row[0], row[2], row[3]
        if args.quick:
            batch, warmup, repeats = QUICK[workload]
        batch_arg = "mnist_batch_size" if workload == "mnist" else "batch_size"
        args.settings[workload] = (
            getattr(args, batch_arg) or batch,
            warmup if args.warmup is None else args.warmup,
            args.repeats or repeats,
        )
    return args


def main(argv=None):
    """Runs the benchmark and prints the Markdown tables."""
    args = parse_args(argv)
    header = _device.header()
    print(header)
    start = time.perf_counter()
    results, checks = {}, []
    for workload in args.workloads:
        batch, warmup, repeats = args.settings[workload]
        what = (
            "cnn vs st_cnn (affine), 42x42x1"
            if workload == "mnist"
            else f"{args.backbone} vs wrap_backbone (1 attention), 224x224x3"
        )
        print(
            f"{workload}: {what}; batch {batch}, SGD; {warmup} warm-up + "
            f"{repeats} timed steps per variant"
        )
        variants, check = time_workload(workload, args)
        results[workload] = variants
        checks.append(check)
    print()
    print(detail_table(results))
    print()
    print(summary_table(results))
    print()
    for check in checks:
        print(check)
    total_s = time.perf_counter() - start
    print(f"\ntotal time {total_s:.0f} s")
    if args.json:
        _timing.write_json(
            args.json,
            {
                "benchmark": "overhead",
                "header": header,
                "backend": keras.backend.backend(),
                "device": _device.device_name(),
                "settings": {
                    w: dict(zip(("batch", "warmup", "repeats"), s, strict=True))
                    for w, s in args.settings.items()
                    if w in results
                },
                "rows": json_rows(results),
                "checks": checks,
                "total_s": total_s,
            },
        )


if __name__ == "__main__":
    main()
