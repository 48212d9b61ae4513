"""Kills `keras-stn train` at random moments and resumes it until it
finishes; every finished run must equal an uninterrupted one.

Trains a reference run once, uninterrupted. Then, trial after trial until
the time is up, starts the same run in a fresh folder, sends it SIGINT or
SIGKILL (chosen at random) after a random delay, and runs the same command
with `--resume` until one attempt finishes; each attempt but the last may
be killed again. At the end of a trial its `results.json` (wall times
aside) must equal the reference's, its `model.keras` must hold the same
weights bit for bit, and its folder only the final files. Before the
first trial a second process is started on the folder of a run that is
training: it must be refused, saying the folder is in use.

After each kill the script notes what the folder held (finished epochs,
backups, half-written temporary files, `model.keras`), so the summary shows
which moments the kills hit.

    python benchmarks/resume_torture.py --minutes 10 \\
        --manual-dir ../shared/data/mnist

`--backend` and `--data-source` choose the Keras backend and the data
source of the runs (`resume_torture_pydataset.py`: PyTorch and the
TensorFlow-free source). Other scripts call `main(argv, **defaults)`.

Exit status 0 when every trial matched, 1 otherwise.
"""

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

RUN = [
    "train",
    "--data",
    "r",
    "--epochs",
    "3",
    "--train-examples",
    "512",
    "--batch-size",
    "64",
    "--no-pictures",
    "--verbose",
    "0",
]
MODELS = ("cnn", "st-cnn", "fcn", "st-fcn")
FINAL_FILES = [".manifest.json", "model.keras", "results.json", "results.md"]
# The runs' environment: `main` sets KERAS_BACKEND here for `--backend`.
ENV = dict(os.environ)


def _command(args, out_dir, *extra):
    command = [sys.executable, "-m", "keras_stn_cli", *RUN]
    command += ["--model", args.model]
    command += ["--out-dir", out_dir, "--seed", str(args.seed)]
    command += ["--data-source", args.data_source, *extra]
    if args.manual_dir:
        command += ["--manual-dir", args.manual_dir]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    return command


def _start(command):
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )


def _run(command):
    return subprocess.run(command, capture_output=True, text=True, env=ENV)


def _run_folder(args):
    """The run's folder name, as `training.run_name` spells it."""
    return f"r-{args.model}" + ("-affine" if args.model[:3] == "st-" else "")


def _record(directory):
    with open(os.path.join(directory, "results.json"), encoding="utf-8") as f:
        record = json.load(f)
    record.pop("seconds", None)
    return record


def _weights(directory):
    """Every array of `model.keras`' weights file, by its path in it."""
    import h5py
    import numpy as np

    arrays = {}
    with zipfile.ZipFile(os.path.join(directory, "model.keras")) as archive:
        with archive.open("model.weights.h5") as member:
            with h5py.File(member, "r") as weights:

                def visit(name, item):
                    if isinstance(item, h5py.Dataset):
                        arrays[name] = np.asarray(item)

                weights.visititems(visit)
    return arrays


def _same_weights(a, b):
    import numpy as np

    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a
    )


def _state(directory):
    """A short description of what a killed run left in its folder."""
    if not os.path.isdir(directory):
        return "no folder"
    names = os.listdir(directory)
    backup = os.path.join(directory, "backup")
    backups = sorted(os.listdir(backup)) if os.path.isdir(backup) else []
    temporaries = [n for n in names + backups if ".tmp" in n]
    parts = []
    try:
        record = _record(directory)
        parts.append(f"{record['status']} {len(record['epochs'])} epochs")
    except FileNotFoundError:
        parts.append("no results.json")
    if backups:
        parts.append(
            "backup "
            + ",".join(n.split(".")[0] for n in backups if ".tmp" not in n)
        )
    if "model.keras" in names:
        parts.append("model.keras")
    if temporaries:
        parts.append("half-written temporary file")
    if ".lock" in names:
        parts.append("lock file")
    return ", ".join(parts)


def _kill_at_random(process, delay, kinds, rng, log):
    """Sends a random signal after `delay` s unless the process ended."""
    try:
        output, _ = process.communicate(timeout=delay)
        return None, output
    except subprocess.TimeoutExpired:
        pass
    kind = rng.choice(kinds)
    process.send_signal(kind)
    output, _ = process.communicate()
    log(
        f"    {signal.Signals(kind).name} after {delay:.1f} s: exit "
        f"{process.returncode}"
    )
    if kind == signal.SIGINT and process.returncode != 130:
        # Not the interrupt's own status: say what the run printed.
        lines = [line for line in output.splitlines() if line.strip()]
        log(f"    its last line: {(lines or ['none'])[-1][:300]}")
    return kind, output


def _second_process_is_refused(args, out_dir, log):
    """While a run trains, the same command on its folder must be refused.

    The first run trains on all 60000 digits so that it is still training
    when the second one, starting up, reaches the folder; it is killed
    after the check. Returns whether the second one was refused.
    """
    command = _command(args, out_dir, "--train-examples", "60000")
    first = _start(command)
    lock = os.path.join(out_dir, _run_folder(args), ".lock")
    while not os.path.exists(lock):
        if first.poll() is not None:
            log("    the first process ended before it locked its folder")
            return False
        time.sleep(0.2)
    second = _run(command + ["--resume"])
    still_training = first.poll() is None
    first.send_signal(signal.SIGKILL)
    first.communicate()
    lines = [line for line in second.stderr.splitlines() if "keras-stn" in line]
    log(
        f"    a second process on the same folder: exit {second.returncode}, "
        f"{(lines or ['no message'])[-1][:200]}"
    )
    return (
        still_training and second.returncode == 2 and "in use" in "".join(lines)
    )


def main(argv=None, **defaults):
    """Runs the torture; `defaults` replace the options' defaults (keyed as
    their `dest`: `backend`, `data_source`, `minutes`, ...)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-seed", type=int, default=1)
    parser.add_argument(
        "--max-kills",
        type=int,
        default=4,
        help="kills per trial; the attempt after the last runs to the end",
    )
    parser.add_argument("--manual-dir", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="st-cnn",
        help="the network of the runs (on r: 3 epochs of 512 digits)",
    )
    parser.add_argument(
        "--backend",
        choices=("tensorflow", "jax", "torch"),
        default=None,
        help="KERAS_BACKEND of the runs (default: this process' environment)",
    )
    parser.add_argument(
        "--data-source",
        choices=("auto", "tfds", "pydataset"),
        default="auto",
        help="the runs' --data-source (default auto)",
    )
    parser.add_argument(
        "--work-dir", default=None, help="default: a new temporary folder"
    )
    parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    if args.backend:
        ENV["KERAS_BACKEND"] = args.backend
    # Started in the background (`cmd &`), this process and its children
    # would ignore SIGINT; a handler of its own is reset to the default in
    # each child, where Python turns SIGINT into KeyboardInterrupt again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rng = random.Random(args.random_seed)
    work = args.work_dir or tempfile.mkdtemp(prefix="resume_torture_")
    start = time.monotonic()

    def log(line):
        print(f"[{time.monotonic() - start:6.0f} s] {line}", flush=True)

    log(
        f"reference run in {work}/reference (backend "
        f"{ENV.get('KERAS_BACKEND', 'default')}, data source "
        f"{args.data_source})"
    )
    began = time.monotonic()
    reference_dir = os.path.join(work, "reference")
    done = _run(_command(args, reference_dir))
    if done.returncode != 0:
        print(done.stdout, done.stderr)
        return 1
    reference_seconds = time.monotonic() - began
    reference = os.path.join(reference_dir, _run_folder(args))
    expected_record = _record(reference)
    expected_weights = _weights(reference)
    log(f"reference: {reference_seconds:.0f} s")

    kinds = [signal.SIGINT, signal.SIGKILL]
    counts = collections.Counter()
    states = collections.Counter()
    failures = []
    trial = 0
    budget = 60 * args.minutes
    while time.monotonic() - start + reference_seconds < budget:
        trial += 1
        out_dir = os.path.join(work, f"trial-{trial:03d}")
        directory = os.path.join(out_dir, _run_folder(args))
        log(f"trial {trial}")
        if trial == 1:
            held = _second_process_is_refused(
                args, os.path.join(work, "concurrent"), log
            )
            counts["second process refused" if held else "NOT refused"] += 1
            if not held:
                failures.append("a second process was not refused")
        process = _start(_command(args, out_dir))
        attempts = 0
        while True:
            attempts += 1
            if attempts <= args.max_kills:
                delay = rng.uniform(0.2, 1.1) * reference_seconds
                kind, output = _kill_at_random(process, delay, kinds, rng, log)
            else:
                kind, (output, _) = None, process.communicate()
            if kind is None:
                if process.returncode != 0:
                    failures.append(
                        f"trial {trial}: exit {process.returncode}: "
                        f"{output.strip()[-400:]}"
                    )
                break
            counts[signal.Signals(kind).name] += 1
            state = _state(directory)
            states[state] += 1
            log(f"    left: {state}")
            counts["resumes"] += 1
            process = _start(_command(args, out_dir, "--resume"))
        if process.returncode != 0:
            log(f"    FAILED: {failures[-1]}")
            continue
        names = sorted(os.listdir(directory))
        same_record = _record(directory) == expected_record
        same_weights = _same_weights(_weights(directory), expected_weights)
        log(
            f"    finished after {attempts} attempt(s): results "
            f"{'equal' if same_record else 'DIFFER'}, weights "
            f"{'equal' if same_weights else 'DIFFER'}, files {names}"
        )
        counts["trials"] += 1
        if not (same_record and same_weights and names == FINAL_FILES):
            failures.append(
                f"trial {trial}: record equal {same_record}, weights equal "
                f"{same_weights}, files {names}"
            )

    print()
    print(
        f"reference: {reference_seconds:.0f} s; {trial} trials in "
        f"{(time.monotonic() - start) / 60:.1f} min"
    )
    for name, count in sorted(counts.items()):
        print(f"  {name}: {count}")
    print("what the kills left:")
    for state, count in states.most_common():
        print(f"  {count:3d} x {state}")
    if not counts["trials"]:
        failures.append(
            "no trial finished in the time given: nothing was checked "
            f"(the reference run took {reference_seconds:.0f} s; give more "
            "--minutes)"
        )
    if failures:
        print(f"{len(failures)} FAILURES:")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print(
        "every finished run equals the uninterrupted one (results and "
        "weights, bit for bit)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
