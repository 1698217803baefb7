"""File names and small file-system helpers shared by the txn log, snapshots and purge.

Names follow Apache ZooKeeper: ``log.<hex zxid>`` and ``snapshot.<hex zxid>`` (lowercase
hex, no ``0x``, no padding), with an optional ``.gz``/``.snappy`` suffix on snapshots.
Java parses any ``prefix.<hex>[.anything]`` name, so files zkpy writes that are *not*
logs or snapshots (temporary files, discarded logs) never start with ``log.`` or
``snapshot.``.  Our own parser is strict: only the names above count.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("zkpy.persistence")

VERSION_DIR = "version-2"
LOG_PREFIX = "log"
SNAP_PREFIX = "snapshot"
SNAP_SUFFIXES = ("", ".gz", ".snappy")
SNAP_TAIL = b"\x00\x00\x00\x01/"  # ustring "/" that ends every sealed snapshot


class PersistenceError(Exception):
    """A data or log directory cannot be used (permissions, not a directory, ...)."""


class RecoveryError(PersistenceError):
    """The data cannot be recovered safely without an operator's decision."""


def zxid_from_name(name: str, prefix: str) -> int | None:
    """The zxid in a ``prefix.<hex>`` file name, or None if the name is not one."""
    parts = name.split(".")
    if len(parts) not in (2, 3) or parts[0] != prefix:
        return None
    if len(parts) == 3 and (prefix != SNAP_PREFIX or "." + parts[2] not in SNAP_SUFFIXES):
        return None
    h = parts[1]
    if not h or len(h) > 16 or any(c not in "0123456789abcdefABCDEF" for c in h):
        return None
    return int(h, 16)


def file_name(prefix: str, zxid: int) -> str:
    return f"{prefix}.{zxid & 0xFFFFFFFFFFFFFFFF:x}"


def _listed(directory: Path, prefix: str) -> list[tuple[int, Path]]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        z = zxid_from_name(n, prefix)
        if z is not None:
            out.append((z, directory / n))
    out.sort(key=lambda t: (t[0], t[1].name))
    return out


def log_files(log_dir: Path) -> list[tuple[int, Path]]:
    """(start zxid, path) of every txn log file, oldest first."""
    return _listed(Path(log_dir), LOG_PREFIX)


def snapshot_files(snap_dir: Path) -> list[tuple[int, Path]]:
    """(zxid, path) of every snapshot file (valid or not), oldest first."""
    return _listed(Path(snap_dir), SNAP_PREFIX)


def is_valid_snapshot(path: Path) -> bool:
    """Apache ZooKeeper's cheap validity test: >= 10 bytes and ends in ustring "/".

    Compressed snapshots are accepted by their name (the CRC is checked on load).
    """
    try:
        size = path.stat().st_size
        if path.name.endswith((".gz", ".snappy")):
            return size >= 10
        if size < 10:
            return False
        with open(path, "rb") as f:
            f.seek(size - 5)
            return f.read(5) == SNAP_TAIL
    except OSError:
        return False


def valid_snapshots(snap_dir: Path, n: int = 100) -> list[tuple[int, Path]]:
    """Up to n valid snapshots, newest first."""
    out = []
    for z, p in reversed(snapshot_files(snap_dir)):
        if is_valid_snapshot(p):
            out.append((z, p))
            if len(out) >= n:
                break
    return out


def fsync_dir(directory: Path) -> None:
    """Make renames/creations in directory durable (best effort where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def ensure_dir(directory: Path) -> Path:
    """Create directory (and parents) if missing; check that we can read and write it."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PersistenceError(f"cannot create directory {directory}: {e.strerror or e}") from e
    if not directory.is_dir():
        raise PersistenceError(f"{directory} is not a directory")
    if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
        raise PersistenceError(f"directory {directory} is not readable and writable by this user")
    return directory


fdatasync = getattr(os, "fdatasync", os.fsync)
