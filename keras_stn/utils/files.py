"""Files the package writes: atomically, never through a symbolic link.

- `atomic_write(path, write)`: readers see the old file or the new one,
  never half.
- `refuse_link(path, remedy)`: a one-line `LinkError` when `path` is a
  symbolic link, so that nothing the link points to is written or deleted.
- `FileLock(path, blocking)`: an exclusive lock on a lock file the package
  writes, released when its owner ends however it ends.
"""

import errno
import os
import time
import uuid

try:
    import fcntl
except ImportError:  # not POSIX: an O_EXCL lock file, removed on release
    fcntl = None

# Opening a lock file must not follow a link planted in its place (0 where
# the platform has no such flag: `refuse_link` checked the name before).
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


class LinkError(ValueError):
    """A path the package would write or delete is a symbolic link."""


def _link_error(path, remedy):
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return LinkError(
        f"{path} is a symbolic link (to {target!r}); keras-stn writes and "
        "deletes only its own files and never follows a link out of its "
        f"folders. {remedy}"
    )


def refuse_link(path, remedy="Remove the link."):
    """Raises a `LinkError` naming `path` when it is a symbolic link.

    Args:
        path: str or path-like.
        remedy: str, the end of the message: what the user can do.
    Returns:
        str: `path`.
    """
    path = os.fspath(path)
    if os.path.islink(path):
        raise _link_error(path, remedy)
    return path


def atomic_write(path, write):
    """Calls `write(temp_path)` on a new file beside `path`, then renames it
    onto `path` (`os.replace`). The file gets the usual permissions (it is
    created by `write`, under the process' umask); parent folders are
    created; on any error the temporary file is removed. A symbolic link at
    `path` is replaced by the file, never followed.

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


class FileLock:
    """An exclusive lock on the file `path` (a context manager).

    Entering creates the file (never through a symbolic link: a link there
    is a `LinkError`) and locks it with `fcntl.flock`, which the operating
    system releases when the owner ends, however it ends, so a killed
    process never leaves a stale lock; leaving removes the file and
    releases the lock.

    Args:
        path: str or path-like, the lock file.
        blocking: bool, wait for the holder to let go (True) or raise
            `BlockingIOError` at once (False, the default).
        remedy: str, the end of a `LinkError`'s message.
    Attributes:
        fd: the lock file's descriptor while held, else None.
    """

    def __init__(self, path, blocking=False, remedy="Remove the link."):
        self.path = os.fspath(path)
        self.blocking = bool(blocking)
        self.remedy = remedy
        self.fd = None

    def _open(self, flags):
        try:
            return os.open(self.path, flags | _NO_FOLLOW, 0o644)
        except OSError as error:
            if error.errno == errno.ELOOP or os.path.islink(self.path):
                raise _link_error(self.path, self.remedy) from None
            raise

    def __enter__(self):
        refuse_link(self.path, self.remedy)
        if fcntl is None:
            self.fd = self._create_exclusive()
        else:
            self.fd = self._lock()
        return self

    def _create_exclusive(self):
        while True:
            try:
                return self._open(os.O_CREAT | os.O_EXCL | os.O_RDWR)
            except FileExistsError:
                if not self.blocking:
                    raise BlockingIOError(
                        errno.EWOULDBLOCK, "locked", self.path
                    ) from None
                time.sleep(0.1)

    def _lock(self):
        flags = fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB)
        while True:
            fd = self._open(os.O_CREAT | os.O_RDWR)
            try:
                fcntl.flock(fd, flags)
            except BaseException:
                os.close(fd)
                raise
            # The holder before us may have removed the file after we opened
            # it: then we hold a lock on a name nobody else sees; try again.
            try:
                same = os.lstat(self.path).st_ino == os.fstat(fd).st_ino
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
        os.close(self.fd)
        self.fd = None
        return False
