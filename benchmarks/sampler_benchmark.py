"""Benchmarks the affine grid + bilinear sampler, forward and backward.

Measures, per workload, the wall-clock time of the forward pass
(`affine_grid` then `bilinear_sample`) and of forward+backward (gradients of
`sum(output * upstream)` w.r.t. images and theta) for:

- `twin`: the plain-autodiff twin, `tests/ops/reference.py`, `tf.function`;
- `twin-xla`: the same under `tf.function(jit_compile=True)`;
- `stn`: the package's hand-written ops, `keras_stn.ops`, `tf.function`;
- `stn-xla`: the same under `jit_compile=True`;
- `stn-xla (theta grad only)`: forward+backward w.r.t. theta only (the
  usual case of a transformer on the network input), which shows that the
  image-gradient scatter is pruned;
- `torch`, `torch (theta grad only)`: PyTorch's `affine_grid` +
  `grid_sample` on the same data (NCHW), when `import torch` works.

Workloads: `mnist` (256 x 60x60x1 -> 60x60), `cub` (16 x 448x448x3 ->
224x224) and `feat` (32 x 56x56x64 -> 56x56); theta is the identity plus
N(0, 0.1) noise, fixed seed. Tracing and compilation happen outside the
timed region (their time is the `first call` column); then a warm-up, then
repeats interleaved across variants (the order rotates each round) so that
drift affects all of them alike. Times are medians with the interquartile
range, in ms; `x torch` is the variant's median over torch's (same kind of
gradient). On a GPU every clock stop waits for the device.

Memory: each variant's forward+backward runs again in a fresh subprocess.
On CPU the column is the peak resident set size (VmHWM) during a few
compiled, warmed-up steps minus the RSS just before them, with glibc's
mmap threshold pinned so that freed buffers leave RSS and TensorFlow's
oneDNN options off (their allocator keeps freed buffers in a pool); on GPU
it is the framework's peak device memory over the same steps.

Run from the repository root:

    python benchmarks/sampler_benchmark.py
    python benchmarks/sampler_benchmark.py --workloads mnist --repeats 50
    python benchmarks/sampler_benchmark.py --variants stn-xla,torch --no-memory
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a script, `benchmarks/` is on sys.path; the package and the tests
# (the autodiff twin, `tests/ops/reference.py`) sit above it.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, _ROOT)

import _device  # noqa: E402
import _subsets  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # one tf.function per variant: retracing

import keras_stn  # noqa: E402
from keras_stn import ops as stn_ops  # noqa: E402
from tests.ops import reference  # noqa: E402

try:
    import torch
    import torch.nn.functional as torch_f
except ImportError:  # torch is an optional peer
    torch = None

WORKLOADS = {
    # name: (batch, (H, W, C) input, (H_out, W_out), default repeats)
    "mnist": (256, (60, 60, 1), (60, 60), 40),
    "cub": (16, (448, 448, 3), (224, 224), 20),
    "feat": (32, (56, 56, 64), (56, 56), 30),
}
THETA_ONLY = " (theta grad only)"
VARIANTS = (
    "twin",
    "twin-xla",
    "stn",
    "stn-xla",
    "stn-xla" + THETA_ONLY,
    "torch",
    "torch" + THETA_ONLY,
)
SEED = 1234
MEMORY_STEPS = 3


def tf_gpus():
    """Returns TensorFlow's physical GPUs (memory growth switched on)."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised
            pass
    return gpus


def torch_device():
    """Returns the torch device: CUDA when TensorFlow also runs on a GPU."""
    if tf_gpus() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def make_data(workload):
    """Returns numpy images, theta and upstream gradient for a workload."""
    batch, (height, width, channels), out_size, _ = WORKLOADS[workload]
    rng = np.random.default_rng(SEED)
    images = rng.random((batch, height, width, channels), dtype=np.float32)
    identity = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    theta = identity + rng.normal(0.0, 0.1, (batch, 2, 3)).astype(np.float32)
    upstream = rng.standard_normal(
        (batch, *out_size, channels), dtype=np.float32
    )
    return {
        "images": images,
        "theta": theta,
        "upstream": upstream,
        "out_size": out_size,
    }


def _tf_sampler(kind, out_size):
    """Returns `f(images, theta) -> output` for `twin` or `stn`."""
    if kind == "twin":

        def sample(images, theta):
            grid = reference.affine_grid(theta, out_size, align_corners=False)
            return reference.bilinear_sample(images, grid)
    else:

        def sample(images, theta):
            grid = stn_ops.affine_grid(theta, out_size)
            return stn_ops.bilinear_sample(images, grid)

    return sample


def _tf_sync(tensors):
    """Waits for TensorFlow results (only needed on a GPU)."""
    if tf_gpus():
        for t in tf.nest.flatten(tensors):
            tf.reduce_sum(t).numpy()


def build_tf(variant, data):
    """Returns `(forward, forward_backward)` zero-argument callables."""
    theta_only = variant.endswith(THETA_ONLY)
    name = variant.removesuffix(THETA_ONLY)
    sample = _tf_sampler(name.removesuffix("-xla"), data["out_size"])
    jit = name.endswith("-xla")
    images = tf.constant(data["images"])
    theta = tf.constant(data["theta"])
    upstream = tf.constant(data["upstream"])

    @tf.function(jit_compile=jit)
    def forward(images, theta):
        return sample(images, theta)

    @tf.function(jit_compile=jit)
    def forward_backward(images, theta, upstream):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            if not theta_only:
                tape.watch(images)
            loss = tf.reduce_sum(sample(images, theta) * upstream)
        if theta_only:
            return tape.gradient(loss, theta)
        return tape.gradient(loss, [images, theta])

    def run_forward():
        out = forward(images, theta)
        _tf_sync(out)
        return out

    def run_forward_backward():
        grads = forward_backward(images, theta, upstream)
        _tf_sync(grads)
        return grads

    return run_forward, run_forward_backward


def build_torch(variant, data):
    """Returns `(forward, forward_backward)` for the torch peer, NCHW."""
    theta_only = variant.endswith(THETA_ONLY)
    device = torch_device()
    batch, height, width, channels = data["images"].shape
    size = (batch, channels, *data["out_size"])
    x = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).contiguous()
    x = x.to(device).requires_grad_(not theta_only)
    theta = torch.from_numpy(data["theta"]).to(device).requires_grad_()
    upstream = torch.from_numpy(data["upstream"]).permute(0, 3, 1, 2)
    upstream = upstream.contiguous().to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None

    def sample(x, theta):
        grid = torch_f.affine_grid(theta, size, align_corners=False)
        return torch_f.grid_sample(
            x,
            grid,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )

    def run_forward():
        with torch.no_grad():
            out = sample(x, theta)
        sync()
        return out.permute(0, 2, 3, 1)

    def run_forward_backward():
        loss = (sample(x, theta) * upstream).sum()
        sources = (theta,) if theta_only else (x, theta)
        grads = torch.autograd.grad(loss, sources)
        sync()
        if theta_only:
            return grads[0]
        return [grads[0].permute(0, 2, 3, 1), grads[1]]

    return run_forward, run_forward_backward


def build(variant, data):
    """Returns `(forward, forward_backward)` callables for any variant."""
    if variant.startswith("torch"):
        return build_torch(variant, data)
    return build_tf(variant, data)


def _to_numpy(x):
    """Converts a TF or torch tensor to numpy."""
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def max_difference(a, b):
    """Returns max |a - b| / max |b| over matching tensors (worst one)."""
    pairs = zip(tf.nest.flatten(a), tf.nest.flatten(b), strict=True)
    worst = 0.0
    for x, y in pairs:
        x, y = _to_numpy(x), _to_numpy(y)
        scale = max(float(np.max(np.abs(y))), 1e-30)
        worst = max(worst, float(np.max(np.abs(x - y))) / scale)
    return worst


def _elapsed_ms(fn):
    """Runs `fn` once, returning its wall-clock time in ms."""
    start = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - start)


def time_workload(workload, variants, repeats, warmup):
    """Times every variant; returns `{variant: stats}` and a check line."""
    data = make_data(workload)
    fns, stats, results = {}, {}, {}
    for variant in variants:
        forward, forward_backward = build(variant, data)
        start = time.perf_counter()
        results[variant] = (forward(), forward_backward())
        stats[variant] = {
            "first_s": time.perf_counter() - start,
            "fwd": [],
            "fwdbwd": [],
        }
        fns[variant] = (forward, forward_backward)
        for _ in range(warmup):
            forward()
            forward_backward()
    for r in range(repeats):
        shift = r % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            forward, forward_backward = fns[variant]
            if not variant.endswith(THETA_ONLY):  # same forward as without
                stats[variant]["fwd"].append(_elapsed_ms(forward))
            stats[variant]["fwdbwd"].append(_elapsed_ms(forward_backward))
    base = variants[0]
    checks = []
    for variant in variants[1:]:
        same_grads = variant.endswith(THETA_ONLY) == base.endswith(THETA_ONLY)
        out = max_difference(results[variant][0], results[base][0])
        text = f"{variant}: out {out:.1e}"
        if same_grads:
            grad = max_difference(results[variant][1], results[base][1])
            text += f", grads {grad:.1e}"
        checks.append(text)
    check = f"{workload}: max |diff| / max |{base}|: " + "; ".join(checks)
    return stats, check


def _read_status_kib(field):
    """Returns a `/proc/self/status` field (e.g. VmHWM) in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory_child(workload, variant):
    """Prints the peak memory increase (MiB) of forward+backward steps."""
    data = make_data(workload)
    _, forward_backward = build(variant, data)
    for _ in range(2):  # trace, compile and warm up
        forward_backward()
    if tf_gpus():
        if variant.startswith("torch"):
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            for _ in range(MEMORY_STEPS):
                forward_backward()
            peak = torch.cuda.max_memory_allocated() - before
        else:
            tf.config.experimental.reset_memory_stats("GPU:0")
            before = tf.config.experimental.get_memory_info("GPU:0")["current"]
            for _ in range(MEMORY_STEPS):
                forward_backward()
            info = tf.config.experimental.get_memory_info("GPU:0")
            peak = info["peak"] - before
        print(json.dumps({"mib": peak / 2**20}))
        return
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _read_status_kib("VmRSS")
    for _ in range(MEMORY_STEPS):
        forward_backward()
    peak = _read_status_kib("VmHWM") - before
    print(json.dumps({"mib": peak / 1024}))


def measure_memory(workload, variant):
    """Runs `memory_child` in a fresh interpreter; returns MiB or None."""
    env = dict(os.environ)
    # A fixed threshold turns off glibc's adaptive one: big buffers are
    # mmap-ed and unmapped when freed, so RSS follows live memory.
    env["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
    # oneDNN's CPU allocator pools buffers in a BFC arena and never returns
    # them, which would hide each step's memory from RSS (the sampler is
    # gathers and elementwise ops: oneDNN does not change what it allocates).
    env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_package_root(), env.get("PYTHONPATH")) if p
    )
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--_memory-child",
        f"{workload}:{variant}",
    ]
    proc = subprocess.run(
        command, capture_output=True, text=True, env=env, check=False
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)["mib"]
    print(
        f"memory measurement failed for {workload}/{variant}:\n"
        f"{proc.stderr[-2000:]}",
        file=sys.stderr,
    )
    return None


def _package_root():
    """The folder holding the `keras_stn` this process imported."""
    return os.path.dirname(os.path.dirname(os.path.abspath(keras_stn.__file__)))


def _quartiles(values):
    """Returns `(median, p25, p75)` of a list."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q2, q1, q3


def _ratio(stats, variant, key):
    """`x torch` entry: variant median / matching torch median, or blank."""
    peer = "torch" + (THETA_ONLY if variant.endswith(THETA_ONLY) else "")
    if peer not in stats or not stats[variant][key]:
        return ""
    mine = statistics.median(stats[variant][key])
    return f"{mine / statistics.median(stats[peer][key]):.2f}"


def table(rows, memory_label):
    """Formats `(workload, variant, stats, memory)` rows as Markdown."""
    lines = [
        "| workload | variant | fwd ms (IQR) | fwd x torch | fwd+bwd ms (IQR)"
        f" | fwd+bwd x torch | {memory_label} | first call s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workload, variant, stats, memory in rows:
        cells = []
        for key in ("fwd", "fwdbwd"):
            if key == "fwd" and variant.endswith(THETA_ONLY):
                cells += ["(as above)", ""]
                continue
            med, q1, q3 = _quartiles(stats[variant][key])
            cells += [
                f"{med:.2f} ({q1:.2f}-{q3:.2f})",
                _ratio(stats, variant, key),
            ]
        mem = "" if memory is None else f"{memory:.0f}"
        lines.append(
            f"| {workload} | {variant} | {' | '.join(cells)} | {mem} | "
            f"{stats[variant]['first_s']:.1f} |"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    """Parses the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _subsets.add_subset_argument(parser, "--workloads", WORKLOADS)
    _subsets.add_subset_argument(parser, "--variants", VARIANTS)
    _subsets.add_per_workload_int(
        parser, "--repeats", "timed runs per variant", WORKLOADS, 3
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="untimed runs after compilation (default 3)",
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the per-variant memory subprocesses",
    )
    parser.add_argument(
        "--_memory-child", dest="memory_child", help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    args.workloads = _subsets.parse_subset(
        parser, args.workloads, WORKLOADS, "workloads"
    )
    args.variants = _subsets.parse_subset(
        parser, args.variants, VARIANTS, "variants"
    )
    return args


def main(argv=None):
    """Runs the benchmark and prints the Markdown table."""
    args = parse_args(argv)
    if torch is not None:
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    if args.memory_child:
        workload, variant = args.memory_child.split(":", 1)
        memory_child(workload, variant)
        return
    variants = [
        v
        for v in args.variants
        if torch is not None or not v.startswith("torch")
    ]
    if len(variants) < len(args.variants):
        print("torch is not importable: skipping the torch variants")
    torch_version = torch.__version__ if torch is not None else "absent"
    print(_device.header(f"torch {torch_version}"))
    start = time.perf_counter()
    rows, checks = [], []
    for workload in args.workloads:
        repeats = args.repeats or WORKLOADS[workload][3]
        stats, check = time_workload(workload, variants, repeats, args.warmup)
        checks.append(check)
        for variant in variants:
            memory = (
                None if args.no_memory else measure_memory(workload, variant)
            )
            rows.append((workload, variant, stats, memory))
        print(f"{workload}: done ({repeats} repeats)", file=sys.stderr)
    memory_label = (
        "peak GPU memory increase, MiB"
        if tf_gpus()
        else "peak RSS increase, MiB"
    )
    print()
    print(table(rows, memory_label))
    print()
    for check in checks:
        print(check)
    print(f"\ntotal time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
