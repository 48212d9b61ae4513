"""Measures the Pallas sampler against issue 24 item 2's targets.

Under Keras-JAX, per workload of `sampler_benchmark.py` (the same data,
`affine_grid` of the same thetas, zeros padding, `align_corners=False`, the
loss `0.5 * sum((output - target) ** 2)` with its gradients w.r.t. images
and theta), each variant timed in its own block, `--rounds` rounds in turn:

- `pallas`: `keras_stn.ops.affine_grid` + the Pallas kernel
  (`keras_stn.ops.backend.jax_pallas.sample`), whatever the kernel seam
  would pick; in Pallas' interpret mode on a CPU (`--smoke` only);
- `xla`: the package's own XLA sampler (`jax_pallas.set_mode("xla")` and
  native kernels off); `xla-det`: the same with `deterministic=True`;
- `stn`: `keras_stn.ops.bilinear_sample` as the package ships it (the
  Pallas kernel once it is registered in the kernel seam);
- `jax-mc`: `jax.scipy.ndimage.map_coordinates(order=1)` at the same
  points (`sampler_benchmark`'s `jax-mc`);
- `torch`, `torch-compile`: PyTorch's `affine_grid` + `grid_sample`,
  eager and under `torch.compile`, on CUDA when there is a GPU.

Printed per workload: median (25th-75th percentile) ms of the forward and
the step, peak memory of a step (fresh process per variant: JAX's peak
bytes in use from before the first call, PyTorch's peak after warm-up),
the forward's rate over the least it must move against the measured copy
bandwidth, each variant's largest difference from `xla`, and the targets:
forward >= 70 % of the copy bandwidth (cub-b128), forward faster than
`jax-mc`, step <= 0.5x `torch` and <= `torch-compile`, `xla-det` step <=
1.5x `pallas`'s, peak memory <= 1.2x `torch`'s. `--time-limit` stops
starting workloads once it has passed; the JSON is written after each
workload, so a stage killed at its limit keeps what it finished.

    KERAS_BACKEND=jax python benchmarks/pallas_benchmark.py --json p.json
    KERAS_BACKEND=jax python benchmarks/pallas_benchmark.py --smoke
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _device  # noqa: E402
import _sampler_variants as variants_lib  # noqa: E402
import _timing  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import sampler_benchmark  # noqa: E402

from keras_stn import config  # noqa: E402
from keras_stn import ops as stn_ops  # noqa: E402
from keras_stn.ops.backend import jax_pallas  # noqa: E402

VARIANTS = (
    "pallas",
    "xla",
    "xla-det",
    "stn",
    "jax-mc",
    "torch",
    "torch-compile",
)
# The bandwidth target's workload first: a stage cut short keeps it.
ORDER = ("cub-b128", "feat-b128-c256", "mnist", "cub", "feat")
# `--smoke`: one small workload, in interpret mode on a CPU.
SMOKE = {"batch": 2, "size": (12, 12, 3), "out_size": (10, 10)}


@contextlib.contextmanager
def _xla_only():
    """The package's own sampler while a function is traced."""
    has_switch = hasattr(config, "set_native_kernels")
    before = jax_pallas.mode()
    if has_switch:
        config.set_native_kernels(False)
    jax_pallas.set_mode("xla")
    try:
        yield
    finally:
        jax_pallas.set_mode(before)
        if has_switch:
            config.set_native_kernels(None)


def _sampler(variant, out_size):
    """`sample(images, theta)` of a JAX variant."""
    if variant == "jax-mc":
        return variants_lib._map_coordinates_sample(out_size)
    if variant == "pallas":

        def sample(images, theta):
            grid = stn_ops.affine_grid(theta, out_size)
            return jax_pallas.sample(images, grid, "bilinear", "zeros", False)

        return sample
    if variant == "stn":
        return variants_lib._stn_sample(out_size)
    package = variants_lib._stn_sample(
        out_size, deterministic=variant == "xla-det"
    )

    def sample(images, theta):
        with _xla_only():
            return package(images, theta)

    return sample


def build(variant, data, gpu):
    """`(forward, step)` of a variant (`_sampler_variants`' contract)."""
    if variant == "torch":
        return variants_lib.build_torch_peer(data, False, gpu)
    if variant == "torch-compile":
        return _torch_compiled(data, gpu)
    return variants_lib.build_jax(
        _sampler(variant, data["out_size"]), data, False
    )


def _torch_compiled(data, gpu):
    """PyTorch's peer (`build_torch_peer`, NCHW) with the sampler and the
    loss under `torch.compile`: Inductor compiles the forward and the
    backward that AOTAutograd derives from it."""
    import torch
    import torch.nn.functional as functional

    device = torch.device("cuda" if gpu else "cpu")

    def to_torch(array):
        return (
            torch.from_numpy(array).permute(0, 3, 1, 2).contiguous().to(device)
        )

    images = to_torch(data["images"]).requires_grad_()
    theta = torch.from_numpy(data["theta"]).to(device).requires_grad_()
    target = to_torch(data["target"])
    size = (images.shape[0], images.shape[1], *data["out_size"])

    def sample(images, theta):
        grid = functional.affine_grid(theta, size, align_corners=False)
        return functional.grid_sample(
            images,
            grid,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )

    def loss_fn(images, theta, target):
        return 0.5 * torch.sum(torch.square(sample(images, theta) - target))

    sample_c, loss_c = torch.compile(sample), torch.compile(loss_fn)

    def wait():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def forward():
        with torch.no_grad():
            output = sample_c(images, theta)
        wait()
        return output.permute(0, 2, 3, 1)

    def step():
        loss = loss_c(images, theta, target)
        grads = list(torch.autograd.grad(loss, [images, theta]))
        loss.item()
        wait()
        grads[0] = grads[0].permute(0, 2, 3, 1)
        return loss, grads

    return forward, step


def make_data(workload, smoke):
    if not smoke:
        return sampler_benchmark.make_data(workload)
    rng = np.random.default_rng(sampler_benchmark.SEED)
    batch, size, out_size = SMOKE["batch"], SMOKE["size"], SMOKE["out_size"]
    identity = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    return {
        "images": rng.random((batch, *size), dtype=np.float32),
        "theta": identity
        + rng.normal(0.0, 0.1, (batch, 2, 3)).astype(np.float32),
        "target": rng.random((batch, *out_size, size[-1]), dtype=np.float32),
        "out_size": out_size,
    }


def run_workload(workload, variants, args, gpu):
    data = make_data(workload, args.smoke)
    built, results = {}, {}
    for variant in variants:
        try:
            forward, step = build(variant, data, gpu)
            start = time.perf_counter()
            out, (_, grads) = forward(), step()
            first_s = time.perf_counter() - start
        except Exception as error:  # e.g. torch.compile failing
            line = (str(error).strip().splitlines() or [""])[0][:300]
            results[variant] = {"skipped": f"{type(error).__name__}: {line}"}
            print(
                f"  {variant}: skipped ({results[variant]['skipped']})",
                file=sys.stderr,
            )
            continue
        built[variant] = (forward, step)
        results[variant] = {
            "first_s": first_s,
            "out": variants_lib.to_numpy(out),
            "grads": [variants_lib.to_numpy(g) for g in grads],
            "fwd": [],
            "step": [],
        }
    for _ in range(args.rounds):
        for variant, (forward, step) in built.items():
            for key, call in (("fwd", forward), ("step", step)):
                results[variant][key] += _timing.time_block(
                    call, args.repeats, args.warmup
                )
    rows = {}
    reference = results.get("xla", {})
    for variant, result in results.items():
        if "skipped" in result:
            rows[variant] = result
            continue
        row = {
            "first_s": result["first_s"],
            "fwd": _timing.summarize(result["fwd"]),
            "step": _timing.summarize(result["step"]),
        }
        if "out" in reference and variant != "xla":
            row["max_abs_diff_vs_xla"] = {
                name: float(np.max(np.abs(a - b)))
                for name, a, b in zip(
                    ("out", "dimages", "dtheta"),
                    [result["out"], *result["grads"]],
                    [reference["out"], *reference["grads"]],
                )
            }
        if _measures_memory(workload, variant, args):
            row["memory_mib"] = measure_memory(workload, variant, args)
        rows[variant] = row
    return {"rows": rows, "bytes": sampler_benchmark.workload_bytes(data)}


def _measures_memory(workload, variant, args):
    if args.no_memory or variant not in args.memory_variants.split(","):
        return False
    chosen = args.memory_workloads
    return chosen is None or workload in chosen.split(",")


def memory_child(workload, variant, smoke):
    """Prints the peak memory increase (MiB) of a variant's steps."""
    gpu = _device.has_gpu()
    _, step = build(variant, make_data(workload, smoke), gpu)
    if not gpu:
        print(json.dumps({"mib": None}))
        return
    framework = "torch" if variant.startswith("torch") else "jax"
    reset, current, peak = _device.gpu_memory_counters(framework)
    before = current()
    step()
    step()
    if reset is not None:
        reset()
        before = current()
    for _ in range(sampler_benchmark.MEMORY_STEPS):
        step()
    print(json.dumps({"mib": (peak() - before) / 2**20}))


def measure_memory(workload, variant, args):
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--_memory-child",
        workload,
        variant,
    ]
    if args.smoke:
        command.append("--smoke")
    proc = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=300
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)["mib"]
    print(
        f"memory of {workload}/{variant} failed:\n{proc.stderr[-1500:]}",
        file=sys.stderr,
    )
    return None


def _ms(row, key):
    summary = row.get(key) if isinstance(row, dict) else None
    return summary["median"] if summary else None


def targets(workload, result, bandwidth):
    """The issue's targets on one workload: lines `PASS|FAIL|n/a ...`."""
    rows = result["rows"]
    lines = []

    def check(name, value, limit, unit="x"):
        if value is None:
            lines.append(f"n/a  {workload}: {name} (not measured)")
            return
        verdict = "PASS" if value <= limit else "FAIL"
        lines.append(
            f"{verdict} {workload}: {name} {value:.2f}{unit} "
            f"(target <= {limit}{unit})"
        )

    def ratio(a, b, key):
        x, y = _ms(rows.get(a, {}), key), _ms(rows.get(b, {}), key)
        return x / y if x and y else None

    fwd = _ms(rows.get("pallas", {}), "fwd")
    if workload == "cub-b128" and bandwidth and fwd:
        share = result["bytes"] / (fwd / 1e3) / bandwidth
        verdict = "PASS" if share >= 0.7 else "FAIL"
        lines.append(
            f"{verdict} {workload}: pallas forward at {100 * share:.0f} % "
            "of the copy bandwidth (target >= 70 %)"
        )
    check("pallas fwd / jax-mc fwd", ratio("pallas", "jax-mc", "fwd"), 1.0)
    check("pallas step / torch step", ratio("pallas", "torch", "step"), 0.5)
    check(
        "pallas step / torch-compile step",
        ratio("pallas", "torch-compile", "step"),
        1.0,
    )
    check("xla-det step / pallas step", ratio("xla-det", "pallas", "step"), 1.5)
    memory = [rows.get(v, {}).get("memory_mib") for v in ("pallas", "torch")]
    check(
        "pallas peak memory / torch's",
        memory[0] / memory[1] if all(memory) else None,
        1.2,
    )
    return lines


def table(workload, result):
    lines = [
        f"\n{workload}",
        "| variant | first call s | fwd ms | step ms | memory MiB | "
        "max |diff| vs xla (out, dimages, dtheta) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for variant, row in result["rows"].items():
        if "skipped" in row:
            lines.append(f"| {variant} | skipped: {row['skipped']} |||||")
            continue
        diffs = row.get("max_abs_diff_vs_xla")
        memory = row.get("memory_mib")
        lines.append(
            f"| {variant} | {row['first_s']:.1f} | "
            f"{_timing.spread_cell(row['fwd'], 3)} | "
            f"{_timing.spread_cell(row['step'], 3)} | "
            f"{'' if memory is None else f'{memory:.0f}'} | "
            f"{', '.join(f'{v:.1e}' for v in (diffs or {}).values())} |"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(ORDER))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--memory-workloads",
        default=None,
        help="the workloads whose memory is measured (default: all)",
    )
    parser.add_argument(
        "--memory-variants",
        default="pallas,xla,xla-det,torch",
        help="the variants whose memory is measured (each in a fresh "
        "process; torch-compile would compile again)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="one tiny workload, interpret mode on a CPU",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="start no workload after this many seconds",
    )
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--_memory-child",
        nargs=2,
        default=None,
        dest="memory_child",
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    args.workloads = args.workloads.split(",")
    args.variants = args.variants.split(",")
    for name, given, known in (
        ("--workloads", args.workloads, ORDER),
        ("--variants", args.variants, VARIANTS),
    ):
        unknown = [g for g in given if g not in known]
        if unknown:
            parser.error(
                f"{name} must be a subset of {','.join(known)}. "
                f"Received: {','.join(unknown)}"
            )
    if args.smoke:
        args.workloads = ["smoke"]
        args.rounds, args.repeats, args.warmup = 1, 1, 0
    return args


def main(argv=None):
    args = parse_args(argv)
    if keras.backend.backend() != "jax":
        sys.exit("Run under KERAS_BACKEND=jax.")
    if args.memory_child:
        workload, variant = args.memory_child
        memory_child(workload, variant, args.smoke)
        return
    gpu = _device.has_gpu()
    bandwidth = sampler_benchmark.copy_bandwidth()
    extras = [sampler_benchmark._torch_version()]
    if bandwidth:
        extras.append(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    header = _device.header(*extras)
    print(header, flush=True)
    start = time.perf_counter()
    payload = {
        "benchmark": "pallas",
        "header": header,
        "copy_bandwidth_bytes_per_s": bandwidth,
        "workloads": {},
        "targets": [],
    }
    for workload in args.workloads:
        elapsed = time.perf_counter() - start
        if args.time_limit and elapsed > args.time_limit:
            print(f"time limit: {workload} not started", flush=True)
            break
        print(f"{workload}: {args.rounds} rounds", file=sys.stderr)
        result = run_workload(workload, args.variants, args, gpu)
        payload["workloads"][workload] = result
        payload["targets"] += targets(workload, result, bandwidth)
        print(table(workload, result), flush=True)
        if args.json:
            payload["total_s"] = time.perf_counter() - start
            _timing.write_json(args.json, payload)
    print("\nTargets (issue 24 item 2):")
    for line in payload["targets"]:
        print(line)
    print(f"\ntotal time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
