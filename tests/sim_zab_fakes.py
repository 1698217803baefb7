"""What tests/sim_zab_peer.py plugs into zkpy.zab.executors, in place of peer.py's files,
streams and server core: `DiskView` is a Disk (peer.FileDisk), `Link` a Link
(peer.QuorumStream), `Core` a Pipeline (server/core.py's ZooKeeperServer).  Small
honest classes over the world of tests/sim_zab_world.py.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.sim_zab_world import Entry, Stats, Tree, TxnLogFake, decode_stream, encode_stream, hexz
from zkpy.jute.txns import TXN_HEADER, TxnHeader, decode_txn
from zkpy.zab.packets import QuorumPacket

if TYPE_CHECKING:
    from tests.sim_zab_world import Conn, Node, World


class DiskView:
    """A member's Disk as zkpy.zab.executors sees it (peer.FileDisk): its dataDir and the
    txn log of its current role.  `crash_point(where)` runs after each durable write: the
    simulator may crash the member there, inside an action batch."""

    def __init__(self, node: Node, crash_point: Callable[[Node, str], None]) -> None:
        self.node = node
        self.disk = node.disk
        self.crash_point = crash_point

    def _log(self) -> TxnLogFake:
        assert self.node.txn_log is not None
        return self.node.txn_log

    def write_epoch(self, name: str, epoch: int) -> None:
        if name == "acceptedEpoch":
            self.disk.accepted = epoch
        else:
            self.disk.current = epoch
        self.crash_point(self.node, f"after persisting {name}")

    def sync_log(self) -> None:
        self._log().sync()
        self.crash_point(self.node, "after syncing the txns of NEWLEADER")

    def truncate_log(self, zxid: int) -> None:
        self._log().truncate(zxid)
        self.crash_point(self.node, f"after truncating to {hexz(zxid)}")

    def roll_log(self) -> None:
        self._log().roll()

    def take_snapshot(self, tree: Tree) -> None:
        self.disk.snapshots[tree.last] = tuple(tree.applied)
        self.crash_point(self.node, f"after a snapshot at {hexz(tree.last)}")

    def ensure_snapshot(self, tree: Tree) -> None:
        if not self.disk.snapshots:
            self.disk.snapshots[tree.last] = tuple(tree.applied)

    def recover(self) -> Tree:
        return self.disk.recover()

    def replay_log(self, tree: Tree) -> int:
        count = 0
        for z, p in list(self.disk.iter_log(tree.last)):
            tree.apply(z, p)
            count += 1
        return count

    def encode_snapshot(self, tree: Tree) -> bytes:
        return encode_stream(tree)

    def decode_snapshot(self, stream: bytes, zxid: int) -> Tree:
        return decode_stream(stream, zxid)


class Link:
    """One direction of a Conn as the executors' Link (peer.QuorumStream.send)."""

    __slots__ = ("world", "conn", "dest")

    def __init__(self, world: World, conn: Conn, dest: int) -> None:
        self.world, self.conn, self.dest = world, conn, dest

    def send(self, pkt: QuorumPacket, raw: bytes = b"", encoded: bytes | None = None) -> None:
        self.world.tcp_send(self.conn, self.dest, pkt, raw, encoded)


class SessionFake:
    """sessions.Session: what the leader knows of a client session."""

    __slots__ = ("timeout", "closing", "owner")

    def __init__(self, timeout: int) -> None:
        self.timeout = timeout
        self.closing = False
        self.owner: int | None = None


class SessionsFake:
    """sessions.SessionTracker, without expiry (only the leader expires sessions)."""

    def __init__(self, stats: Stats) -> None:
        self.sessions: dict[int, SessionFake] = {}
        self.stats = stats

    def add(self, sid: int, timeout: int) -> SessionFake:
        s = self.sessions[sid] = SessionFake(timeout)
        return s

    def touch(self, sid: int, now_ms: int) -> bool:
        s = self.sessions.get(sid)
        if s is None or s.closing:
            return False
        self.stats.touches += 1
        return True


class Core:
    """server/core.py's ZooKeeperServer as the executors' Pipeline: the queue of logged txns
    a commit applies, group commit (one fsync in flight, completing after a random delay,
    then `zab.persisted(upto)`), sessions, and what a client's requests turn into
    (`World.forwarded`, `World.revalidated`, `World.sync_released`)."""

    def __init__(self, world: World, node: Node, tree: Tree, txn_log: TxnLogFake) -> None:
        self.world = world
        self.node = node
        self.tree = tree
        self.txn_log = txn_log
        self.zab: Any = None  # the executor
        self.queue: deque[Entry] = deque()  # logged, not yet applied
        self.zxid = tree.last
        self.last_appended = self.zxid
        self.durable = -1
        self.flushing = False
        self.serving = False
        self.write_error: str | None = None
        self.touched: dict[int, int] = {}
        self.sessions = SessionsFake(world.stats)
        self.commits = 0

    def now_ms(self) -> int:
        return self.world.now

    def commit(self, upto: int) -> None:
        q, tree, n = self.queue, self.tree, 0
        while q and q[0][0] <= upto:
            tree.apply(*q.popleft())
            n += 1
        self.commits += 1
        self.world.committed(self.node, n)

    def append(self, hdr: TxnHeader, payload: bytes) -> None:
        """Leader (core._append): log, propose, queue, group commit."""
        self.zxid = hdr.zxid
        self.txn_log.append(hdr.zxid, payload)
        self.zab.propose(hdr, payload)
        self.last_appended = hdr.zxid
        self.queue.append((hdr.zxid, payload))
        self.request_flush()

    def log_proposal(self, payload: bytes) -> int:
        hdr = TxnHeader(*TXN_HEADER.unpack_from(payload))
        decode_txn(hdr.type, payload[TXN_HEADER.size:])
        self.txn_log.append(hdr.zxid, payload)
        self.zxid = max(self.zxid, hdr.zxid)
        self.last_appended = self.zxid
        self.queue.append((hdr.zxid, payload))
        self.request_flush()
        return hdr.zxid

    def request_flush(self) -> None:
        if self.flushing or self.last_appended <= self.durable:
            return
        self.flushing = True
        batch = self.txn_log.begin_sync()
        w = self.world
        w.push(w.now + w.rand(*w.fsync_delay), self.fsync_done, batch, self.last_appended)

    def fsync_done(self, batch: list[list[Any]], upto: int) -> None:
        if self.node.core is not self:
            return  # crashed (the batch is lost) or retired (close() synced it)
        self.txn_log.end_sync(batch)
        self.flushing = False
        self.durable = upto
        self.zab.persisted(upto)
        if self.node.core is self:
            self.request_flush()

    def forwarded(self, sid: int, cxid: int, op: int, body: bytes, auth: list[tuple[str, str]],
                  owner: int) -> None:
        self.world.forwarded(self.node, sid, op, body, owner)

    def revalidated(self, sid: int, valid: bool) -> None:
        self.world.revalidated(self.node, sid, valid)

    def sync_released(self) -> None:
        self.world.sync_released(self.node)

    def flush_dirty(self) -> None:
        pass

    def replace_tree(self, tree: Tree) -> None:
        if self.serving:
            self.world.fail(f"server {self.node.sid} replaces its tree while serving")
        self.tree = tree
        self.zxid = tree.last


# ---- members and connections -----------------------------------------------------------------
