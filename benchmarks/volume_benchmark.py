"""Benchmarks the 3-D affine grid + trilinear sampler, forward and backward.

Measures, per workload, the wall-clock time of the forward pass
(`affine_grid_3d` then `trilinear_sample`, zeros padding,
align_corners=False) and of forward+backward: the loss
`0.5 * sum((output - target) ** 2)`, which depends on the output, and its
gradients w.r.t. volumes and theta; the step returns the loss. Variants:

- the package's ops on the Keras backend: `stn` (`tf.function`) and
  `stn-xla` (`jit_compile=True`) on TensorFlow, `stn-jit` (`jax.jit`, the
  device's gather layout), `stn-jit-framed` (the CPU layout) and
  `stn-jit-det` (`deterministic=True`) on JAX, `stn-eager` on PyTorch;
- `torch`: PyTorch's 5-D `affine_grid` + `grid_sample` on the same data
  (NCDHW), when `import torch` works (on CUDA when there is a GPU).

Workloads: `b2-96c1` (2 x 96^3 x 1 -> 96^3) and `b1-64c8` (1 x 64^3 x 8
-> 64^3); theta is the identity plus N(0, 0.05) noise, fixed seed. Each
variant is timed in its own block (`_timing.time_block`): the first call
(tracing, compilation) is reported apart, then a warm-up, then the timed
repeats; times are medians with the interquartile range, in ms, and
`x torch` is a median over torch's. Every clock stop waits for the device.
`peak MiB` is the memory a forward+backward step adds at its peak, over
what was allocated before it. On a GPU: the framework's peak device memory
during the timed steps. On the CPU: the growth of the peak resident set
(VmHWM) over the resident set during one warm step, measured in a fresh
process per variant (`--memory-probe`) whose malloc hands every block of
256 KiB or more straight back to the system when freed, so that the
resident set follows what is alive rather than what an allocator keeps
(TensorFlow, with its oneDNN ops off there, XLA, JAX and PyTorch all
allocate CPU buffers with malloc); it includes the step's outputs (the
gradients).

Run from the repository root:

    python benchmarks/volume_benchmark.py
    python benchmarks/volume_benchmark.py --workloads b1-64c8 --repeats 5
    KERAS_BACKEND=jax python benchmarks/volume_benchmark.py
    python benchmarks/volume_benchmark.py --size 8 --repeats 1 --warmup 0
    python benchmarks/volume_benchmark.py --skip-memory  # no CPU probes
"""

import argparse
import ctypes
import gc
import importlib.util
import os
import re
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a script, `benchmarks/` is on sys.path; the package sits above it.
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _device  # noqa: E402
import _sampler_variants  # noqa: E402
import _timing  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_stn import ops as stn_ops  # noqa: E402

WORKLOADS = {
    # name: (batch, (D, H, W, C) input, (D_out, H_out, W_out) output)
    "b2-96c1": (2, (96, 96, 96, 1), (96, 96, 96)),
    "b1-64c8": (1, (64, 64, 64, 8), (64, 64, 64)),
}
SEED = 1234


def make_data(workload, size=None):
    """Numpy volumes, theta and target of a workload (cubes of `size`
    voxels instead of the workload's when given, for smoke runs)."""
    batch, (depth, height, width, channels), out_size = WORKLOADS[workload]
    if size:
        depth = height = width = size
        out_size = (size, size, size)
    rng = np.random.default_rng(SEED)
    vols = rng.random((batch, depth, height, width, channels), np.float32)
    theta = np.eye(3, 4, dtype=np.float32) + rng.normal(
        0.0, 0.05, (batch, 3, 4)
    ).astype(np.float32)
    target = rng.random((batch, *out_size, channels), np.float32)
    return {
        "volumes": vols,
        "theta": theta,
        "target": target,
        "out_size": out_size,
    }


def variant_names():
    """The variants this Keras backend can run, ours first."""
    names = {
        "tensorflow": ["stn", "stn-xla"],
        "jax": ["stn-jit", "stn-jit-framed", "stn-jit-det"],
        "torch": ["stn-eager"],
    }[keras.backend.backend()]
    if importlib.util.find_spec("torch") is not None:
        names.append("torch")
    return names


def _stn_sample(out_size, layout=None, deterministic=False):
    """The package's ops; `layout` is set while they are traced."""

    def sample(vols, theta):
        with _sampler_variants.gather_layout(layout):
            grid = stn_ops.affine_grid_3d(theta, out_size)
            return stn_ops.trilinear_sample(
                vols, grid, deterministic=deterministic
            )

    return sample


def build(variant, data, gpu):
    """Returns `(forward, step)`: zero-argument callables that return
    once their results are ready (`step` returns `(loss, grads)`), built
    as the sampler benchmark's variants are."""
    data = {**data, "images": data["volumes"]}
    if variant == "torch":
        return _sampler_variants.build_torch_peer(data, False, gpu)
    layout = "framed" if variant == "stn-jit-framed" else None  # the CPU's
    sample = _stn_sample(data["out_size"], layout, variant == "stn-jit-det")
    if variant.startswith("stn-jit"):
        return _sampler_variants.build_jax(sample, data, False)
    if variant == "stn-eager":
        return _sampler_variants.build_torch_backend(sample, data, False, False)
    jit = variant == "stn-xla"
    return _sampler_variants.build_tf(sample, data, False, gpu, jit)


to_numpy = _sampler_variants.to_numpy


def _gpu_memory(variant):
    """The GPU memory counters of the framework that runs `variant`."""
    framework = "torch" if variant == "torch" else keras.backend.backend()
    return _device.gpu_memory_counters(framework)


# glibc's mallopt parameter: blocks at least this large are mmapped, and
# unmapped when freed (setting it also stops glibc from raising it).
_M_MMAP_THRESHOLD = -3
_PROBE_MMAP_THRESHOLD = 256 * 2**10


def _status_mib(field):
    """A `/proc/self/status` field (kB) in MiB."""
    with open("/proc/self/status") as f:
        kb = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1)
    return int(kb) / 1024


def memory_probe(args):
    """Prints the peak resident growth (MiB) of one warm step of the one
    variant and workload in `args` (run in a fresh process)."""
    ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, _PROBE_MMAP_THRESHOLD)
    data = make_data(args.workloads[0], args.size)
    _, step = build(args.variants[0], data, gpu=False)
    for _ in range(2):  # compile, then warm up
        step()
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    before = _status_mib("VmRSS")
    result = step()
    peak = _status_mib("VmHWM")
    del result
    print(f"{peak - before:.1f}")


def cpu_peak_memory(variant, workload, size):
    """`memory_probe` of one variant in a fresh process: MiB, or None
    where this system has no `/proc/self/clear_refs`."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-probe",
        "--workloads",
        workload,
        "--variants",
        variant,
    ]
    if size:
        command += ["--size", str(size)]
    # TensorFlow's oneDNN builds keep large CPU buffers in a pool of their
    # own (its RSS never falls); without oneDNN's ops it allocates with
    # malloc. The sampler runs no oneDNN op.
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, env=env
    )
    return float(done.stdout.strip().splitlines()[-1])


def run_variant(variant, data, repeats, warmup, gpu):
    """Builds and times one variant in its own block."""
    forward, step = build(variant, data, gpu)
    start = time.perf_counter()
    output, (loss, grads) = forward(), step()
    first_s = time.perf_counter() - start
    result = {
        "first_s": first_s,
        "out": to_numpy(output),
        "loss": float(to_numpy(loss)),
        "grads": [to_numpy(g) for g in grads],
        "fwd": _timing.summarize(_timing.time_block(forward, repeats, warmup)),
    }
    memory = None
    if gpu:
        reset, current, peak = _gpu_memory(variant)
        if reset is not None:
            reset()
        before = current()
    result["step"] = _timing.summarize(
        _timing.time_block(step, repeats, warmup)
    )
    if gpu:
        memory = (peak() - before) / 2**20
    result["memory_mib"] = memory
    return result


def _differences(name, mine, ref):
    """Max |difference| of a variant's results from the first variant's."""
    loss_rel = abs(mine["loss"] - ref["loss"]) / max(abs(ref["loss"]), 1e-30)
    cells = [
        f"out {np.max(np.abs(mine['out'] - ref['out'])):.1e}",
        f"loss (rel) {loss_rel:.1e}",
    ]
    for label, a, b in zip(("volumes", "theta"), mine["grads"], ref["grads"]):
        scale = float(np.max(np.abs(b)))
        cells.append(f"d{label} {np.max(np.abs(a - b)):.1e} (of {scale:.1e})")
    return f"- {name}: " + ", ".join(cells)


def run(args, gpu):
    rows, checks = [], []
    for workload in args.workloads:
        data = make_data(workload, args.size)
        results = {}
        for variant in args.variants:
            results[variant] = run_variant(
                variant, data, args.repeats, args.warmup, gpu
            )
            if not gpu and not args.skip_memory:
                results[variant]["memory_mib"] = cpu_peak_memory(
                    variant, workload, args.size
                )
            print(f"{workload}: {variant} done", file=sys.stderr)
        base = args.variants[0]
        checks.append(f"{workload}, max |difference| from {base}:")
        for variant in args.variants[1:]:
            checks.append(
                _differences(variant, results[variant], results[base])
            )
        peer = results.get("torch")
        for variant in args.variants:
            result = results[variant]
            rows.append(
                {
                    "workload": workload,
                    "variant": variant,
                    "first_s": result["first_s"],
                    "fwd": result["fwd"],
                    "step": result["step"],
                    "x_torch": {
                        key: (
                            result[key]["median"] / peer[key]["median"]
                            if peer
                            else None
                        )
                        for key in ("fwd", "step")
                    },
                    "memory_mib": result["memory_mib"],
                }
            )
    return rows, checks


def table(rows):
    lines = [
        "| workload | variant | fwd ms median (IQR) | fwd x torch"
        " | fwd+bwd ms median (IQR) | fwd+bwd x torch | peak MiB"
        " | first call s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = []
        for key in ("fwd", "step"):
            ratio = row["x_torch"][key]
            cells += [
                _timing.spread_cell(row[key]),
                "" if ratio is None else f"{ratio:.2f}",
            ]
        memory = row["memory_mib"]
        lines.append(
            f"| {row['workload']} | {row['variant']} | {' | '.join(cells)} "
            f"| {'' if memory is None else f'{memory:.0f}'} "
            f"| {row['first_s']:.1f} |"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    names = variant_names()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workloads",
        type=lambda s: s.split(","),
        default=list(WORKLOADS),
        help=f"comma-separated, from {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--variants",
        type=lambda s: s.split(","),
        default=names,
        help=f"comma-separated, from {', '.join(names)} (default: all)",
    )
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed calls (default 10)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed calls (default 2)"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="cubes of this many voxels instead of the workloads' (smoke runs)",
    )
    parser.add_argument("--json", default=None, help="also write rows here")
    parser.add_argument(
        "--skip-memory",
        action="store_true",
        help="on the CPU, leave out the peak memory probes (a fresh process "
        "and compilation per variant)",
    )
    parser.add_argument(
        "--memory-probe",
        action="store_true",
        help="internal: print the peak memory of one step of the one "
        "variant and workload given, then exit",
    )
    args = parser.parse_args(argv)
    for name, chosen, valid in (
        ("--workloads", args.workloads, list(WORKLOADS)),
        ("--variants", args.variants, names),
    ):
        unknown = [c for c in chosen if c not in valid]
        if unknown:
            parser.error(f"{name}: unknown {unknown}; choose from {valid}")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if args.size is not None and args.size < 1:
        parser.error("--size must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.memory_probe:
        memory_probe(args)
        return
    gpu = _device.has_gpu()
    extras = []
    if importlib.util.find_spec("torch") is not None:
        import torch

        extras.append(f"torch {torch.__version__}")
    print(_device.header(*extras))
    rows, checks = run(args, gpu)
    print(table(rows))
    print("\n".join(checks))
    if args.json:
        _timing.write_json(
            args.json, {"header": _device.header(*extras), "rows": rows}
        )


if __name__ == "__main__":
    main()
