"""Benchmarks the affine grid + bilinear sampler, forward and backward.

Runs under the current Keras backend (`KERAS_BACKEND=tensorflow`, `jax` or
`torch`), on its GPU when it has one, else on the CPU. Per workload it
times the forward pass (`affine_grid` then `bilinear_sample`) and a
training-step-like forward+backward: the loss `0.5 * sum((output -
target) ** 2)`, returned with its gradients w.r.t. images and theta, so
that no framework can prune the forward pass from the step. Variants
(`_sampler_variants.py` builds them):

- TensorFlow: `stn`, the package's ops in a `tf.function` (the default:
  the samplers compile themselves with XLA); `stn-xla`, the same under
  `tf.function(jit_compile=True)`; `stn-split`, `stn-xla-split` and
  `stn-xla-framed`, the same with that gather layout for the forward pass
  and both gradients (`keras_stn.config.set_gather_layout`); `stn-det`,
  `stn` with `deterministic=True`; `twin` and `twin-xla`, the plain autodiff twin
  `tests/ops/reference.py` likewise;
- JAX: `stn-jit`, the package's ops, `jax.jit` of `jax.value_and_grad`
  (the device's default gather layout); `stn-jit-framed` and
  `stn-jit-clipped`, each gather layout (`keras_stn.config.
  set_gather_layout`); `stn-jit-det`, `deterministic=True`; `jax-mc`, what
  a JAX user writes: the same affine points and
  `jax.scipy.ndimage.map_coordinates(order=1)` per image and channel
  (vmap), jitted the same way (its points an einsum, TF32 on GPUs);
  `jax-mc-exact`, the same with the points as float32 products and sums;
- PyTorch backend: `stn-eager`, the package's ops, eager; `stn-eager-det`,
  with `deterministic=True`; `stn-compile`, the loss under
  `torch.compile` (skipped with a note when it fails);
- every backend: `torch`, PyTorch's `affine_grid` + `grid_sample` (NCHW),
  on CUDA when the backend has a GPU, else on the CPU with the thread
  count of the header, when `import torch` works.

Each also comes as `<variant>:theta`: gradients w.r.t. theta only, the
usual case of a transformer on the network input (its forward is the same,
so it is timed once).

Workloads: `mnist` (256 x 60x60x1 -> 60x60), `cub` (16 x 448x448x3 ->
224x224), `feat` (32 x 56x56x64 -> 56x56), and, by default only on a GPU,
`cub-b128` (128 x 448x448x3 -> 224x224) and `feat-b128-c256` (128 x
56x56x256 -> 56x56); theta is the identity plus N(0, 0.1) noise, fixed
seed. Each variant is timed in its own block: the first call (tracing and
compilation: the `first call` column), `--warmup` untimed calls, then
`--repeats` timed calls of the forward, then the same for the step; every
call waits for its results before the clock stops. Times are in ms:
median (25th-75th percentile) and min; `x torch` is the median over the
torch peer's median with the same gradients. With `--rounds R`, every
variant's blocks run R times in turn (round 1 as above, then rounds 2..R
in the same order): the times pool every round's calls, and `x torch` is
the median of the R rounds' ratios (each round's median over the peer's
in that round) with their range, the spread of interleaved measurements.
The step reads its loss back
to the host, as a training loop that logs it does. The check lines give,
per variant, the largest absolute difference of its output and gradients
from those of the first variant with the same gradients (the loss
relative), so a peer is seen to compute the same thing; and whether a
second call of the step gave the same bits (`bitwise repeatable`: float
atomics on a GPU need not). On a GPU the header gives the device's copy
bandwidth (a 1 GiB copy, bytes read plus written per second) and each
forward's rate over the least it must move, its input read once and its
output written once.

Memory: each variant's step runs again in a fresh process. On the CPU the
column is the peak resident set size (VmHWM) during a few warmed-up steps
minus the RSS just before them, with glibc's mmap threshold pinned so that
freed buffers leave RSS and TensorFlow's oneDNN options off (their
allocator keeps freed buffers in a pool). On a GPU it is the framework's
peak device memory over the steps minus what was in use before them (on
JAX, which cannot reset its peak, before the first call: compilation
included).

Run from the repository root:

    KERAS_BACKEND=jax python benchmarks/sampler_benchmark.py
    python benchmarks/sampler_benchmark.py --workloads mnist --repeats 50
    python benchmarks/sampler_benchmark.py --workloads mnist --batch-size 8 \
        --repeats 2 --warmup 1 --no-memory  # a smoke run
    python benchmarks/sampler_benchmark.py --variants stn-xla,torch \\
        --no-memory --json sampler.json
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# JAX would otherwise take 75% of the GPU at start, leaving the torch peer
# and the memory subprocesses too little; it still pools what it uses.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# Run as a script, `benchmarks/` is on sys.path; the package and the tests
# (the autodiff twin, `tests/ops/reference.py`) sit above it.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, _ROOT)

import _device  # noqa: E402
import _sampler_variants as variants_lib  # noqa: E402
import _subsets  # noqa: E402
import _timing  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

WORKLOADS = {
    # name: (batch, (H, W, C) input, (H_out, W_out), default repeats)
    "mnist": (256, (60, 60, 1), (60, 60), 40),
    "cub": (16, (448, 448, 3), (224, 224), 20),
    "feat": (32, (56, 56, 64), (56, 56), 30),
    "cub-b128": (128, (448, 448, 3), (224, 224), 30),
    "feat-b128-c256": (128, (56, 56, 256), (56, 56), 30),
}
GPU_WORKLOADS = ("cub-b128", "feat-b128-c256")
SEED = 1234
MEMORY_STEPS = 3


def make_data(workload, batch=None):
    """Returns numpy images, theta and target for a workload."""
    default_batch, (height, width, channels), out_size, _ = WORKLOADS[workload]
    batch = batch or default_batch
    rng = np.random.default_rng(SEED)
    images = rng.random((batch, height, width, channels), dtype=np.float32)
    identity = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    theta = identity + rng.normal(0.0, 0.1, (batch, 2, 3)).astype(np.float32)
    target = rng.random((batch, *out_size, channels), dtype=np.float32)
    return {
        "images": images,
        "theta": theta,
        "target": target,
        "out_size": out_size,
    }


def available_variants():
    """The variant names this backend can run (the twin only where the
    tests are importable)."""
    backend = keras.backend.backend()
    names = variants_lib.all_names(backend)
    if backend == "tensorflow":
        try:
            from tests.ops import reference  # noqa: F401
        except ImportError:
            names = [n for n in names if not n.startswith("twin")]
    return names


def run_variant(variant, data, repeats, warmup):
    """Builds and times one variant in its own block.

    Returns:
        dict with `first_s`, `fwd` and `step` summaries and the first
        call's numpy results (`out`, `loss`, `grads`), or
        `{"skipped": reason}`.
    """
    forward, step = variants_lib.build(variant, data, _device.has_gpu())
    _, theta_only = variants_lib.split(variant)
    start = time.perf_counter()
    try:
        out, (loss, grads) = forward(), step()
    except Exception as error:  # e.g. torch.compile on an unsupported op
        return {"skipped": f"{type(error).__name__}: {_first_line(error)}"}
    first_s = time.perf_counter() - start
    grads = [variants_lib.to_numpy(g) for g in grads]
    _, again = step()
    result = {
        "first_s": first_s,
        "out": None if theta_only else variants_lib.to_numpy(out),
        "loss": float(variants_lib.to_numpy(loss)),
        "grads": grads,
        # Whether a second call gives the same bits (float atomics on GPUs
        # need not): per gradient, images first.
        "repeatable": [
            bool(np.array_equal(a, variants_lib.to_numpy(b)))
            for a, b in zip(grads, again, strict=True)
        ],
        "fwd": None,
    }
    result["calls"] = (None if theta_only else forward, step)
    result["times"] = {"fwd": [], "step": []}
    time_round(result, repeats, warmup)
    return result


def time_round(result, repeats, warmup):
    """Times one round of a variant: a block of its forward calls (unless
    it is a `:theta` variant, whose forward is its base's), then a block
    of its steps; appends each block's times to `result["times"]`."""
    for key, call in zip(("fwd", "step"), result["calls"], strict=True):
        if call is not None:
            result["times"][key].append(
                _timing.time_block(call, repeats, warmup)
            )


def _first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else ""


def _differences(variant, mine, base, ref):
    """Max |difference| of a variant's results from the first variant's
    with the same gradients: `<variant> vs <base>: out .., loss (rel) ..,
    d<input> .. (of <the base's largest magnitude>)`."""
    diffs = []
    if mine["out"] is not None:
        diffs.append(f"out {_max_abs(mine['out'], ref['out']):.1e}")
    loss_rel = abs(mine["loss"] - ref["loss"]) / max(abs(ref["loss"]), 1e-30)
    diffs.append(f"loss (rel) {loss_rel:.1e}")
    names = ("images", "theta")[-len(ref["grads"]) :]
    pairs = zip(names, mine["grads"], ref["grads"], strict=True)
    for name, a, b in pairs:
        scale = float(np.max(np.abs(b)))
        diffs.append(f"d{name} {_max_abs(a, b):.1e} (of {scale:.1e})")
    return f"- {variant} vs {base}: " + ", ".join(diffs)


def _repeatability(variant, result):
    """`- <variant>: bitwise repeatable: dimages yes, dtheta no`."""
    names = ("images", "theta")[-len(result["repeatable"]) :]
    cells = [
        f"d{name} {'yes' if same else 'NO'}"
        for name, same in zip(names, result["repeatable"], strict=True)
    ]
    return f"- {variant}: bitwise repeatable over two calls: {', '.join(cells)}"


def workload_bytes(data):
    """The least a forward pass moves: its input read once, its output
    written once (float32), in bytes."""
    images = data["images"]
    out_height, out_width = data["out_size"]
    batch, _, _, channels = images.shape
    return images.nbytes + 4 * batch * out_height * out_width * channels


def copy_bandwidth():
    """Device-to-device copy bandwidth (bytes read + written per second) of
    the backend's framework on its GPU: the median of 10 timed 1 GiB
    copies; None on a CPU."""
    if not _device.has_gpu():
        return None
    n = 2**28  # float32 values: 1 GiB
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        x = jnp.ones((n,), "float32")
        copy = jax.jit(lambda x: x + 1.0)

        def run():
            jax.block_until_ready(copy(x))
    elif backend == "torch":
        import torch

        x = torch.ones((n,), device="cuda")

        def run():
            x.clone()
            torch.cuda.synchronize()
    else:
        import tensorflow as tf

        x = tf.ones((n,))
        copy = tf.function(lambda x: x + 1.0, jit_compile=True)

        def run():
            copy(x)[0].numpy()
    times = _timing.time_block(run, 10, 2)
    return 2 * 4 * n / (float(np.median(times)) / 1e3)


def _bandwidth_line(variant, result, data, bandwidth):
    """`- <variant> forward: N MB at X GB/s, Y % of the copy bandwidth`."""
    moved = workload_bytes(data)
    rate = moved / (result["fwd"]["median"] / 1e3)
    return (
        f"- {variant} forward: {moved / 1e6:.0f} MB (input read + output "
        f"written) at {rate / 1e9:.0f} GB/s, {100 * rate / bandwidth:.0f} % "
        "of the copy bandwidth"
    )


def _max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _read_status_kib(field):
    """Returns a `/proc/self/status` field (e.g. VmHWM) in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _gpu_memory(variant):
    """The GPU memory counters of the framework that runs `variant`."""
    return _device.gpu_memory_counters(variants_lib.framework(variant))


def memory_child(workload, variant, batch):
    """Prints the peak memory increase (MiB) of a variant's steps."""
    _, step = variants_lib.build(
        variant, make_data(workload, batch), _device.has_gpu()
    )
    if _device.has_gpu():
        reset, current, peak = _gpu_memory(variant)
        if reset is None:
            before = current()
        step()  # trace, compile and warm up
        step()
        if reset is not None:
            reset()
            before = current()
        for _ in range(MEMORY_STEPS):
            step()
        print(json.dumps({"mib": (peak() - before) / 2**20}))
        return
    step()
    step()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _read_status_kib("VmRSS")
    for _ in range(MEMORY_STEPS):
        step()
    print(json.dumps({"mib": (_read_status_kib("VmHWM") - before) / 1024}))


def measure_memory(workload, variant, batch):
    """Runs `memory_child` in a fresh interpreter; returns MiB or None."""
    env = dict(os.environ)
    # A fixed threshold turns off glibc's adaptive one: big buffers are
    # mmap-ed and unmapped when freed, so RSS follows live memory.
    env["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
    # oneDNN's CPU allocator pools buffers in a BFC arena and never returns
    # them, which would hide each step's memory from RSS (the sampler is
    # gathers and elementwise ops: oneDNN does not change what it allocates).
    env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    env["KERAS_BACKEND"] = keras.backend.backend()
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--_memory-child",
        workload,
        variant,
        str(batch or 0),
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


def _peer(variant):
    _, theta_only = variants_lib.split(variant)
    return "torch" + (variants_lib.THETA if theta_only else "")


def _ratio(summary, peer):
    """`summary`'s median over the peer's, or None without either."""
    if summary is None or peer is None:
        return None
    return summary["median"] / peer["median"]


def _ratio_cell(ratio, rounds=()):
    """The ratio of pooled medians; with several rounds, the median of the
    rounds' ratios and their range: `0.45 (0.41-0.52)`."""
    if ratio is None:
        return ""
    if len(rounds) < 2:
        return f"{ratio:.2f}"
    return (
        f"{np.median(rounds):.2f} ({min(rounds):.2f}-{max(rounds):.2f})"
    )


def table(rows, memory_label):
    """Formats the `rows` of `run` as Markdown."""
    lines = [
        "| workload | variant | fwd ms median (IQR) | fwd min | fwd x torch"
        " | fwd+bwd ms median (IQR) | fwd+bwd min | fwd+bwd x torch"
        f" | {memory_label} | first call s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "skipped" in row:
            lines.append(
                f"| {row['workload']} | {row['variant']} | skipped: "
                f"{row['skipped']} |||||||| "
            )
            continue
        cells = []
        for key in ("fwd", "step"):
            summary = row[key]
            if summary is None:
                cells += ["(as above)", "", ""]
                continue
            cells += [
                _timing.spread_cell(summary),
                f"{summary['min']:.2f}",
                _ratio_cell(row["x_torch"][key], row["x_torch_rounds"][key]),
            ]
        memory = row["memory_mib"]
        lines.append(
            f"| {row['workload']} | {row['variant']} | {' | '.join(cells)} "
            f"| {'' if memory is None else f'{memory:.1f}'} "
            f"| {row['first_s']:.1f} |"
        )
    return "\n".join(lines)


def _summarize_rounds(results, peers):
    """Sets each result's `fwd` and `step` summaries (over every timed
    call of every round) and `x_torch_rounds`: per round, the median over
    its peer's median of the same round."""
    for variant, result in results.items():
        if "skipped" in result:
            continue
        result["x_torch_rounds"] = {}
        for key in ("fwd", "step"):
            rounds = result["times"][key]
            result[key] = _timing.summarize([t for r in rounds for t in r])
            peer = results.get(peers[variant], {})
            peer_rounds = peer.get("times", {}).get(key, [])
            result["x_torch_rounds"][key] = [
                float(np.median(mine) / np.median(theirs))
                for mine, theirs in zip(rounds, peer_rounds, strict=False)
            ]


def run(args, bandwidth=None):
    """Times every workload and variant; returns the rows and checks."""
    rows, checks = [], []
    for workload in args.workloads:
        data = make_data(workload, args.batch_size)
        repeats = args.repeats or WORKLOADS[workload][3]
        results, bases = {}, {}
        checks.append(f"{workload}, max |difference|:")
        for variant in args.variants:
            result = run_variant(variant, data, repeats, args.warmup)
            print(f"{workload}: {variant} done", file=sys.stderr)
            if "skipped" not in result:
                checks.append(_repeatability(variant, result))
                # Compared at once, so that only the bases' arrays are kept.
                _, theta_only = variants_lib.split(variant)
                base = bases.setdefault(theta_only, (variant, result))
                if base[0] != variant:
                    checks.append(_differences(variant, result, *base))
                    for key in ("out", "grads"):
                        del result[key]
            results[variant] = result
        # Further rounds: every variant's blocks again, in the same order,
        # so that each round's ratios compare blocks run minutes apart at
        # most, and their spread shows how much the machine's state moved.
        for round_number in range(2, args.rounds + 1):
            for variant in args.variants:
                if "skipped" not in results[variant]:
                    time_round(results[variant], repeats, args.warmup)
            print(f"{workload}: round {round_number} done", file=sys.stderr)
        _summarize_rounds(
            results, {variant: _peer(variant) for variant in args.variants}
        )
        for variant, result in results.items():
            if bandwidth and "skipped" not in result and result["fwd"]:
                checks.append(_bandwidth_line(variant, result, data, bandwidth))
        for variant in args.variants:
            result = results[variant]
            row = {"workload": workload, "variant": variant}
            if "skipped" in result:
                rows.append({**row, "skipped": result["skipped"]})
                continue
            peer = results.get(_peer(variant), {})
            memory = None
            if not args.no_memory:
                memory = measure_memory(workload, variant, args.batch_size)
            rows.append(
                {
                    **row,
                    "batch": len(data["images"]),
                    "repeats": repeats,
                    "first_s": result["first_s"],
                    "fwd": result["fwd"],
                    "step": result["step"],
                    "x_torch": {
                        key: _ratio(result[key], peer.get(key))
                        for key in ("fwd", "step")
                    },
                    "x_torch_rounds": result["x_torch_rounds"],
                    "memory_mib": memory,
                    "repeatable": result["repeatable"],
                }
            )
    return rows, checks


def parse_args(argv=None):
    """Parses the command line."""
    names = available_variants()
    default_workloads = [
        w for w in WORKLOADS if _device.has_gpu() or w not in GPU_WORKLOADS
    ]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _subsets.add_subset_argument(
        parser,
        "--workloads",
        WORKLOADS,
        default=default_workloads,
        note=f" (default: {', '.join(GPU_WORKLOADS)} only on a GPU)",
    )
    _subsets.add_subset_argument(parser, "--variants", names)
    _subsets.add_per_workload_int(
        parser, "--repeats", "timed calls per variant", WORKLOADS, 3
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="untimed calls after the first (default 3)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="times every variant's blocks this many times, in turn; the "
        "x torch cells then give the median of the rounds' ratios and "
        "their range (default 1)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="batch of every workload (default: each workload's own)",
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the per-variant memory subprocesses",
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--_memory-child",
        dest="memory_child",
        nargs=3,
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    args.workloads = _subsets.parse_subset(
        parser, args.workloads, WORKLOADS, "workloads"
    )
    args.variants = _subsets.parse_subset(
        parser, args.variants, names, "variants"
    )
    for name, low in (
        ("repeats", 1),
        ("warmup", 0),
        ("batch_size", 1),
        ("rounds", 1),
    ):
        value = getattr(args, name)
        if value is not None and value < low:
            parser.error(f"--{name.replace('_', '-')} must be >= {low}")
    return args


def _torch_version():
    """The torch peer's version, and its threads when it runs on the CPU."""
    try:
        import torch
    except ImportError:
        return "torch absent"
    if _device.has_gpu() and torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA)"
    return f"torch {torch.__version__} (CPU, {torch.get_num_threads()} threads)"


def main(argv=None):
    """Runs the benchmark and prints the Markdown table."""
    args = parse_args(argv)
    try:
        import torch

        torch.set_num_threads(_device.cpu_count())
    except ImportError:  # the torch peer is optional
        pass
    if args.memory_child:
        workload, variant, batch = args.memory_child
        memory_child(workload, variant, int(batch) or None)
        return
    bandwidth = copy_bandwidth()
    extras = [_torch_version()]
    if bandwidth:
        extras.append(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s (read + write)")
    header = _device.header(*extras)
    print(header)
    start = time.perf_counter()
    rows, checks = run(args, bandwidth)
    memory_label = (
        "peak GPU memory increase MiB"
        if _device.has_gpu()
        else "peak RSS increase MiB"
    )
    print()
    print(table(rows, memory_label))
    print()
    for check in checks:
        print(check)
    total_s = time.perf_counter() - start
    print(f"\ntotal time {total_s:.0f} s")
    if args.json:
        _timing.write_json(
            args.json,
            {
                "benchmark": "sampler",
                "header": header,
                "backend": keras.backend.backend(),
                "device": _device.device_name(),
                "memory": None if args.no_memory else memory_label,
                "rows": rows,
                "checks": checks,
                "copy_bandwidth_bytes_per_s": bandwidth,
                "total_s": total_s,
            },
        )


if __name__ == "__main__":
    main()
