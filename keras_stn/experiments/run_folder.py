"""A training run's folder: one process at a time, and what is in it.

- `RunLock(directory)`: an exclusive lock on a run folder for the life of a
  run, so that two runs on the same folder cannot destroy each other. The
  lock file `.lock` holds the owner's pid for the message the second one
  gets; the operating system releases the lock when its owner ends, however
  it ends (`fcntl.flock`), so a killed run never leaves a stale lock.
- `check_links(directory)`: refuses a run folder in which a name the
  package writes is a symbolic link, so that nothing outside the folder is
  ever written or deleted through it.
- `Manifest(directory)`: the files the package wrote in the folder
  (`.manifest.json`), listed before each is written; `clear` and the
  removal of backups delete those and nothing else.
- `existing_run(directory)`: the record of the run a folder holds, or None.
- `check_settings(record, settings)`: refuses to resume a run with other
  settings than it started with, naming the ones that differ.
- `check_backend(record, backend)`: refuses to resume a run under another
  Keras backend than the one that trained it.
- `remove_temporaries(directory)`: the half-written files of a killed
  process (atomic writes that never reached their rename).
- `clear(directory)`: removes the files of the run in a folder for
  `overwrite`, and nothing else.
"""

import json
import os
import re

from keras_stn.experiments import results
from keras_stn.utils import files

LOCK_FILE = ".lock"
MANIFEST_FILE = ".manifest.json"
MODEL_FILE = "model.keras"
RESULTS_MARKDOWN = "results.md"
BACKUP_DIR = "backup"
PICTURES_DIR = "pictures"
# The names the package writes at the top of a run folder, and the folders
# whose files it writes: none of them may be a symbolic link.
TOP_NAMES = (
    LOCK_FILE,
    MANIFEST_FILE,
    results.RESULTS_FILE,
    RESULTS_MARKDOWN,
    MODEL_FILE,
)
SUBFOLDERS = (BACKUP_DIR, PICTURES_DIR)
# A backup is `backup/epoch-<N>.keras` (`.weights.h5` before: still read).
BACKUP_FILE = re.compile(r"^epoch-\d{4,}\.(keras|weights\.h5)$")
# Temporary files of atomic writes: `keras_stn.utils.files.atomic_write`'s
# `.<name>.<hex>.tmp` and `.<name>.<hex>.tmp.<ext>` (files whose writer
# wants its extension, e.g. `.weights.h5`, `.keras`).
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp(\..+)?$")
_LINK_REMEDY = "Remove the link, or use another --out-dir."


class RunInUseError(RuntimeError):
    """Another process holds the run folder's lock."""


def _owner(path):
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().strip() or "unknown"
    except OSError:
        return "unknown"


class RunLock:
    """An exclusive, non-blocking lock on a run folder (a context manager).

    Entering creates the folder if needed and takes the lock, or raises
    `RunInUseError` at once naming the holder's pid; leaving releases it and
    removes the lock file. A lock file that is a symbolic link is refused
    (`keras_stn.utils.files.LinkError`), never written through.

    Args:
        directory: str, the run folder.
    """

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, LOCK_FILE)
        self._lock = files.FileLock(self.path, remedy=_LINK_REMEDY)

    def __enter__(self):
        os.makedirs(self.directory, exist_ok=True)
        try:
            self._lock.__enter__()
        except BlockingIOError:
            raise RunInUseError(
                f"{self.directory} is in use by another keras-stn run (pid "
                f"{_owner(self.path)}, lock file {self.path}); wait for it "
                "to finish, or use another --out-dir. Two runs on one folder "
                "would overwrite each other's files."
            ) from None
        os.ftruncate(self._lock.fd, 0)
        os.write(self._lock.fd, f"{os.getpid()}\n".encode())
        return self

    def __exit__(self, *exc_info):
        return self._lock.__exit__(*exc_info)


def check_links(directory, folder=False):
    """Raises a `keras_stn.utils.files.LinkError` naming the first symbolic
    link among the names the package writes in `directory` (its top-level
    files, `backup/` and `pictures/` and their files).

    Args:
        directory: str, the run folder.
        folder: bool, refuse `directory` itself being a link too (before
            deleting in it).
    """
    if folder:
        files.refuse_link(directory, _LINK_REMEDY)
    for name in TOP_NAMES + SUBFOLDERS:
        files.refuse_link(os.path.join(directory, name), _LINK_REMEDY)
    for name in SUBFOLDERS:
        subfolder = os.path.join(directory, name)
        if os.path.isdir(subfolder):
            for entry in sorted(os.listdir(subfolder)):
                files.refuse_link(os.path.join(subfolder, entry), _LINK_REMEDY)


def _allowed(relative):
    """Whether `relative` is a name the package writes in a run folder: a
    top-level file, or a file straight inside `backup/` or `pictures/`."""
    if not isinstance(relative, str):
        return False
    parts = relative.split("/")
    if len(parts) == 1:
        return parts[0] in TOP_NAMES and parts[0] != MANIFEST_FILE
    return (
        len(parts) == 2
        and parts[0] in SUBFOLDERS
        and parts[1] not in ("", ".", "..")
        and "\\" not in parts[1]
    )


def holds_run(directory):
    """Whether `directory` holds a run's `results.json` or `model.keras`
    (present, readable or not)."""
    return any(
        os.path.lexists(os.path.join(directory, name))
        for name in (results.RESULTS_FILE, MODEL_FILE)
    )


class Manifest:
    """The files the package wrote in a run folder, as `/`-separated paths
    relative to it, kept in `.manifest.json`.

    A name is listed before its file is written, so that a file of the
    package is never left unlisted (a listed name may have no file). A run
    folder from before the manifest existed lists the names such a run
    writes (results, model, backups) when they are there.

    Args:
        directory: str, the run folder.
    """

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, MANIFEST_FILE)
        self.names = self._read()

    def _read(self):
        try:
            with open(self.path, encoding="utf-8") as file:
                listed = json.load(file).get("files", [])
        except FileNotFoundError:
            return self._legacy()
        except (ValueError, AttributeError, UnicodeDecodeError):
            listed = []  # damaged: delete nothing by its word
        return {name for name in listed if _allowed(name)}

    def _legacy(self):
        if not holds_run(self.directory):
            return set()
        names = {
            name
            for name in (results.RESULTS_FILE, RESULTS_MARKDOWN, MODEL_FILE)
            if os.path.lexists(os.path.join(self.directory, name))
        }
        backup = os.path.join(self.directory, BACKUP_DIR)
        if os.path.isdir(backup) and not os.path.islink(backup):
            names.update(
                f"{BACKUP_DIR}/{name}"
                for name in os.listdir(backup)
                if BACKUP_FILE.match(name)
            )
        return names

    def _write(self):
        results.write_json(self.path, {"files": sorted(self.names)})

    def add(self, *paths):
        """Lists the files at `paths` (inside the run folder: joined to
        `directory`), writing the manifest when something is new."""
        relative = {self._relative(path) for path in paths}
        if not relative <= self.names:
            self.names |= relative
            self._write()

    def remove(self, *paths):
        """Deletes the listed files at `paths` (inside the run folder; not
        links, not folders) and forgets them."""
        relative = {self._relative(path) for path in paths} & self.names
        for name in sorted(relative):
            path = os.path.join(self.directory, *name.split("/"))
            if os.path.isfile(path) and not os.path.islink(path):
                os.remove(path)
        if relative:
            self.names -= relative
            self._write()

    def _relative(self, path):
        path = os.fspath(path)
        relative = os.path.relpath(
            os.path.abspath(path), os.path.abspath(self.directory)
        )
        relative = "/".join(relative.split(os.sep))
        if not _allowed(relative):
            raise ValueError(
                "A run folder's manifest lists only the files keras-stn "
                "writes there (top-level results, backup/ and pictures/). "
                f"Received: {path!r}"
            )
        return relative

    def clear(self):
        """Deletes every listed file, the empty `backup/` and `pictures/`
        folders, and the manifest."""
        self.remove(
            *(
                os.path.join(self.directory, *name.split("/"))
                for name in sorted(self.names)
            )
        )
        for name in SUBFOLDERS:
            _remove_empty_folder(os.path.join(self.directory, name))
        if os.path.isfile(self.path) and not os.path.islink(self.path):
            os.remove(self.path)


def _remove_empty_folder(path):
    if os.path.isdir(path) and not os.path.islink(path):
        try:
            os.rmdir(path)
        except OSError:  # not empty: it holds files the package did not write
            pass


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


def run_backends(record):
    """The Keras backends that trained a run, in order (`[]` for a record
    from before they were recorded)."""
    backends = record.get("backends")
    if isinstance(backends, list) and backends:
        return [str(name) for name in backends]
    backend = record.get("backend")
    return [backend] if isinstance(backend, str) else []


def check_backend(record, backend, allow_change, path):
    """Raises a ValueError when a run trained by another Keras backend would
    be continued by `backend` without `allow_change`.

    Args:
        record: a run's record.
        backend: str, this process's backend.
        allow_change: bool, accept the change (the record lists both).
        path: str, the record's file, for the message.
    """
    trained = run_backends(record)
    if allow_change or not trained or trained[-1] == backend:
        return
    raise ValueError(
        f"`resume` continues the run of {path} with the Keras backend that "
        f"trained it, {trained[-1]!r}; this process runs {backend!r}, whose "
        "numbers differ in the last bits. Run with "
        f"KERAS_BACKEND={trained[-1]}, or pass --allow-backend-change "
        "(`allow_backend_change=True`) to continue under "
        f"{backend!r} (the results then list both), or --overwrite to start "
        "afresh."
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
    """Removes what killed processes left of atomic writes in the run
    folder and its `backup/` and `pictures/`. Call it only while holding the
    run's lock, after `check_links`."""
    for folder in (directory,) + tuple(
        os.path.join(directory, name) for name in SUBFOLDERS
    ):
        if not os.path.isdir(folder) or os.path.islink(folder):
            continue
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if _TEMPORARY.match(name) and not os.path.isdir(path):
                os.remove(path)


def clear(directory):
    """Removes the files the package wrote in `directory` (its manifest's),
    when the folder holds a run; files it did not write stay, and so does
    the lock file. Call it after `check_links(directory, folder=True)`."""
    if holds_run(directory):
        Manifest(directory).clear()
