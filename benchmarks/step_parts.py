"""Where a training step's time goes on a CPU, part by part, against
PyTorch's whole step.

TensorFlow backend, the package's default (each sampler compiled by
itself). For each workload of `sampler_benchmark.py` (same data, same
loss) it times, each in its own block:

- `forward`: `affine_grid` then `bilinear_sample`;
- `step:theta`: the forward pass and the gradient w.r.t. theta (the
  transformer on a network's input);
- `step`: the forward pass and the gradients w.r.t. images and theta;
- `scatter`: XLA's scatter-add alone (`tf.math.unsorted_segment_sum`
  compiled) of as many rows as the image gradient adds (four taps per
  output pixel, `C` values each) at the workload's own tap indices: the
  part of the image gradient no formulation on these ops avoids;
- `torch step`: PyTorch's `affine_grid` + `grid_sample` step, as in the
  sampler benchmark.

With `--rounds R` the blocks run R times in turn; each cell is the median
of the pooled calls (interquartile range), and `x torch step` the median
of the rounds' ratios to PyTorch's step (their range). Below the table,
per workload: the image gradient (`step` less `step:theta`) and the
grid gradient (`step:theta` less `forward`), and `step:theta` plus
`scatter`, which a step that keeps today's forward pass and grid gradient
cannot go below.

    python benchmarks/step_parts.py --rounds 3
"""

import os
import statistics
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a script, `benchmarks/` is on sys.path; the package sits above it.
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _device  # noqa: E402
import _sampler_variants  # noqa: E402
import _timing  # noqa: E402
import numpy as np  # noqa: E402
import sampler_benchmark  # noqa: E402

from keras_stn import ops as stn_ops  # noqa: E402

CPU_WORKLOADS = ("mnist", "cub", "feat")
PARTS = ("forward", "step:theta", "step", "scatter", "torch step")


def tap_indices(data):
    """The image gradient's rows: int32 `(4 * B * H_out * W_out,)`, each
    tap's flat pixel index (tap-major, clipped into the image), as
    `bilinear.images_gradient` scatters them."""
    images, theta = data["images"], data["theta"]
    batch, height, width, _ = images.shape
    grid = np.asarray(stn_ops.affine_grid(theta, data["out_size"]))
    # PyTorch's unnormalisation (align_corners=False), then the NW tap.
    x = np.floor(((grid[..., 0] + 1) * width - 1) / 2).astype(np.int64)
    y = np.floor(((grid[..., 1] + 1) * height - 1) / 2).astype(np.int64)
    offsets = (np.arange(batch) * height * width).reshape(-1, 1, 1)
    taps = [(y, x), (y, x + 1), (y + 1, x), (y + 1, x + 1)]
    rows = [
        offsets + np.clip(r, 0, height - 1) * width + np.clip(c, 0, width - 1)
        for r, c in taps
    ]
    return np.concatenate([r.reshape(-1) for r in rows]).astype(np.int32)


def build_scatter(data):
    """A zero-argument call of the compiled bare scatter-add."""
    import tensorflow as tf

    batch, height, width, channels = data["images"].shape
    indices = tf.constant(tap_indices(data))
    rng = np.random.default_rng(sampler_benchmark.SEED)
    updates = tf.constant(
        rng.random((indices.shape[0], channels), dtype=np.float32)
    )
    num_rows = batch * height * width

    @tf.function(jit_compile=True)
    def scatter(updates, indices):
        return tf.math.unsorted_segment_sum(updates, indices, num_rows)

    # On a CPU a tf.function returns once it has run (as the steps').
    return lambda: scatter(updates, indices)


def build_parts(data):
    """`{part: zero-argument call}` for one workload."""
    forward, step = _sampler_variants.build("stn", data, False)
    _, theta_step = _sampler_variants.build("stn:theta", data, False)
    _, torch_step = _sampler_variants.build("torch", data, False)
    return {
        "forward": forward,
        "step:theta": theta_step,
        "step": step,
        "scatter": build_scatter(data),
        "torch step": torch_step,
    }


def run_workload(workload, rounds, repeats, warmup):
    """`{part: {"times": [...], "rounds": [median per round]}}`."""
    data = sampler_benchmark.make_data(workload)
    calls = build_parts(data)
    results = {part: {"times": [], "rounds": []} for part in PARTS}
    for _ in range(rounds):
        for part in PARTS:
            times = _timing.time_block(calls[part], repeats, warmup)
            results[part]["times"] += times
            results[part]["rounds"].append(statistics.median(times))
    return results


def table(all_results):
    """The markdown table and the derived lines."""
    lines = [
        "| workload | part | ms median (IQR) | x torch step |",
        "|---|---|---|---|",
    ]
    notes = []
    for workload, results in all_results.items():
        torch_rounds = results["torch step"]["rounds"]
        medians = {}
        for part in PARTS:
            summary = _timing.summarize(results[part]["times"])
            medians[part] = summary["median"]
            ratios = [
                a / b for a, b in zip(results[part]["rounds"], torch_rounds)
            ]
            cell = f"{statistics.median(ratios):.2f}"
            if len(ratios) > 1:
                cell += f" ({min(ratios):.2f}-{max(ratios):.2f})"
            lines.append(
                f"| {workload} | {part} | {_timing.spread_cell(summary)} "
                f"| {cell} |"
            )
        torch = medians["torch step"]
        image = medians["step"] - medians["step:theta"]
        grid = medians["step:theta"] - medians["forward"]
        floor = medians["step:theta"] + medians["scatter"]
        notes.append(
            f"- {workload}: image gradient {image:.1f} ms "
            f"({image / torch:.2f}x torch step), grid gradient {grid:.1f} "
            f"ms, step:theta + scatter {floor:.1f} ms "
            f"({floor / torch:.2f}x torch step)"
        )
    return "\n".join(lines + [""] + notes)


def main(argv=None):
    args = _timing.parse_block_args(
        __doc__.splitlines()[0], CPU_WORKLOADS, rounds=3, argv=argv
    )
    import torch

    torch.set_num_threads(_device.cpu_count())
    all_results = _timing.run_workloads(args, run_workload)
    print(table(all_results))
    if args.json:
        _timing.write_json(args.json, all_results)


if __name__ == "__main__":
    main()
