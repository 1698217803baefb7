"""Startup recovery and purge (Apache ZooKeeper's FileTxnSnapLog and PurgeTxnLog rules).

Recovery: load the newest snapshot that loads (valid = >= 10 bytes ending in ustring
"/", then CRC-checked; older ones are tried on failure), then replay every logged txn
with zxid > the snapshot's zxid.  The log is checked as it is read
(:func:`zkpy.persistence.txnlog.iter_repaired_log`): damage that valid data follows, a
complete entry failing its checksum, or a gap in the zxids stops recovery with a
:class:`RecoveryError` naming the file, the offset and the zxid; only a torn tail (the
last, partly written entries after a crash) is cut off, its bytes kept aside.  Creates,
most of a log tail, are replayed straight from their records (:func:`replay_create`).

As Java: no snapshot but txns in the logs is refused unless
``zookeeper.snapshot.trust.empty=true``; a complete entry failing its checksum is
refused; an entry without its end marker ends the log.  Differences from Java, on
purpose: a damaged entry that valid entries follow in its file, or a log file that does
not continue from the txn before it (a gap), is refused (Java ends the file there, or
replays across the gap); entries the snapshot already covers are stepped over by their
framing without checksums (damage there loses nothing); the torn tail is cut (its bytes
kept) where Java leaves it and logs to a new file; valid-looking snapshots that all fail
to load stop recovery rather than silently starting from an older state.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from zkpy.datatree.quota import QUOTA_ROOT
from zkpy.datatree.tree import DataTree, Znode, intern_acl
from zkpy.jute.codec import MAX_FIELD_LEN, JuteError, Reader
from zkpy.jute.constants import OpCode
from zkpy.jute.records import ACL, read_acl_list
from zkpy.jute.txns import TxnHeader, decode_txn
from zkpy.persistence.files import (
    VERSION_DIR,
    PersistenceError,
    RecoveryError,
    ensure_dir,
    file_name,
    log_files,
    snapshot_files,
    valid_snapshots,
)
from zkpy.persistence.snapshot import SnapshotError, load_snapshot, write_snapshot
from zkpy.persistence.txnlog import iter_repaired_log, last_logged_zxid
from zkpy.server.metrics import METRICS

log = logging.getLogger("zkpy.persistence")

MAX_SNAPSHOTS_TRIED = 100  # as Java's FileSnap.deserialize
MIN_RETAIN = 3  # PurgeTxnLog refuses fewer
_CREATES = (OpCode.CREATE, OpCode.CREATE2)
_INT = struct.Struct(">i")
_CREATE_END = struct.Struct(">?i")  # ephemeral, parentCVersion
_acl_lists: dict[bytes, tuple[ACL, ...]] = {}  # encoded ACL vector -> interned tuple


def version_dirs(data_dir: Path, log_dir: Path | None = None) -> tuple[Path, Path]:
    """The version-2 snapshot and log directories, created if missing."""
    snap_dir = ensure_dir(Path(data_dir) / VERSION_DIR)
    txn_dir = ensure_dir(Path(log_dir if log_dir is not None else data_dir) / VERSION_DIR)
    return snap_dir, txn_dir


def load_newest_snapshot(snap_dir: Path, progress_bytes: int = 64 << 20) -> tuple[DataTree, int] | None:
    """The newest snapshot that loads, or None if there is no valid-looking snapshot.
    A snapshot file of at least progress_bytes logs its progress every tenth."""
    candidates = valid_snapshots(snap_dir, MAX_SNAPSHOTS_TRIED)
    for z, path in snapshot_files(snap_dir):
        if (z, path) not in candidates and not path.name.endswith(".snappy"):
            log.info("ignoring snapshot %s: fails the validity test (torn or empty)", path)
    errors = []
    for z, path in candidates:
        try:
            tree = load_snapshot(path, z, _snapshot_progress(path, progress_bytes))
        except (SnapshotError, OSError) as e:
            log.warning("cannot load snapshot %s (%s); trying an older one", path, e)
            errors.append(f"{path.name}: {e}")
            continue
        log.info("loaded snapshot %s: %d znodes, %d sessions", path, len(tree.nodes), len(tree.sessions))
        return tree, z
    if errors:
        raise RecoveryError(
            f"no snapshot in {snap_dir} could be loaded ({'; '.join(errors)}); refusing to start "
            "from an older state. Restore the snapshots from a backup; to rebuild from the txn "
            "logs alone (only if they go back to the first txn), move the damaged snapshots "
            "away and set zookeeper.snapshot.trust.empty=true.")
    return None


def _snapshot_progress(path: Path, progress_bytes: int) -> Callable[[int, int, int], None] | None:
    try:
        if path.stat().st_size < progress_bytes:
            return None
    except OSError:
        return None

    def progress(offset: int, size: int, znodes: int) -> None:
        log.info("loading %s: %d%% (%d znodes, %d of %d MB)", path.name, offset * 100 // size,
                 znodes, offset >> 20, size >> 20)

    return progress


def recover(data_dir: Path, log_dir: Path | None = None, trust_empty: bool = False,
            progress_bytes: int = 64 << 20, progress_txns: int = 100000) -> tuple[DataTree, int]:
    """Rebuild the tree from ``<data_dir>/version-2`` and ``<log_dir>/version-2``.

    Returns (tree, last zxid): the highest zxid in the snapshot name or the replayed
    log.  Raises PersistenceError if a directory cannot be created or read, and
    RecoveryError for damaged data (see :func:`~zkpy.persistence.txnlog.iter_repaired_log`)
    or for txn logs without any snapshot unless trust_empty
    (``zookeeper.snapshot.trust.empty``), as Java's FileTxnSnapLog.restore.  Progress is
    logged while a snapshot of at least progress_bytes loads and every progress_txns
    replayed txns (``zkpy.progress.snapshotBytes`` / ``zkpy.progress.txns``).
    """
    snap_dir, txn_dir = version_dirs(data_dir, log_dir)
    started = time.monotonic()
    try:
        found = load_newest_snapshot(snap_dir, progress_bytes)
    except PermissionError as e:
        raise PersistenceError(f"cannot read {e.filename or snap_dir}: {e.strerror}") from e
    if found is None:
        tree, snap_zxid = DataTree(), 0
        logged = last_logged_zxid(txn_dir) if log_files(txn_dir) else -1
        if logged >= 0 and not trust_empty:
            raise RecoveryError(
                f"No snapshot found, but there are log entries (up to zxid 0x{logged:x} in "
                f"{txn_dir}): refusing to start, as Apache ZooKeeper does. Without a snapshot "
                "the logs can only rebuild the tree if they go back to the very first txn; the "
                f"snapshots in {snap_dir} may have been deleted. Restore them from a backup, or, "
                "if the logs are known to hold the whole history (an upgrade), start once with "
                "zookeeper.snapshot.trust.empty=true (in zoo.cfg or as "
                "-Dzookeeper.snapshot.trust.empty=true in SERVER_JVMFLAGS).")
        if logged >= 0:
            log.warning("No snapshot found, but there are log entries (up to zxid 0x%x in %s). "
                        "This should only be allowed during upgrading: replaying the logs from "
                        "zxid 0 (zookeeper.snapshot.trust.empty=true)", logged, txn_dir)
    else:
        tree, snap_zxid = found
    loaded = time.monotonic()
    try:
        # checked on the way; a torn tail is cut once every txn has been read
        count, replayed_to = replay(tree, iter_repaired_log(txn_dir, snap_zxid,
                                                            gapless=found is not None),
                                       progress_txns=progress_txns)
    except PermissionError as e:
        raise PersistenceError(f"cannot read {e.filename or txn_dir}: {e.strerror}") from e
    last = max(snap_zxid, replayed_to)
    tree.last_processed_zxid = last
    done = time.monotonic()
    # ZooKeeper's start-up metrics (its dbinittime is this whole load)
    METRICS.observe("startup_snap_load_time", int((loaded - started) * 1000))
    METRICS.observe("startup_txns_load_time", int((done - loaded) * 1000))
    METRICS.observe("startup_txns_loaded", count)
    METRICS.observe("dbinittime", int((done - started) * 1000))
    log.info("recovered to zxid 0x%x (snapshot 0x%x + %d logged txns)", last, snap_zxid, count)
    return tree, last


def replay(tree: DataTree, txns: Iterable[tuple[TxnHeader, bytes]],
           direct_creates: bool = True, progress_txns: int = 0) -> tuple[int, int]:
    """Apply logged (header, record) txns to tree as recovery does, building no Stats
    for replies; returns (count, zxid of the last one or -1).  direct_creates: creates
    take :func:`replay_create` (only for a tree nobody watches).  progress_txns > 0:
    log a line every that many txns."""
    count, last = 0, -1
    report_at = progress_txns if progress_txns > 0 else -1
    tree.replies = False
    try:
        for hdr, rec in txns:
            if not (direct_creates and hdr.type in _CREATES and replay_create(tree, hdr, rec)):
                tree.apply(hdr, decode_txn(hdr.type, rec))
            last = hdr.zxid
            count += 1
            if count == report_at:
                log.info("replayed %d txns (to zxid 0x%x)", count, last)
                report_at += progress_txns
    finally:
        tree.replies = True
    return count, last


def replay_create(tree: DataTree, hdr: TxnHeader, rec: bytes) -> bool:
    """Replay a create/create2 record as ``tree.apply(hdr, decode_txn(hdr.type, rec))``
    does at recovery (a tree without watches, nobody reading the result), straight from
    the record's bytes: a log tail is mostly creates, and this takes half the time.

    Returns False, having changed nothing, for a record it does not handle (a null or
    out-of-range field, no parentCVersion as in old logs): apply that one the general way.
    """
    end = len(rec) - _CREATE_END.size
    try:
        n = _INT.unpack_from(rec, 0)[0]
        q = 4 + n
        dn = _INT.unpack_from(rec, q)[0]
        ephemeral, pcv = _CREATE_END.unpack_from(rec, end)
    except struct.error:
        return False
    a = q + 4 + (dn if dn > 0 else 0)
    if not 0 <= n <= MAX_FIELD_LEN or not -1 <= dn <= MAX_FIELD_LEN or a + 4 > end:
        return False
    acl_bytes = rec[a:end]  # the ACL vector is all that lies between the data and the end
    acl = _acl_lists.get(acl_bytes)
    if acl is None:
        r = Reader(acl_bytes)
        try:
            acl_list = read_acl_list(r)
        except JuteError:
            return False
        if acl_list is None or r.remaining():
            return False
        acl = intern_acl(acl_list)
        if len(_acl_lists) < 1024:
            _acl_lists[acl_bytes] = acl
    path = rec[4:q].decode("utf-8", "replace")  # as the txn decoder
    # DataTree._create from here
    i = path.rfind("/")
    nodes = tree.nodes
    parent = nodes.get(path[:i] or "/")
    if parent is None:
        return True  # NONODE
    zxid = hdr.zxid
    if pcv == -1:
        pcv = parent.cversion + 1
    if pcv > parent.cversion:
        parent.cversion = pcv
        parent.pzxid = zxid
    name = path[i + 1 :]
    children = parent.children
    if name in children:
        return True  # NODEEXISTS: a replay over a fuzzy snapshot
    data = None if dn < 0 else rec[q + 4 : a]
    owner = hdr.client_id if ephemeral else 0
    nodes[path] = Znode(data, acl, zxid, hdr.time, owner)
    if isinstance(children, set):  # Znode.add_child
        children.add(name)
    else:  # NO_CHILDREN, the only frozenset a node holds
        parent.children = {name}
    if owner:
        tree._index_owner(path, owner)
    quotas = tree.quotas
    if quotas.paths or path.startswith(QUOTA_ROOT):
        quotas.created(path, len(data) if data else 0)
    return True


def take_snapshot(tree: DataTree, data_dir: Path, fsync: bool = True) -> Path:
    """Write ``snapshot.<last processed zxid>`` of tree into ``<data_dir>/version-2``."""
    snap_dir = ensure_dir(Path(data_dir) / VERSION_DIR)
    path = snap_dir / file_name("snapshot", tree.last_processed_zxid)
    write_snapshot(tree, path, fsync)
    return path


def purge(data_dir: Path, log_dir: Path | None, retain_count: int) -> list[Path]:
    """Delete old snapshots and logs, keeping what the newest retain_count snapshots need.

    Z = zxid of the oldest of the newest ``retain_count`` valid snapshots.  Deleted:
    snapshots with zxid < Z, and log files with start zxid < Z except the newest log
    file whose start zxid <= Z (it may hold the txns right after Z).
    """
    if retain_count < MIN_RETAIN:
        raise ValueError(f"retain_count must be at least {MIN_RETAIN}")
    snap_dir = Path(data_dir) / VERSION_DIR
    txn_dir = Path(log_dir if log_dir is not None else data_dir) / VERSION_DIR
    kept = valid_snapshots(snap_dir, retain_count)
    if not kept:
        return []
    z = kept[-1][0]
    logs = log_files(txn_dir)
    keep_log = max((lz for lz, _p in logs if lz <= z), default=None)
    doomed = [p for sz, p in snapshot_files(snap_dir) if sz < z]
    doomed += [p for lz, p in logs if lz < z and lz != keep_log]
    removed = []
    for p in doomed:
        try:
            p.unlink()
            removed.append(p)
            log.info("purge: removed %s", p)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("purge: cannot remove %s: %s", p, e)
    return removed
