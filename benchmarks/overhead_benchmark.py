"""Benchmarks the training-step overhead of a spatial transformer.

Times one training step of a network with a spatial transformer against
the same network without it, in one run. A step is a `tf.function` that
calls `model(images, training=True)`, the sparse cross-entropy, one
`tf.GradientTape` gradient over the trainable weights and
`optimizer.apply` (SGD, learning rate 0.01), on one in-memory batch of
random images and labels (fixed seed). It is written out rather than
`model.train_on_batch`, whose per-call Python work (data adapters, metric
updates, logs) would add the same constant to both networks and shrink
the ratio towards 1; this measures the model, its gradient and the update.

Workloads:

- `mnist`: `keras_stn.models.cnn((42, 42, 1))` against
  `st_cnn((42, 42, 1), transform="affine")` (the paper's ST-CNN, its
  localization network included), batch 128;
- `backbone`: a `keras.applications` backbone (`--backbone`, ResNet50 by
  default; `include_top=False, weights=None`, 224x224x3) with global
  average pooling and `Dense(200)`, against `wrap_backbone(backbone,
  num_classes=200, num_transformers=1, transform="attention",
  input_size=224, sample_size=224)` (the same layers behind one attention
  transformer and its default localization trunk), batch 16.

Configurations of each network:

- `op-xla`: `tf.function`; the samplers compile themselves with XLA per op
  (`KERAS_STN_XLA_SAMPLERS` unset or not "0": the package default);
- `jit`: the whole step under `tf.function(jit_compile=True)`;
- `plain`: `tf.function` with `KERAS_STN_XLA_SAMPLERS=0`, the samplers run
  with TensorFlow's own kernels.
The network without a transformer has no sampler, so for it `op-xla` and
`plain` are the same graph: it is timed once, as `tf.function`, and `jit`.
A third row, `plain + input grad` (`tf.function`; skip it with
`--no-input-grad`), is that network's step also computing the gradient
w.r.t. its input images: a transformer in front needs the gradient at its
output, i.e. the first layer's input gradient, which the network without
one never computes. It is the floor of any transformer's overhead and
separates the transformer's own cost from that one; it is not a candidate
for "plain best".

The environment variable is read by `keras_stn.ops._backend.xla_compiled`
each time a sampler op is traced (not at import), i.e. during the first
call of a step function. Each configuration therefore gets its own model
(built with the same seed and the same initial weights), optimizer and
step function, and the variable is set only around that first call, the
trace; later calls reuse the traced graph, whatever the environment says
then. The check lines printed last confirm it from the traced graphs: the
number of functions marked for XLA compilation in each ST step (3 in
`op-xla`: the sampler's forward and its two gradients; none in `plain`;
under `jit` they are there too but inlined into the one compiled step),
and that the configurations' first losses, computed from the same
weights, agree.

Tracing and compilation happen outside the timed region (the `first call`
column); then `--warmup` untimed steps per variant; then `--repeats`
rounds, each timing one step of every variant in an order that rotates
from round to round, so that drift and other jobs on the machine affect
all of them alike. Every timed step ends with its loss (and on a GPU the
last weight) read back to the host. Times are medians with the 25th and
75th percentiles and the minimum, in ms. `x plain best` is the median over
the median of the network without a transformer under its faster
configuration; the summary gives the ST network's best configuration over
that, against the targets (ST-CNN <= 1.25x CNN; backbone <= 1.06x, the
paper's ~6% on a large network).

Run from the repository root:

    python benchmarks/overhead_benchmark.py
    python benchmarks/overhead_benchmark.py --workloads mnist --repeats 30
    python benchmarks/overhead_benchmark.py --backbone mobilenetv2
    python benchmarks/overhead_benchmark.py --quick  # a smoke run
"""

import argparse
import contextlib
import importlib.util
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a script, `benchmarks/` is on sys.path; the package sits above it.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("keras_stn") is None:
    sys.path.insert(1, _ROOT)

import _device  # noqa: E402
import _subsets  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_stn import models  # noqa: E402
from keras_stn.ops import _backend  # noqa: E402

WORKLOADS = {
    # name: (default batch, warm-up steps, timed rounds, target ratio)
    "mnist": (128, 5, 20, 1.25),
    "backbone": (16, 3, 7, 1.06),
}
QUICK = {"mnist": (32, 2, 5), "backbone": (2, 1, 3)}
BACKBONES = {
    "resnet50": keras.applications.ResNet50,
    "inceptionv3": keras.applications.InceptionV3,
    "mobilenetv2": keras.applications.MobileNetV2,
}
CONFIGS = ("op-xla", "jit", "plain")
PLAIN_CONFIGS = ("tf.function", "jit")
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
    """Returns `(images, labels)` tensors: one fixed random batch."""
    rng = np.random.default_rng(SEED)
    shape = (42, 42, 1) if workload == "mnist" else (224, 224, 3)
    images = rng.random((batch, *shape), dtype=np.float32)
    labels = rng.integers(0, NUM_CLASSES[workload], batch).astype(np.int32)
    return tf.constant(images), tf.constant(labels)


def make_step(model, optimizer, jit, input_grad=False):
    """Returns a `tf.function` training step `(images, labels) -> loss`.

    With `input_grad`, the step also computes the gradient w.r.t. the images
    (returned summed, so that it is not pruned) and returns `(loss, sum)`.
    """
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function(jit_compile=jit)
    def step(images, labels):
        with tf.GradientTape() as tape:
            if input_grad:
                tape.watch(images)
            predictions = model(images, training=True)
            loss = loss_fn(labels, predictions)
        variables = model.trainable_variables
        sources = variables + [images] if input_grad else variables
        grads = tape.gradient(loss, sources)
        optimizer.apply(grads[: len(variables)], variables)
        if input_grad:
            return loss, tf.reduce_sum(grads[-1])
        return loss

    return step


@contextlib.contextmanager
def sampler_env(config):
    """Sets `KERAS_STN_XLA_SAMPLERS` for a configuration's trace."""
    name = _backend.XLA_SAMPLERS_ENV
    saved = os.environ.get(name)
    os.environ[name] = "0" if config == "plain" else "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved


def count_xla_functions(step, images, labels):
    """Functions marked for XLA compilation inside a traced step (the
    per-op sampler kernels; the whole-step `jit` function is not counted)."""
    graph_def = step.get_concrete_function(images, labels).graph.as_graph_def()
    return sum(
        1
        for function in graph_def.library.function
        if function.attr["_XlaMustCompile"].b
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
        self.optimizer = keras.optimizers.SGD(learning_rate=0.01)
        self.optimizer.build(self.model.trainable_variables)
        self.step = make_step(
            self.model,
            self.optimizer,
            jit=config == "jit",
            input_grad=network == INPUT_GRAD,
        )
        self.times = []
        self.first_s = None
        self.first_loss = None
        self.xla_functions = None

    def __call__(self, images, labels):
        loss = tf.nest.flatten(self.step(images, labels))[0]
        value = float(loss)  # waits for the step
        if tf.config.list_physical_devices("GPU"):
            self.model.trainable_variables[-1].numpy()  # and its update
        return value

    def trace(self, images, labels):
        """Traces, compiles and runs the first step under its environment."""
        with sampler_env(self.config):
            start = time.perf_counter()
            self.first_loss = self(images, labels)
            self.first_s = time.perf_counter() - start
        self.xla_functions = count_xla_functions(self.step, images, labels)


def time_workload(workload, args):
    """Times every variant of a workload; returns them and a check line."""
    batch, warmup, repeats = args.settings[workload]
    images, labels = make_data(workload, batch)
    networks = [("plain", PLAIN_CONFIGS), ("ST", CONFIGS)]
    if args.input_grad:
        networks.insert(1, (INPUT_GRAD, ("tf.function",)))
    variants, weights = [], {}
    for network, configs in networks:
        for config in configs:
            transformer = network == "ST"
            variant = Variant(
                workload, network, config, args, weights.get(transformer)
            )
            if transformer not in weights:
                weights[transformer] = variant.model.get_weights()
            variant.trace(images, labels)
            variants.append(variant)
            print(
                f"{workload}: {variant.network} {config} traced "
                f"({variant.first_s:.1f} s)",
                file=sys.stderr,
            )
    for variant in variants:
        for _ in range(warmup):
            variant(images, labels)
    for r in range(repeats):
        shift = r % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            start = time.perf_counter()
            variant(images, labels)
            variant.times.append(1e3 * (time.perf_counter() - start))
    return variants, check_line(workload, variants)


def check_line(workload, variants):
    """XLA functions per ST step, and the spread of first-step losses."""
    parts = []
    for transformer in (False, True):
        group = [v for v in variants if v.transformer == transformer]
        losses = [v.first_loss for v in group]
        spread = (max(losses) - min(losses)) / max(abs(losses[0]), 1e-30)
        parts.append(
            f"{group[0].network} first-loss spread {spread:.1e}"
            f" (loss {losses[0]:.4f})"
        )
    counts = ", ".join(
        f"{v.config} {v.xla_functions}" for v in variants if v.transformer
    )
    return (
        f"{workload}: functions marked for XLA in the traced ST step "
        f"(inlined under jit): {counts}; " + "; ".join(parts)
    )


def summary(times):
    """`(median, p25, p75, min)` of a list of times."""
    p25, median, p75 = np.percentile(times, [25, 50, 75])
    return median, p25, p75, min(times)


def plain_best(variants):
    """The variant without a transformer with the smallest median."""
    return min(
        (v for v in variants if v.network == "plain"),
        key=lambda v: np.median(v.times),
    )


def detail_table(results):
    """Every variant: median, percentiles, min, ratio and first call."""
    lines = [
        "| workload | network | config | step ms median (p25-p75) | min ms"
        " | x plain best | first call s |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload, variants in results.items():
        base = np.median(plain_best(variants).times)
        for v in variants:
            median, p25, p75, low = summary(v.times)
            lines.append(
                f"| {workload} | {v.network} | {v.config} | {median:.1f} "
                f"({p25:.1f}-{p75:.1f}) | {low:.1f} | {median / base:.3f} | "
                f"{v.first_s:.1f} |"
            )
    return "\n".join(lines)


def summary_table(results):
    """Per workload: plain best, ST per config, ST best / plain best."""
    lines = [
        "| workload | plain best ms | "
        + " | ".join(f"ST {c} ms" for c in CONFIGS)
        + " | ST best / plain best | target |",
        "|---|---|" + "---|" * len(CONFIGS) + "---|---|",
    ]
    for workload, variants in results.items():
        base = plain_best(variants)
        base_ms = np.median(base.times)
        st = {v.config: np.median(v.times) for v in variants if v.transformer}
        best = min(st, key=st.get)
        ratio = st[best] / base_ms
        target = WORKLOADS[workload][3]
        verdict = "ok" if ratio <= target else "ABOVE"
        lines.append(
            f"| {workload} | {base_ms:.1f} ({base.config}) | "
            + " | ".join(f"{st[c]:.1f}" for c in CONFIGS)
            + f" | {ratio:.3f} ({best}) | <= {target} {verdict} |"
        )
    return "\n".join(lines)


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
        help=f"backbone batch (default {WORKLOADS['backbone'][0]})",
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
        1,
    )
    _subsets.add_per_workload_int(
        parser, "--repeats", "timed steps per variant", WORKLOADS, 2
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
    for workload, (batch, warmup, repeats, _) in WORKLOADS.items():
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
    tf.get_logger().setLevel("ERROR")  # one step function per variant
    print(_device.header())
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
    print(f"\ntotal time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
