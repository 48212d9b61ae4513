"""Benchmarks the package's samplers on Keras' PyTorch backend against
PyTorch's own `affine_grid` + `grid_sample`, eager and compiled.

Per workload it times the forward pass (the affine grid of per-sample
random thetas, identity plus N(0, 0.1), then the bilinear or trilinear
sample, zeros padding, align_corners=False) and a forward+backward step:
the loss `0.5 * sum((output - target) ** 2)`, which depends on the output,
returned with its gradients w.r.t. images and theta (`_sampler_variants`'
torch builders, as `sampler_benchmark.py` times them). Variants:

- `stn`: the package's public ops (`keras_stn.ops.affine_grid`,
  `bilinear_sample`), eager, as a Keras-on-torch user calls them: on the
  torch backend the samplers run PyTorch's native kernel
  (`keras_stn.ops.backend.torch_native`);
- `stn-generic`: the same with the native kernel refused, the package's
  own gather/scatter sampler (what the torch backend ran before);
- `stn-compile`: `stn` under `torch.compile` (skipped with its error when
  it fails);
- `torch`: PyTorch's `affine_grid` + `grid_sample` on channels-first
  (NCHW / NCDHW) tensors, as a PyTorch user writes it: the peer;
- `torch-compile`: the peer under `torch.compile`.

Workloads: `mnist` (256 x 60x60x1 -> 60x60) and `feat` (32 x 56x56x64 ->
56x56), the sampler benchmark's data, and `vol` (2 x 48^3 x 2 -> 48^3).
Each variant is timed in its own block (`_timing.time_block`): the first
call (tracing, compilation: `first call s`), `--warmup` untimed calls,
then `--repeats` timed calls of the forward, then the same for the step;
every call returns only when its results are ready. With `--rounds R` every
variant's blocks run R times in turn, in the same process; times pool all
rounds (median, 25th-75th percentile, min, in ms) and `x torch` is the
median of the rounds' ratios of medians to the peer's, with their range.
The check lines give each variant's largest difference from the peer
(output, loss, gradients), so that it is seen to compute the same thing.

Run from the repository root:

    KERAS_BACKEND=torch python benchmarks/torch_backend_benchmark.py
    KERAS_BACKEND=torch python benchmarks/torch_backend_benchmark.py \\
        --workloads mnist --variants stn,torch --rounds 5 --threads 1
"""

import argparse
import contextlib
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")
# Run as a script, `benchmarks/` is on sys.path; the package sits above it.
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _device  # noqa: E402
import _sampler_variants as variants_lib  # noqa: E402
import _subsets  # noqa: E402
import _timing  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import sampler_benchmark  # noqa: E402

from keras_stn import ops as stn_ops  # noqa: E402

WORKLOADS = {
    # name: (batch, input spatial + (C,), output spatial, default repeats)
    "mnist": (256, (60, 60, 1), (60, 60), 20),
    "feat": (32, (56, 56, 64), (56, 56), 10),
    "vol": (2, (48, 48, 48, 2), (48, 48, 48), 5),
}
VARIANTS = ("stn", "stn-generic", "stn-compile", "torch", "torch-compile")
PEER = "torch"
SEED = 1234


def make_data(workload):
    """Numpy images, per-sample thetas and target of a workload: the
    sampler benchmark's for 2-D ones, the same recipe for volumes."""
    if workload in sampler_benchmark.WORKLOADS:
        return sampler_benchmark.make_data(workload)
    batch, shape, out_size, _ = WORKLOADS[workload]
    axes = len(out_size)
    rng = np.random.default_rng(SEED)
    images = rng.random((batch, *shape), dtype=np.float32)
    identity = np.eye(axes, axes + 1, dtype=np.float32)
    noise = rng.normal(0.0, 0.1, (batch, axes, axes + 1)).astype(np.float32)
    target = rng.random((batch, *out_size, shape[-1]), dtype=np.float32)
    return {
        "images": images,
        "theta": identity + noise,
        "target": target,
        "out_size": out_size,
    }


@contextlib.contextmanager
def native_refused(refuse):
    """Within the block the samplers refuse PyTorch's kernel (when
    `refuse`), taking the package's own path."""
    from keras_stn.ops.backend import torch_native

    supports = torch_native.supports
    if refuse:
        torch_native.supports = lambda *args: False
    try:
        yield
    finally:
        torch_native.supports = supports


def _stn_sample(out_size, generic):
    """`sample(images, theta)`: the package's public ops."""

    def sample(images, theta):
        with native_refused(generic):
            grid = stn_ops.affine_grid(theta, out_size)
            return stn_ops.bilinear_sample(images, grid)

    return sample


def _channels_first(array):
    return np.ascontiguousarray(np.moveaxis(array, -1, 1))


def _torch_compiled_peer(data):
    """`(forward, step)` of the peer under `torch.compile`, results
    channels-last like the others'."""
    import torch
    from torch.nn import functional

    images = data["images"]
    size = (images.shape[0], images.shape[-1], *data["out_size"])

    def sample(images, theta):
        grid = functional.affine_grid(theta, size, align_corners=False)
        return functional.grid_sample(images, grid, align_corners=False)

    first = {
        **data,
        "images": _channels_first(images),
        "target": _channels_first(data["target"]),
    }
    forward, step = variants_lib.build_torch_backend(sample, first, False, True)

    def forward_last():
        return torch.movedim(forward(), 1, -1)

    def step_last():
        loss, grads = step()
        return loss, [torch.movedim(grads[0], 1, -1), grads[1]]

    return forward_last, step_last


def build(variant, data):
    """`(forward, step)` of a variant on a workload's `data`."""
    gpu = _device.has_gpu()
    if variant == PEER:
        return variants_lib.build_torch_peer(data, False, gpu)
    if variant == "torch-compile":
        return _torch_compiled_peer(data)
    sample = _stn_sample(data["out_size"], variant == "stn-generic")
    compiled = variant == "stn-compile"
    return variants_lib.build_torch_backend(sample, data, False, compiled)


def run_variant(variant, data, repeats, warmup):
    """Builds a variant, makes its first calls and times its first round;
    returns the result dict of `sampler_benchmark`'s rounds (or
    `{"skipped": reason}`)."""
    forward, step = build(variant, data)
    start = time.perf_counter()
    try:
        out, (loss, grads) = forward(), step()
    except Exception as error:  # e.g. torch.compile on an unsupported op
        lines = [line for line in str(error).splitlines() if line.strip()]
        return {
            "skipped": f"{type(error).__name__}: {' '.join(lines[:2])[:200]}"
        }
    result = {
        "first_s": time.perf_counter() - start,
        "out": variants_lib.to_numpy(out),
        "loss": float(variants_lib.to_numpy(loss)),
        "grads": [variants_lib.to_numpy(g) for g in grads],
        "calls": (forward, step),
        "times": {"fwd": [], "step": []},
    }
    sampler_benchmark.time_round(result, repeats, warmup)
    return result


def run(args):
    """Times every workload and variant in rounds; returns the table rows
    and the check lines."""
    rows, checks = [], []
    import torch

    for workload in args.workloads:
        # Each workload's compiled variants compile afresh, for its static
        # shapes (a recompilation for new shapes would trace them dynamic,
        # which torch's affine_grid refuses).
        torch.compiler.reset()
        data = make_data(workload)
        repeats = args.repeats or WORKLOADS[workload][3]
        results = {}
        for variant in args.variants:
            results[variant] = run_variant(variant, data, repeats, args.warmup)
            print(f"{workload}: {variant} done", file=sys.stderr)
        for round_number in range(2, args.rounds + 1):
            for variant in args.variants:
                if "skipped" not in results[variant]:
                    sampler_benchmark.time_round(
                        results[variant], repeats, args.warmup
                    )
            print(f"{workload}: round {round_number} done", file=sys.stderr)
        sampler_benchmark._summarize_rounds(
            results, {variant: PEER for variant in args.variants}
        )
        peer = results.get(PEER, {})
        checks.append(f"{workload}, max |difference| from {PEER}:")
        for variant in args.variants:
            result = results[variant]
            row = {"workload": workload, "variant": variant}
            if "skipped" in result:
                rows.append({**row, "skipped": result["skipped"]})
                continue
            if variant != PEER and "skipped" not in peer:
                checks.append(
                    sampler_benchmark._differences(variant, result, PEER, peer)
                )
            rows.append(
                {
                    **row,
                    "first_s": result["first_s"],
                    "fwd": result["fwd"],
                    "step": result["step"],
                    "x_torch": {
                        key: sampler_benchmark._ratio(
                            result[key], peer.get(key)
                        )
                        for key in ("fwd", "step")
                    },
                    "x_torch_rounds": result["x_torch_rounds"],
                    "memory_mib": None,
                }
            )
    return rows, checks


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _subsets.add_subset_argument(parser, "--workloads", WORKLOADS)
    _subsets.add_subset_argument(parser, "--variants", VARIANTS)
    _subsets.add_per_workload_int(
        parser, "--repeats", "timed calls per block", WORKLOADS, 3
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch's CPU threads (default: every CPU this process may use)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "torch":
        parser.error("runs on Keras' PyTorch backend (KERAS_BACKEND=torch)")
    args.workloads = _subsets.parse_subset(
        parser, args.workloads, WORKLOADS, "workloads"
    )
    args.variants = _subsets.parse_subset(
        parser, args.variants, VARIANTS, "variants"
    )
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1. Received: {args.threads}")
    if args.rounds < 1 or args.warmup < 0 or (args.repeats or 1) < 1:
        parser.error(
            "--rounds and --repeats must be at least 1 and --warmup at "
            f"least 0. Received: --rounds {args.rounds}, --repeats "
            f"{args.repeats}, --warmup {args.warmup}"
        )
    return args


def main(argv=None):
    """Runs the benchmark and prints the Markdown table and the checks."""
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads or _device.cpu_count())
    header = _device.header(sampler_benchmark._torch_version())
    print(header)
    start = time.perf_counter()
    rows, checks = run(args)
    print()
    print(sampler_benchmark.table(rows, "memory (not measured)"))
    print()
    for check in checks:
        print(check)
    total_s = time.perf_counter() - start
    print(f"\ntotal time {total_s:.0f} s")
    if args.json:
        _timing.write_json(
            args.json,
            {
                "benchmark": "torch_backend",
                "header": header,
                "device": _device.device_name(),
                "rows": rows,
                "checks": checks,
                "total_s": total_s,
            },
        )


if __name__ == "__main__":
    main()
