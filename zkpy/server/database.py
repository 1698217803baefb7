"""The data directory of a running server: recovery, the txn log, periodic snapshots.

Start-up follows Apache ZooKeeper: recover (newest valid snapshot + the log after it),
then write a fresh snapshot so the directory always holds one (Java refuses a data
dir with logs but no snapshot).  While serving, a snapshot is triggered after
snapCount/2 + rand(snapCount/2) txns, as the reference randomises it: the log is
rolled and a forked child process writes the tree as it is at that moment, on another
core, while the server goes on (without fork: the node list is copied on the event
loop and serialised in a worker thread, a fuzzy snapshot as Java's).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import resource
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from zkpy.datatree.tree import DataTree
from zkpy.persistence.files import VERSION_DIR, file_name
from zkpy.persistence.recovery import purge, recover, take_snapshot
from zkpy.persistence.snapshot import no_gc, snapshot_items, write_snapshot, write_snapshot_items
from zkpy.persistence.txnlog import TxnLog
from zkpy.server.config import Config

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
        write: Callable[[], None]
        if hasattr(os, "fork"):
            pid = _fork_snapshot_writer(tree, path)
            write = partial(_wait_for_writer, pid)
        else:
            items = snapshot_items(tree)
            sessions = dict(tree.sessions)
            write = partial(write_snapshot_items, items, sessions, path, False)

        def done(fut: Any) -> None:
            self._snapshotting = False
            exc = fut.exception()
            if exc is not None:
                log.error("snapshot %s failed: %s", path, exc)
            else:
                log.info("snapshot %s written (%d znodes, %.2fs)", path.name, count,
                         time.monotonic() - started)

        fut = asyncio.get_running_loop().run_in_executor(self._executor, write)
        fut.add_done_callback(done)

    def purge(self) -> list[Path]:
        removed = purge(self.config.data_dir, self.config.data_log_dir, self.config.snap_retain_count)
        for p in removed:
            log.info("purged %s", p)
        return removed

    def stop_snapshots(self) -> None:
        """Wait for a snapshot being written; the txn log stays open."""
        self._executor.shutdown(wait=True)

    def close(self) -> None:
        self.stop_snapshots()
        self.txn_log.close()


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


def _wait_for_writer(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise OSError(f"snapshot writer process {pid} exited with status {code}")


def open_database(config: Config) -> Database:
    """Recover the data directory and open the txn log (fails with a clear message)."""
    started = time.monotonic()
    # The recovered tree is permanent: frozen out of every future collection before the
    # GC runs again (its first collection would otherwise walk the million new objects).
    with no_gc():
        tree, last = recover(config.data_dir, config.data_log_dir)
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
