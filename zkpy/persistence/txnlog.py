"""The txn log writer (group commit), repair of torn tails, and truncation.

Threading model: :meth:`TxnLog.append` runs on the event-loop thread and only
serialises the entry into an in-memory buffer; :meth:`TxnLog.sync` runs in one worker
thread, writes everything appended so far, preallocates and fdatasyncs -- one sync
covers many appends (group commit).  Only the worker touches file descriptors.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

from zkpy.jute.txns import TXN_HEADER, TxnHeader
from zkpy.persistence.files import (
    LOG_PREFIX,
    RecoveryError,
    ensure_dir,
    fdatasync,
    file_name,
    fsync_dir,
    log_files,
)
from zkpy.persistence.logscan import (
    CRC_LEN,
    EOR,
    FILE_HEADER,
    HEADER_SIZE,
    LOG_MAGIC,
    LOG_VERSION,
    Tail,
    complete_entry_at,
    data_end,
    first_needed,
    follows,
    iter_file,
    iter_log,
    last_logged_zxid,
    nonzero_after,
    read_file,
    scan_file,
    split_entry,
    valid_entry_after,
    walk,
)

log = logging.getLogger("zkpy.persistence")

DEFAULT_PREALLOC = 64 << 20
_PAD_SLACK = 4096  # extend the file when the write position gets this close to its end
DISCARDED_PREFIX = "discarded-"  # Java must not parse these as logs ("log.<hex>.x" would be)

__all__ = [
    "TxnLog", "iter_log", "iter_file", "iter_repaired_log", "repair_log", "truncate_log", "last_logged_zxid",
    "scan_file", "LOG_MAGIC",
]


class _Segment:
    """Bytes appended but not yet written; new_file names the file they start."""

    __slots__ = ("new_file", "buf", "last_zxid", "count")

    def __init__(self, new_file: int | None, buf: bytearray) -> None:
        self.new_file = new_file
        self.buf = buf
        self.last_zxid = -1
        self.count = 0


class TxnLog:
    """Appends txns to ``log.<zxid>`` files in ``log_dir`` (the version-2 directory)."""

    def __init__(self, log_dir: Path, pre_alloc_size: int = DEFAULT_PREALLOC,
                 force_sync: bool = True) -> None:
        self.log_dir = ensure_dir(Path(log_dir))
        self.pre_alloc_size = pre_alloc_size
        self.force_sync = force_sync
        self._lock = threading.Lock()  # pending state: event loop (append) vs worker (sync)
        self._io_lock = threading.Lock()  # one sync / close / truncate at a time
        self._pending: list[_Segment] = []
        self._pending_bytes = 0
        self._roll = True  # the next append starts a new file
        self._fd = -1
        self._path: Path | None = None
        self._pos = 0  # end of written data in the current file
        self._size = 0  # current (preallocated) file size
        self._failed: OSError | None = None
        self.last_appended_zxid = -1
        self.last_synced_zxid = -1
        self.syncs = 0  # number of sync() calls that wrote something

    # ---- event-loop side ----------------------------------------------------------
    def append(self, hdr: TxnHeader, record: bytes) -> None:
        """Queue one txn (header + serialized record); durable after the next sync()."""
        self.append_entry(hdr.zxid, TXN_HEADER.pack(*hdr) + record)

    def append_entry(self, zxid: int, entry: bytes) -> None:
        """Queue one txn already serialized as TxnHeader + record (a proposal's payload)."""
        head = CRC_LEN.pack(zlib.adler32(entry), len(entry))
        with self._lock:
            pending = self._pending
            if self._roll:
                self._roll = False
                seg = _Segment(zxid, bytearray(FILE_HEADER.pack(LOG_MAGIC, LOG_VERSION, 0)))
                pending.append(seg)
            elif pending:
                seg = pending[-1]
            else:
                seg = _Segment(None, bytearray())
                pending.append(seg)
            buf = seg.buf
            n = len(buf)
            buf += head
            buf += entry
            buf.append(EOR)
            seg.last_zxid = zxid
            seg.count += 1
            self._pending_bytes += len(buf) - n
            self.last_appended_zxid = zxid

    def roll(self) -> None:
        """Make the next append start a new log file (done when a snapshot is taken)."""
        with self._lock:
            self._roll = True

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def current_file(self) -> Path | None:
        return self._path

    # ---- worker side ----------------------------------------------------------------
    def sync(self) -> int:
        """Write and fdatasync everything appended so far; return the last durable zxid.

        Raises OSError on failure; the log then refuses further syncs (the server must
        stop acknowledging writes).
        """
        with self._io_lock:
            return self._sync_locked()

    def _sync_locked(self) -> int:
        if self._failed is not None:
            raise OSError(self._failed.errno, f"txn log unusable after earlier failure: {self._failed}")
        with self._lock:
            segs, self._pending = self._pending, []
            self._pending_bytes = 0
        if not segs:
            return self.last_synced_zxid
        try:
            for seg in segs:
                if seg.new_file is not None:
                    self._open_new(seg.new_file)
                elif self._fd < 0:
                    raise OSError(0, "txn log: append without an open file")
                self._write(seg.buf)
            if self.force_sync:
                fdatasync(self._fd)
        except OSError as e:
            self._failed = e
            log.error("txn log %s: write/sync failed: %s", self._path, e)
            raise
        self.syncs += 1
        self.last_synced_zxid = segs[-1].last_zxid
        return self.last_synced_zxid

    def _open_new(self, zxid: int) -> None:
        self._close_fd()
        path = self.log_dir / file_name(LOG_PREFIX, zxid)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        self._path = path
        self._pos = 0
        self._size = 0
        if self.force_sync:
            fsync_dir(self.log_dir)
        log.info("txn log: new file %s", path.name)

    def _write(self, data: bytearray) -> None:
        fd = self._fd
        end = self._pos + len(data)
        pa = self.pre_alloc_size
        if pa > 0 and end + _PAD_SLACK >= self._size:
            new_size = ((end + _PAD_SLACK) // pa + 1) * pa
            os.ftruncate(fd, new_size)  # sparse zero fill, as Java's padding
            self._size = new_size
        view = memoryview(data)
        pos = self._pos
        while view:
            n = os.pwrite(fd, view, pos)
            pos += n
            view = view[n:]
        self._pos = pos
        if pos > self._size:
            self._size = pos

    def _close_fd(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                if self.force_sync and self._failed is None:
                    fdatasync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        """Write and sync what is pending, then close the file."""
        with self._io_lock:
            try:
                if self._failed is None:
                    self._sync_locked()
            finally:
                self._close_fd()
                with self._lock:
                    self._roll = True

    def truncate(self, zxid: int) -> None:
        """Drop every logged txn with zxid > given zxid (ZAB TRUNC); next append rolls."""
        with self._io_lock:
            if self._failed is None:
                self._sync_locked()
            self._close_fd()
            self._path = None
            truncate_log(self.log_dir, zxid)
            with self._lock:
                self._roll = True
            self.last_synced_zxid = min(self.last_synced_zxid, zxid)
            self.last_appended_zxid = min(self.last_appended_zxid, zxid)


# ---- repair and truncation ------------------------------------------------------------
ADVICE = (
    "zkpy refuses to start rather than serve a history with acknowledged writes missing. "
    "Restore the data directory from a backup. For a member of an ensemble whose other "
    "members are healthy: move this server's data directory aside (keep it) and start the "
    "server on an empty one; it then resyncs from the leader (zkpy does not discard local "
    "data by itself: a txn only this server still holds would be lost).")


def _cut(path: Path, offset: int) -> None:
    if offset <= HEADER_SIZE:
        path.unlink()
    else:
        os.truncate(path, offset)


def _keep_bytes(path: Path, data: bytes, offset: int) -> Path:
    """Write the bytes about to be cut from path at offset to a side file (fsync'd)."""
    dest = path.with_name(f"{DISCARDED_PREFIX}{path.name}.tail-{offset}")
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            # the count first: compiled, a call inside a memoryview slice runs twice
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    return dest


def continues(last: int, first: int) -> bool:
    """Whether txns starting at zxid first leave nothing out after zxid last (the next
    zxid, counter 1 of a later epoch, or an overlap)."""
    return first <= last + 1 or follows(last, first)


def _where(last: int) -> str:
    return f"after zxid 0x{last:x}" if last >= 0 else "before any good txn"


def repair_log(log_dir: Path, from_zxid: int = 0, gapless: bool = True) -> list[str]:
    """Check the log directory and cut a torn tail; return what was done.

    Raises :class:`RecoveryError` (and changes nothing) for damage that is not a torn
    tail: see :func:`iter_repaired_log`.
    """
    actions: list[str] = []
    for _txn in iter_repaired_log(log_dir, from_zxid, actions, gapless):
        pass
    return actions


def iter_repaired_log(log_dir: Path, from_zxid: int = 0, actions: list[str] | None = None,
                      gapless: bool = True) -> Iterator[tuple[TxnHeader, bytes]]:
    """Every good txn with zxid > from_zxid, in order, checking the log on the way.

    Recovery reads the log this way: one pass, one checksum per entry.  Only files that
    can hold txns > from_zxid (:func:`~zkpy.persistence.logscan.first_needed` on) are
    read.  Once every txn has been yielded (and only then: a refusal leaves every file
    as it was), a torn tail -- a partly written entry or non-zero bytes after the end,
    with no valid entry after it in its file and no gap before the next file -- is cut
    off, its bytes kept in ``discarded-<file>.tail-<offset>``; files without any txn
    are removed (or set aside as ``discarded-<file>`` if they hold non-zero bytes).
    What was done is appended to actions.

    Raises :class:`RecoveryError`, as Apache ZooKeeper refuses to load such a log, for
    a checksum mismatch, an impossible entry length or a bad file header; for a damaged
    entry that valid entries follow; for an entry whose end marker or length alone is
    damaged; and for a gap: a log file (or, with gapless, the first txn after
    from_zxid, the snapshot) that does not continue from the txn before it.
    """
    log_dir = Path(log_dir)
    files = log_files(log_dir)
    files = files[first_needed(files, from_zxid):]
    skip = from_zxid if from_zxid > 0 else None
    last_good = from_zxid if gapless else -1
    deferred: list[tuple[str, Path, int, bytes, int]] = []  # what, file, offset, bytes kept, last zxid
    for z, path in files:
        tail = Tail()
        count = 0
        before = last_good
        buf = read_file(path)
        try:
            for _off, body in walk(buf, tail, skip):
                if count == 0 and not tail.skipped and before >= 0 and not continues(before, z):
                    raise _gap(path, z, before)
                count += 1
                hdr, rec = split_entry(body)
                last_good = hdr.zxid
                yield hdr, rec
            if tail.skipped:
                if count == 0 and before >= 0 and not continues(before, z):
                    raise _gap(path, z, before)
                count += tail.skipped
                last_good = max(last_good, tail.skipped_last)
            if tail.status == "zero" and nonzero_after(buf, tail.offset):
                tail.set("garbage", tail.offset, "non-zero bytes after the end of the data")
            if tail.clean and tail.status != "empty":
                if count == 0:
                    deferred.append(("remove", path, 0, b"", last_good))
            else:
                _judge(path, buf, tail, last_good)
                end = data_end(buf)
                kept = bytes(buf[tail.offset : end]) if end > tail.offset else b""
                deferred.append(("cut", path, tail.offset, kept, last_good))
        finally:
            if isinstance(buf, mmap.mmap):
                buf.close()
    done: list[str] = []
    for what, path, offset, kept, last in deferred:
        if what == "remove" or (not kept and offset <= HEADER_SIZE):
            path.unlink()
            done.append(f"removed {path.name}: no txns")
            log.info("txn log %s holds no txns; removed it", path)
            continue
        if offset <= HEADER_SIZE:  # no txn at all, but non-zero bytes: set the file aside whole
            dest = path.with_name(DISCARDED_PREFIX + path.name)
            os.replace(path, dest)
            msg = f"renamed {path.name} to {dest.name}: no good txn in it, only a torn or empty header"
        else:
            size = path.stat().st_size
            side = _keep_bytes(path, kept, offset) if kept else None
            _cut(path, offset)
            msg = (f"torn tail {_where(last)}: truncated {path.name} at offset {offset}, "
                   f"dropped {size - offset} bytes")
            if side is not None:
                msg += f", {len(kept)} of them non-zero, kept in {side.name}"
        log.warning("txn log %s: %s", path, msg)
        done.append(msg)
    if done:
        fsync_dir(log_dir)
        if actions is not None:
            actions += done


def _gap(path: Path, first: int, last: int) -> RecoveryError:
    return RecoveryError(
        f"txn log {path} starts at zxid 0x{first:x} but the history before it ends at zxid "
        f"0x{last:x}: txns 0x{last + 1:x} to 0x{first - 1:x} are missing (a log file deleted "
        f"or damaged?). {ADVICE}")


def _judge(path: Path, buf: bytes | mmap.mmap, tail: Tail, last: int) -> None:
    """Raise RecoveryError unless the non-clean end of this file is a torn tail."""
    off = tail.offset
    head = f"txn log {path} is damaged at offset {off} (the entry {_where(last)}): {tail.detail}"
    if tail.status == "empty":  # a zeroed header with bytes after it
        after = valid_entry_after(buf, 0, last)
        if after is not None:
            raise RecoveryError(f"{head}, and valid txns follow it (zxid 0x{after[1]:x} at offset "
                                f"{after[0]}). {ADVICE}")
        return
    if tail.status == "corrupt":
        after = valid_entry_after(buf, off, last)
        if after is not None:
            raise RecoveryError(f"{head}, and valid txns follow it (zxid 0x{after[1]:x} at offset "
                                f"{after[0]}): cutting the log there would roll back acknowledged "
                                f"writes. {ADVICE}")
        raise RecoveryError(f"{head}. The entry is complete (a torn write leaves its end "
                            "unwritten), so it was damaged after it was written; Apache ZooKeeper "
                            f"refuses such a log too (CRC check failed). {ADVICE}")
    after = valid_entry_after(buf, off, last)
    if after is not None:
        raise RecoveryError(f"{head}, and valid txns follow it (zxid 0x{after[1]:x} at offset "
                            f"{after[0]}): cutting the log there would roll back acknowledged "
                            f"writes. {ADVICE}")
    if tail.status == "partial" and complete_entry_at(buf, off):
        raise RecoveryError(f"{head}; but the entry is whole on disk (its checksum matches), only "
                            f"its length or end marker is damaged: not a torn write. {ADVICE}")


def truncate_log(log_dir: Path, zxid: int) -> None:
    """Cut the log just after the txn with the given zxid; delete all later files."""
    log_dir = Path(log_dir)
    files = log_files(log_dir)
    keep = -1
    for i, (z, _p) in enumerate(files):
        if z <= zxid:
            keep = i
    for _z, p in files[keep + 1 :]:
        p.unlink()
    if keep >= 0:
        path = files[keep][1]
        tail = Tail()
        cut = None
        buf = read_file(path)
        try:
            for off, body in walk(buf, tail):
                if TXN_HEADER.unpack_from(body, 0)[2] > zxid:
                    cut = off
                    break
            if cut is None:
                cut = tail.offset  # also drops a torn tail after the last good entry
        finally:
            if not isinstance(buf, bytes):
                buf.close()
        _cut(path, cut)
    fsync_dir(log_dir)

