"""The grid gradient's sum over channels: one reduction against 16-wide
slices added first (`keras_stn.ops.bilinear._sum_over_channels`).

TensorFlow backend, on a CPU. For each workload with at least 32 channels
it times a training step (`step`: gradients w.r.t. images and theta;
`step:theta`: theta only), the samplers compiled by themselves (`stn`, the
default) and the whole step under XLA (`stn-xla`), once with
`tuning.CHANNEL_SLICE_WIDTH` as shipped and once with it above the
channel count (one reduction, the code before). Same data and loss as
`sampler_benchmark.py`; both forms are built in the same process and their
blocks run in turn, `--rounds` times, so that a slow spell of this shared
machine falls on both. Each cell is the median of the pooled calls
(interquartile range); `sliced / one` is the median of the rounds' ratios
(their range).

    python benchmarks/channel_slices.py --rounds 4
"""

import os
import statistics
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a script, `benchmarks/` is on sys.path; the package sits above it.
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _sampler_variants  # noqa: E402
import _timing  # noqa: E402
import sampler_benchmark  # noqa: E402

from keras_stn.ops import tuning  # noqa: E402

FORMS = ("one", "sliced")
MODES = ("stn", "stn-xla")
PARTS = ("step", "step:theta")


def wide_workloads():
    """The CPU workloads with enough channels for the slices."""
    return [
        name
        for name, (_, (_, _, channels), _, _) in (
            sampler_benchmark.WORKLOADS.items()
        )
        if name not in sampler_benchmark.GPU_WORKLOADS
        and channels >= 2 * tuning.CHANNEL_SLICE_WIDTH
    ]


def build_calls(data):
    """`{(form, mode, part): zero-argument step}`, each traced once."""
    shipped = tuning.CHANNEL_SLICE_WIDTH
    channels = data["images"].shape[-1]
    calls = {}
    try:
        for form in FORMS:
            # Above the channel count the sum is one reduction; the width
            # is part of the compiled samplers' cache key.
            tuning.CHANNEL_SLICE_WIDTH = (
                shipped if form == "sliced" else channels + 1
            )
            for mode in MODES:
                for part in PARTS:
                    suffix = ":theta" if part == "step:theta" else ""
                    _, step = _sampler_variants.build(
                        mode + suffix, data, False
                    )
                    step()  # traces and compiles with this width
                    calls[form, mode, part] = step
    finally:
        tuning.CHANNEL_SLICE_WIDTH = shipped
    return calls


def run_workload(workload, rounds, repeats, warmup):
    """`{(form, mode, part): {"times": [...], "rounds": [...]}}`."""
    calls = build_calls(sampler_benchmark.make_data(workload))
    results = {key: {"times": [], "rounds": []} for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            times = _timing.time_block(call, repeats, warmup)
            results[key]["times"] += times
            results[key]["rounds"].append(statistics.median(times))
    return results


def table(all_results):
    """The markdown table of `run_workload`'s results per workload."""
    lines = [
        "| workload | mode | part | one reduction ms median (IQR) "
        "| 16-wide slices ms median (IQR) | sliced / one |",
        "|---|---|---|---|---|---|",
    ]
    for workload, results in all_results.items():
        for mode in MODES:
            for part in PARTS:
                one = results["one", mode, part]
                sliced = results["sliced", mode, part]
                ratios = [
                    a / b for a, b in zip(sliced["rounds"], one["rounds"])
                ]
                cell = f"{statistics.median(ratios):.2f}"
                if len(ratios) > 1:
                    cell += f" ({min(ratios):.2f}-{max(ratios):.2f})"
                one_cell, sliced_cell = (
                    _timing.spread_cell(_timing.summarize(r["times"]))
                    for r in (one, sliced)
                )
                lines.append(
                    f"| {workload} | {mode} | {part} | {one_cell} "
                    f"| {sliced_cell} | {cell} |"
                )
    return "\n".join(lines)


def main(argv=None):
    args = _timing.parse_block_args(
        __doc__.splitlines()[0], wide_workloads(), rounds=4, argv=argv
    )
    all_results = _timing.run_workloads(args, run_workload)
    print(table(all_results))
    if args.json:
        _timing.write_json(
            args.json,
            {
                workload: {
                    " ".join(key): value for key, value in results.items()
                }
                for workload, results in all_results.items()
            },
        )


if __name__ == "__main__":
    main()
