"""The data directory of a running server: recovery, the txn log, periodic snapshots.

Start-up follows Apache ZooKeeper: recover (newest valid snapshot + the log after it),
then write a fresh snapshot so the directory always holds one (Java refuses a data
dir with logs but no snapshot).  While serving, a snapshot is triggered after
snapCount/2 + rand(snapCount/2) txns, as the reference randomises it: the log is
rolled and a forked child process writes the tree as it is at that moment, on another
core, while the server goes on (without fork: the node list is copied on the event
loop and serialised in a worker thread, a fuzzy snapshot as Java's).

At a clean shutdown (zkpy.snapshotOnShutdown, on by default) the tree is written once
more, fsync'd, if the log holds txns the newest snapshot lacks, so that the next start
loads it and replays no log tail.  Nothing depends on it: after a kill the log has
every txn, as always.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import resource
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from zkpy.datatree.tree import DataTree
from zkpy.persistence.files import VERSION_DIR, file_name, valid_snapshots
from zkpy.persistence.recovery import recover, take_snapshot
from zkpy.persistence.snapshot import no_gc, snapshot_items, write_snapshot, write_snapshot_items
from zkpy.persistence.txnlog import TxnLog
from zkpy.server.config import Config
from zkpy.server.metrics import METRICS

log = logging.getLogger("zkpy.persistence")


class Database:
    """The tree recovered from disk plus the txn log new writes go to."""

    def __init__(self, config: Config, tree: DataTree, txn_log: TxnLog) -> None:
        self.config = config
        self.tree = tree
        self.txn_log = txn_log
        self.snap_dir = config.data_dir / VERSION_DIR
        self._since_snapshot = 0
        self._roll_at = self._next_roll()
        self._snapshotting = False
        self._writer: _Writer | None = None  # the forked child writing a snapshot, if any
        self._written: asyncio.Future[int | None] | None = None  # done when that snapshot is
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zkpy-snapshot")
        # Java snapshots right after loading; we do it once serving has started, in the
        # background (the log still holds everything the snapshot would)
        self.startup_snapshot = False
        self.core: Any = None

    def _next_roll(self) -> int:
        half = max(1, self.config.snap_count // 2)
        return half + random.randrange(half)

    def attach(self, core: Any) -> None:
        """Count applied txns in the server core to trigger snapshots."""
        self.core = core
        core.on_applied = self._applied
        if self.startup_snapshot:
            self.startup_snapshot = False
            self.snapshot_in_background()

    def _applied(self, count: int) -> None:
        self._since_snapshot += count
        if self._since_snapshot >= self._roll_at:
            self.snapshot_in_background()

    def snapshot_in_background(self) -> None:
        if self._snapshotting:
            log.warning("too busy to snapshot: the previous one is still being written")
            return
        self._since_snapshot = 0
        self._roll_at = self._next_roll()
        self.txn_log.roll()
        tree = self.core.tree if self.core is not None else self.tree  # a learner's tree can be replaced
        zxid = tree.last_processed_zxid
        count = len(tree.nodes)
        path = self.snap_dir / file_name("snapshot", zxid)
        self._snapshotting = True
        started = time.monotonic()
        write: Callable[[], int | None]  # the file size when written in-process (unused)
        writer = None
        if hasattr(os, "fork"):
            writer = _Writer(_fork_snapshot_writer(tree, path), zxid, path)
            write = partial(_wait_for_writer, writer)
        else:
            items = snapshot_items(tree)
            sessions = dict(tree.sessions)
            write = partial(write_snapshot_items, items, sessions, path, False)

        def done(fut: Any) -> None:
            self._snapshotting = False
            self._writer = self._written = None
            exc = fut.exception()
            if writer is not None and writer.abandoned:
                log.info("snapshot %s abandoned: the shutdown snapshot supersedes it", path.name)
            elif exc is not None:
                log.error("snapshot %s failed: %s", path, exc)
            else:
                took = time.monotonic() - started
                METRICS.snapshottime.add(int(took * 1000))
                log.info("snapshot %s written (%d znodes, %.2fs)", path.name, count, took)

        fut = asyncio.get_running_loop().run_in_executor(self._executor, write)
        fut.add_done_callback(done)
        self._writer, self._written = writer, fut

    def stop_snapshots(self) -> None:
        """Wait for a snapshot being written; the txn log stays open."""
        self._executor.shutdown(wait=True)

    async def snapshot_at_shutdown(self) -> Path | None:
        """Write the tree as a snapshot if the newest one lacks some of its txns.

        Call once every appended txn is synced and applied and nothing new can arrive.
        A background snapshot already as new as the tree is waited for (no second one
        is needed); an older one is stopped, its work superseded.  Returns the new file,
        or None if none was needed or the write failed (a warning: the log still holds
        every txn).
        """
        tree = self.core.tree if self.core is not None else self.tree
        written, writer = self._written, self._writer
        if writer is not None and writer.zxid < tree.last_processed_zxid:
            writer.abandon()
        if written is not None:
            await asyncio.wait([written])
        if writer is not None and writer.abandoned:
            writer.remove_unfinished()
        return write_shutdown_snapshot(tree, self.config.data_dir)

    def close(self) -> None:
        self.stop_snapshots()
        self.txn_log.close()


def write_shutdown_snapshot(tree: DataTree, data_dir: Path) -> Path | None:
    """An fsync'd ``snapshot.<tree's zxid>`` unless a valid snapshot that new exists.

    A failure to write is logged as a warning and returns None.
    """
    zxid = tree.last_processed_zxid
    newest = valid_snapshots(Path(data_dir) / VERSION_DIR, 1)
    if newest and newest[0][0] >= zxid:
        return None
    started = time.monotonic()
    try:
        path = take_snapshot(tree, data_dir, fsync=True)
    except OSError as e:
        log.warning("no snapshot at shutdown (%s); the next start replays the txn log instead", e)
        return None
    log.info("shutdown snapshot %s written (%d znodes, %.2fs)", path.name, len(tree.nodes),
             time.monotonic() - started)
    return path


class _Writer:
    """A forked snapshot writer: its pid stays ours to signal until it is reaped."""

    def __init__(self, pid: int, zxid: int, path: Path) -> None:
        self.pid = pid
        self.zxid = zxid
        self.path = path
        self.lock = threading.Lock()  # reaping vs. signalling: a reaped pid may be reused
        self.reaped = False
        self.abandoned = False

    def abandon(self) -> None:
        """Kill the writer, if that can be done safely (else it finishes)."""
        if not _CAN_WAIT_UNREAPED:
            return  # without waitid the pid is not ours to signal while we wait: let it finish
        with self.lock:
            if self.reaped:
                return
            self.abandoned = True
            os.kill(self.pid, signal.SIGKILL)

    def remove_unfinished(self) -> None:
        """After an abandoned writer is reaped: remove the temp file it left."""
        try:
            self.path.with_name(f"tmp-{self.path.name}").unlink()  # as snapshot._write_file names it
        except FileNotFoundError:
            pass


_CAN_WAIT_UNREAPED = hasattr(os, "waitid") and hasattr(os, "WNOWAIT")


def _fork_snapshot_writer(tree: DataTree, path: Path) -> int:
    """Fork a child that writes tree to path and exits; returns its pid.

    The child works on a copy-on-write image of the whole process, frozen at the fork:
    an exact snapshot as of the tree's last applied zxid, serialised on another core
    while this process goes on serving (a thread would compete for the GIL).  Pages the
    parent changes meanwhile, and pages the child touches, are copied: memory grows by
    up to the tree's size while the child runs.
    """
    pid = os.fork()
    if pid != 0:
        return pid
    status = 1
    try:
        gc.disable()
        # only the snapshot file matters here: dropping the copies of client sockets lets
        # the parent's closes take effect at once
        os.closerange(3, _max_fd())
        write_snapshot(tree, path, fsync=False)
        status = 0
    except BaseException as e:  # noqa: BLE001 - report and leave, whatever it was
        os.write(2, f"zkpy: snapshot writer for {path} failed: {e!r}\n".encode())
    finally:
        os._exit(status)


def _max_fd() -> int:
    try:
        return max(256, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    except (OSError, ValueError):
        return 65536


def _wait_for_writer(writer: _Writer) -> None:
    if _CAN_WAIT_UNREAPED:
        # wait for the exit without reaping, so that abandon() never signals a reused pid
        os.waitid(os.P_PID, writer.pid, os.WEXITED | os.WNOWAIT)
    with writer.lock:
        _, status = os.waitpid(writer.pid, 0)
        writer.reaped = True
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise OSError(f"snapshot writer process {writer.pid} exited with status {code}")


def open_database(config: Config) -> Database:
    """Recover the data directory and open the txn log (fails with a clear message)."""
    started = time.monotonic()
    # The recovered tree is permanent: frozen out of every future collection before the
    # GC runs again (its first collection would otherwise walk the million new objects).
    with no_gc():
        tree, last = recover(config.data_dir, config.data_log_dir, config.snapshot_trust_empty,
                             config.progress_snapshot_bytes, config.progress_txns)
        snap_dir = config.data_dir / VERSION_DIR
        fresh = not any(snap_dir.glob("snapshot.*"))
        if fresh:
            take_snapshot(tree, config.data_dir, fsync=True)  # as Java: a data dir always has one
        gc.freeze()
    txn_log = TxnLog(config.data_log_dir / VERSION_DIR, config.pre_alloc_size_kb * 1024,
                     config.force_sync)
    db = Database(config, tree, txn_log)
    db.startup_snapshot = not fresh and not (snap_dir / file_name("snapshot", last)).exists()
    log.info("database ready at zxid 0x%x in %.2fs", last, time.monotonic() - started)
    return db
