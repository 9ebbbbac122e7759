"""One writer process per database: an OS file lock next to the database file.

``flock`` is tied to the open file description, so the kernel drops it when the
process dies, however it dies; there is no stale lock to clean up. The lock
file's content (the holder's pid) is only informative, for the error message.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ._errors import DatabaseInUse, StoreError


def lock_path(db_path: str) -> str:
    # Of the file itself: a symlink to the database (or to its directory) must
    # find the same lock, or two writers would share one database.
    return os.path.realpath(db_path) + ".lock"


@contextmanager
def hold_db_lock(db_path: str) -> Iterator[None]:
    """Hold an exclusive lock on ``db_path + ".lock"`` (symlinks resolved) for the duration.

    Raises:
        DatabaseInUse: another open file description (another process, or another
            store in this process) holds it.
        StoreError: the lock file cannot be created.
    """
    path = lock_path(db_path)
    try:
        # os.open makes the fd non-inheritable (PEP 446): a child process (a
        # tool command, say) must not keep the lock alive after we die.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot create lock file {path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            raise DatabaseInUse(
                f"database {db_path} is in use by another agent-runtime process{holder} "
                f"(lock {path} is held); stop that process or choose another database"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        # Closing the last fd of the description releases the flock.
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
