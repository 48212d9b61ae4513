"""The benchmarks' shared timing, statistics and JSON output.

Each variant is timed in its own block (`time_block`): the calls of one
framework never alternate with another's, so none pays for the threads
another leaves spinning after its work. The callable passed in must wait
for its results before returning (the clock stops after it).
"""

import argparse
import json
import statistics
import sys
import time

import _subsets
import keras

from keras_stn.utils import files


def time_block(call, repeats, warmup=0):
    """Runs `call` `warmup` times untimed, then `repeats` times timed.

    Args:
        call: zero-argument callable that returns once its work is done.
        repeats: int >= 1, timed calls.
        warmup: int >= 0, untimed calls first.
    Returns:
        list of `repeats` wall-clock times in ms.
    """
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - start))
    return times


def summarize(times):
    """`{"median", "p25", "p75", "min", "n"}` of times in ms (None if
    empty)."""
    if not times:
        return None
    if len(times) < 2:
        p25 = median = p75 = times[0]
    else:
        p25, median, p75 = statistics.quantiles(times, n=4, method="inclusive")
    return {
        "median": median,
        "p25": p25,
        "p75": p75,
        "min": min(times),
        "n": len(times),
    }


def spread_cell(summary, digits=2):
    """`median (p25-p75)`, or blank for None."""
    if summary is None:
        return ""
    f = f"{{:.{digits}f}}"
    return (
        f"{f.format(summary['median'])} "
        f"({f.format(summary['p25'])}-{f.format(summary['p75'])})"
    )


def add_block_options(parser, rounds):
    """Adds `--rounds` (default `rounds`), `--repeats`, `--warmup` and
    `--json`: the options of a script that times blocks in turn."""
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument(
        "--repeats", type=int, default=15, help="timed calls per block"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this file")


def check_block_options(parser, args):
    """Stops, naming the values, when `add_block_options`' counts are not
    usable."""
    if args.rounds < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error(
            "--rounds and --repeats must be at least 1 and --warmup at "
            f"least 0. Received: --rounds {args.rounds}, --repeats "
            f"{args.repeats}, --warmup {args.warmup}"
        )


def parse_block_args(description, workloads, rounds, argv=None):
    """The command line of a TensorFlow-backend script that times blocks
    in turn over `--workloads` (a comma-separated subset of `workloads`,
    all by default): `args`, with `args.workloads` as a list."""

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--workloads",
        default=",".join(workloads),
        help=f"comma-separated subset of: {', '.join(workloads)}",
    )
    add_block_options(parser, rounds)
    args = parser.parse_args(argv)
    check_block_options(parser, args)
    if keras.backend.backend() != "tensorflow":
        parser.error("runs on the TensorFlow backend (KERAS_BACKEND)")
    args.workloads = _subsets.parse_subset(
        parser, args.workloads, workloads, "workloads"
    )
    return args


def run_workloads(args, run_workload):
    """`{workload: run_workload(workload, rounds, repeats, warmup)}` for
    `parse_block_args`' `args`, naming each workload on stderr."""
    results = {}
    for workload in args.workloads:
        print(f"{workload}: {args.rounds} rounds", file=sys.stderr)
        results[workload] = run_workload(
            workload, args.rounds, args.repeats, args.warmup
        )
    return results


def write_json(path, payload):
    """Writes `payload` as indented JSON to `path`, atomically."""

    def write(temp_path):
        with open(temp_path, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")

    files.atomic_write(path, write)
