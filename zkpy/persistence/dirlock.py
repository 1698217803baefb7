"""An exclusive lock on a data or log directory for the life of one server.

Two servers writing one dataDir (or one dataLogDir) interleave their txn logs and
snapshots and lose acknowledged writes, so a server takes a non-blocking ``flock`` on
``<dir>/zkpy.lock`` before it reads anything there and keeps the file open until it
stops.  A second server finds the lock held and refuses to start, naming the directory
and the holder's pid.  The kernel drops the lock when the holder dies, however it dies:
a stale lock file is harmless.

The lock belongs to the open file description: a forked snapshot writer shares it for
as long as it keeps the descriptor, and the writer closes every inherited descriptor at
once (``database._fork_snapshot_writer``), so the lock is the server's alone and goes
with it.  The descriptor is not inherited across exec.  Apache ZooKeeper takes no such
lock (it ignores this file).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
from pathlib import Path

from zkpy.persistence.files import PersistenceError, ensure_dir

log = logging.getLogger("zkpy.persistence")

LOCK_NAME = "zkpy.lock"


class DirLockedError(PersistenceError):
    """Another server holds the directory."""


class DirLock:
    """A held lock on one directory; :meth:`release` (or the process ending) frees it."""

    def __init__(self, directory: Path, what: str = "dataDir") -> None:
        self.directory = ensure_dir(Path(directory))
        self.path = self.directory / LOCK_NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            os.close(self._fd)
            self._fd = -1
            raise DirLockedError(
                f"{what} {self.directory} is in use by another server ({holder} holds "
                f"{self.path}): refusing to start a second server on it, since two servers "
                f"writing one directory lose acknowledged writes. Stop the other server, or give "
                f"this one its own {what}.") from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                os.close(self._fd)
                self._fd = -1
                raise PersistenceError(f"cannot lock {self.path}: {e.strerror or e}") from e
            log.warning("cannot lock %s (%s): the file system does not support flock; nothing "
                        "stops a second server from using %s", self.path, e.strerror, self.directory)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)

    def _holder(self) -> str:
        try:
            text = os.pread(self._fd, 256, 0).decode(errors="replace").split()
        except OSError:
            text = []
        if len(text) >= 2:
            return f"pid {text[0]} on {text[1]}"
        return f"pid {text[0]}" if text else "a process"

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # closing the last descriptor of the description frees the lock


class DataDirLocks:
    """The locks of a server's dataDir and, if it is another directory, its dataLogDir."""

    def __init__(self, data_dir: Path, log_dir: Path | None = None) -> None:
        self.locks = [DirLock(data_dir, "dataDir")]
        if log_dir is not None and _key(log_dir) != _key(data_dir):
            try:
                self.locks.append(DirLock(log_dir, "dataLogDir"))
            except BaseException:
                self.release()
                raise

    def release(self) -> None:
        for lock in self.locks:
            lock.release()


def _key(directory: Path) -> str:
    return os.path.realpath(directory)
