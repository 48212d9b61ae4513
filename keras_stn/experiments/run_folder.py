"""A training run's folder: one process at a time, and what is in it.

- `RunLock(directory)`: an exclusive lock on a run folder for the life of a
  run, so that two runs on the same folder cannot destroy each other. The
  lock file `.lock` holds the owner's pid for the message the second one
  gets; the operating system releases the lock when its owner ends, however
  it ends (`fcntl.flock`), so a killed run never leaves a stale lock.
- `existing_run(directory)`: the record of the run a folder holds, or None.
- `check_settings(record, settings)`: refuses to resume a run with other
  settings than it started with, naming the ones that differ.
- `remove_temporaries(directory)`: the half-written files of a killed
  process (atomic writes that never reached their rename).
- `clear(directory)`: empties a folder for `overwrite`, keeping the lock.
"""

import os
import re
import shutil

from keras_stn.experiments import results

LOCK_FILE = ".lock"
MODEL_FILE = "model.keras"
# Temporary files of atomic writes: `keras_stn.utils.files.atomic_write`'s
# `.<name>.<hex>.tmp` and `.<name>.<hex>.tmp.<ext>` (files whose writer
# wants its extension, e.g. `.weights.h5`, `.keras`).
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp(\..+)?$")

try:
    import fcntl
except ImportError:  # not POSIX: an O_EXCL lock file, removed on release
    fcntl = None


class RunInUseError(RuntimeError):
    """Another process holds the run folder's lock."""


def _owner(path):
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().strip() or "unknown"
    except OSError:
        return "unknown"


def _in_use(directory, path):
    return RunInUseError(
        f"{directory} is in use by another keras-stn run (pid "
        f"{_owner(path)}, lock file {path}); wait for it to finish, or use "
        "another --out-dir. Two runs on one folder would overwrite each "
        "other's files."
    )


class RunLock:
    """An exclusive, non-blocking lock on a run folder (a context manager).

    Entering creates the folder if needed and takes the lock, or raises
    `RunInUseError` at once naming the holder's pid; leaving releases it and
    removes the lock file.

    Args:
        directory: str, the run folder.
    """

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, LOCK_FILE)
        self._fd = None

    def __enter__(self):
        os.makedirs(self.directory, exist_ok=True)
        if fcntl is None:
            self._fd = self._create_exclusive()
        else:
            self._fd = self._lock()
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        return self

    def _create_exclusive(self):
        try:
            return os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR)
        except FileExistsError:
            raise _in_use(self.directory, self.path) from None

    def _lock(self):
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise _in_use(self.directory, self.path) from None
            except BaseException:
                os.close(fd)
                raise
            # The holder before us may have removed the file after we opened
            # it: then we hold a lock on a name nobody else sees; try again.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def __exit__(self, *exc_info):
        # Removed while still held, so that nobody locks the old file after
        # we let go of it while another process creates a new one.
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None
        return False


def existing_run(directory):
    """The record of the run in `directory`: its `results.json`, `{}` for a
    `model.keras` without one, None when the folder holds no run.

    Raises:
        ValueError: `results.json` is damaged (the message names it).
    """
    record = results.read_json(os.path.join(directory, results.RESULTS_FILE))
    if record is None and os.path.exists(os.path.join(directory, MODEL_FILE)):
        return {}
    return record


def describe(record):
    """`"a finished run"`, `"an unfinished run (1 of 3 epochs)"`, ..."""
    if record.get("status") == "complete":
        return "a finished run"
    epochs = record.get("schedule", {}).get("epochs", "?")
    done = len(record.get("epochs", []))
    return f"an unfinished run ({done} of {epochs} epochs)"


def check_settings(record, settings, path):
    """Raises a ValueError naming every setting that differs from the run's.

    Args:
        record: a run's record.
        settings: dict of the settings asked for, keyed as
            `recorded_settings(record)`.
        path: str, the record's file, for the message.
    """
    recorded = recorded_settings(record)
    differ = [
        f"{name}={settings[name]!r} (the run's: {recorded.get(name)!r})"
        for name in settings
        if recorded.get(name) != settings[name]
    ]
    if differ:
        raise ValueError(
            "`resume` continues a run with the settings it started with; "
            f"these differ from {path}: "
            + ", ".join(differ)
            + ". Run with the run's settings, or with --overwrite "
            "(`overwrite=True`) to delete it and start afresh, or use another "
            "--out-dir."
        )


def recorded_settings(record):
    """The settings a run was started with, flat: data, model, transform,
    epochs, batch_size, optimizer, learning_rate, train_examples, seed,
    data_source (runs from before it was recorded used tf.data)."""
    return {
        "data": record.get("data"),
        "model": record.get("model"),
        "transform": record.get("transform"),
        **record.get("schedule", {}),
        "data_source": record.get("data_source", "tfds"),
    }


def remove_temporaries(directory):
    """Removes what killed processes left of atomic writes in `directory`
    and its subfolders. Call it only while holding the run's lock."""
    for root, _, names in os.walk(directory):
        for name in names:
            if _TEMPORARY.match(name):
                os.remove(os.path.join(root, name))


def clear(directory):
    """Removes everything in `directory` but the lock file."""
    for name in os.listdir(directory):
        if name == LOCK_FILE:
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
