"""The benchmarks' shared timing, statistics and JSON output.

Each variant is timed in its own block (`time_block`): the calls of one
framework never alternate with another's, so none pays for the threads
another leaves spinning after its work. The callable passed in must wait
for its results before returning (the clock stops after it).
"""

import json
import statistics
import time

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


def write_json(path, payload):
    """Writes `payload` as indented JSON to `path`, atomically."""

    def write(temp_path):
        with open(temp_path, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")

    files.atomic_write(path, write)
