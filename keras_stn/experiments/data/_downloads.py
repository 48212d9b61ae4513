"""Checks before tensorflow-datasets is asked for data: is the download
site reachable, are the local files the originals.

Offline, tfds retries a download for minutes before it fails, and a local
file with the wrong checksum ends in a traceback about its download
manager; these checks say the same at once, naming the site or the file.
"""

import contextlib
import hashlib
import os
import urllib.error
import urllib.request

from keras_stn.utils import files

# In tfds' data dir while keras-stn prepares a data set there.
PREPARATION_LOCK = ".keras_stn-prepare.lock"


def reachable(url, timeout=5.0):
    """Whether an HTTP HEAD request to `url` gets an answer (any status)."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError:  # an answer, if not a welcome one
        return True
    except OSError:  # URLError, timeouts, refused connections
        return False


def sha256(path, chunk_size=1 << 20):
    """The hex sha256 of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_files(directory, checksums, argument):
    """Raises a ValueError naming the first file of `directory` whose
    sha256 is not the one in `checksums`.

    Args:
        directory: str, the folder holding the files.
        checksums: dict file name -> hex sha256 of the original.
        argument: str, the argument that named `directory`, for the message.
    """
    for name, expected in checksums.items():
        path = os.path.join(directory, name)
        found = sha256(path)
        if found != expected:
            raise ValueError(
                f"{path} is corrupt: its sha256 is {found}, the original "
                f"file's is {expected} ({os.path.getsize(path)} bytes here). "
                f"`{argument}` must hold the original files: download or "
                f"copy {name} again. Received: {argument}={directory!r}"
            )


def preparation_lock(data_dir):
    """A blocking lock on tfds' `data_dir` while a data set is prepared
    there (a context manager).

    The lock file `<data_dir>/.keras_stn-prepare.lock` is created (never
    through a symbolic link: a link there is a `ValueError` naming it) and
    removed on release; the operating system releases the lock when its
    owner ends, however it ends. A remote `data_dir` (`gs://...`) is not
    locked.
    """
    if "://" in data_dir:
        return contextlib.nullcontext()
    os.makedirs(data_dir, exist_ok=True)
    return files.FileLock(
        os.path.join(data_dir, PREPARATION_LOCK),
        blocking=True,
        remedy="Remove the link, or pass another `data_dir`.",
    )
