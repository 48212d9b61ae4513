"""Atomic file writes: readers see the old file or the new one, never half."""

import os
import uuid


def atomic_write(path, write):
    """Calls `write(temp_path)` on a new file beside `path`, then renames it
    onto `path` (`os.replace`). The file gets the usual permissions (it is
    created by `write`, under the process' umask); parent folders are
    created; on any error the temporary file is removed.

    Args:
        path: str or path-like, the file to write.
        write: callable taking the temporary path and writing the content.
    Returns:
        str: `path`.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    name = os.path.basename(path)
    temp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
    return path
