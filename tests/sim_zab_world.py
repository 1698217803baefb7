"""The world tests/sim_zab.py runs ZAB in: fake disk, network, clock, and the checker.

A member's data dir and txn log (`Disk`, `TxnLogFake`, `Tree`), each mirroring the real
module named in its docstring, plus `World`: the seeded event loop, the network model and
the committed history every member is checked against.  Nothing here knows the ZAB
cores; tests/sim_zab_fakes.py adapts these to the executors' interfaces,
tests/sim_zab_peer.py plays QuorumPeer and tests/sim_zab.py holds the scenarios.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zkpy.election.messages import ServerState
from zkpy.jute.codec import Reader, Writer
from zkpy.jute.txns import TXN_HEADER, TxnHeader
from zkpy.server.quorum_config import QuorumConfig
from zkpy.zab.packets import PacketReader, PacketType, QuorumPacket

if TYPE_CHECKING:
    from tests.sim_zab_fakes import Core, DiskView, Link

LOOKING, FOLLOWING, LEADING, OBSERVING = (ServerState.LOOKING, ServerState.FOLLOWING,
                                          ServerState.LEADING, ServerState.OBSERVING)
FIN = None  # a TCP FIN/RST in a connection's queue
TO_LEARNER, TO_LEADER = 0, 1  # a connection's directions, named by where they lead
STALL_POLL = 50  # ms between looks of a stalled TCP direction for the partition to heal

Entry = tuple[int, bytes]  # (zxid, TxnHeader + record)


class InvariantViolation(AssertionError):
    pass


class Crashed(Exception):
    """Unwinds the event that crashed its member in the middle of an action batch."""


class StartupRefused(Exception):
    """load_epochs would raise EpochError: the server cannot start without an operator."""


def hexz(z: int) -> str:
    return f"{z >> 32}:{z & 0xFFFFFFFF}" if z >= 0 else str(z)


def fmt(e: Entry) -> str:
    """zxid#cxid: the cxid tells proposals of the same zxid apart."""
    return f"{hexz(e[0])}#{TxnHeader(*TXN_HEADER.unpack_from(e[1])).cxid}"


# ---- disk ------------------------------------------------------------------------------------


class LogFile:
    """One `log.<start zxid>` file; records are [zxid, payload, durable]."""

    __slots__ = ("start", "records")

    def __init__(self, start: int) -> None:
        self.start = start
        self.records: list[list[Any]] = []


class Tree:
    """The data tree, reduced to what matters here: the txns applied, in order."""

    __slots__ = ("applied", "last")

    def __init__(self, applied: list[Entry], last: int) -> None:
        self.applied = applied
        self.last = last  # last_processed_zxid

    @property
    def last_processed_zxid(self) -> int:
        return self.last

    @last_processed_zxid.setter
    def last_processed_zxid(self, zxid: int) -> None:
        self.last = zxid

    def apply(self, zxid: int, payload: bytes) -> None:
        self.applied.append((zxid, payload))
        if zxid > self.last:  # DataTree.apply
            self.last = zxid


class Disk:
    """A member's dataDir: durable log records, snapshots and the epoch files survive a crash."""

    def __init__(self) -> None:
        self.files: list[LogFile] = []
        self.snapshots: dict[int, tuple[Entry, ...]] = {}  # snapshot.<zxid>, always fsynced
        self.accepted: int | None = None
        self.current: int | None = None
        # reconfigEnabled: the committed config, zoo.cfg.dynamic.<version> (rewritten at
        # each activation, kept across crashes)
        self.config: QuorumConfig | None = None

    def sorted_files(self) -> list[LogFile]:
        return sorted(self.files, key=lambda f: f.start)  # files.log_files: by the name's zxid

    def lose_unsynced(self) -> None:
        for f in self.files:
            f.records = [r for r in f.records if r[2]]
        self.files = [f for f in self.files if f.records]

    def iter_log(self, from_zxid: int) -> Iterator[Entry]:
        """logscan.iter_log: from the newest file starting <= from_zxid, txns > from_zxid."""
        files = self.sorted_files()
        start = 0
        for i, f in enumerate(files):
            if f.start <= from_zxid:
                start = i
        for f in files[start:]:
            for z, p, _ in f.records:
                if z > from_zxid:
                    yield z, p

    def newest_snapshot(self) -> int:
        return max(self.snapshots, default=0)

    def recover(self) -> Tree:
        """recovery.recover: newest snapshot, then every logged txn after its zxid."""
        self.files = [f for f in self.files if f.records]  # repair_log removes empty files
        snap = max(self.snapshots, default=None)
        tree = Tree(list(self.snapshots[snap]), snap) if snap is not None else Tree([], 0)
        last = tree.last
        for z, p in self.iter_log(tree.last):
            tree.apply(z, p)
            last = z
        tree.last = last
        return tree

    def truncate(self, zxid: int) -> None:
        """txnlog.truncate_log: cut after zxid in the newest file starting <= zxid, drop later files."""
        files = self.sorted_files()
        keep = -1
        for i, f in enumerate(files):
            if f.start <= zxid:
                keep = i
        doomed = {id(f) for f in files[keep + 1:]}
        if keep >= 0:
            f = files[keep]
            for i, r in enumerate(f.records):
                if r[0] > zxid:
                    del f.records[i:]
                    break
            if not f.records:
                doomed.add(id(f))
        self.files = [f for f in self.files if id(f) not in doomed]

    def load_epochs(self, last_zxid: int) -> tuple[int, int]:
        """epochs.load_epochs (writes are atomic renames here, so no currentEpoch.tmp remains)."""
        ze = last_zxid >> 32
        if self.current is None:
            self.current = ze
        elif ze > self.current:
            if self.accepted is None or self.accepted < ze:
                raise StartupRefused(f"the data's epoch {ze} is newer than currentEpoch {self.current}")
            self.current = ze  # a crash inside NEWLEADER, after its data was made durable
        if self.accepted is None:
            self.accepted = ze
        if self.accepted < self.current:
            raise StartupRefused(f"acceptedEpoch {self.accepted} < currentEpoch {self.current}")
        return self.accepted, self.current


class TxnLogFake:
    """One role's txnlog.TxnLog: appends are buffered, sync() makes them durable, roll() starts a file."""

    def __init__(self, disk: Disk) -> None:
        self.disk = disk
        self.roll_next = True  # a fresh TxnLog starts a new file on its first append
        self.current: LogFile | None = None
        self.unsynced: list[list[Any]] = []
        self.inflight: list[list[list[Any]]] = []

    def append(self, zxid: int, payload: bytes) -> None:
        if self.roll_next or self.current is None:
            self.roll_next = False
            self.current = LogFile(zxid)
            self.disk.files.append(self.current)
        rec = [zxid, payload, False]
        self.current.records.append(rec)
        self.unsynced.append(rec)

    def begin_sync(self) -> list[list[Any]]:
        """A group-commit fsync starts: it covers what was appended so far."""
        batch, self.unsynced = self.unsynced, []
        self.inflight.append(batch)
        return batch

    def end_sync(self, batch: list[list[Any]]) -> None:
        for r in batch:
            r[2] = True
        if batch in self.inflight:
            self.inflight.remove(batch)

    def sync(self) -> None:
        """A synchronous sync (also close() and truncate()) waits for the one in flight."""
        for batch in [*self.inflight, self.unsynced]:
            for r in batch:
                r[2] = True
        self.inflight, self.unsynced = [], []

    def roll(self) -> None:
        self.roll_next = True

    def truncate(self, zxid: int) -> None:
        self.sync()
        self.disk.truncate(zxid)
        self.roll_next = True
        self.current = None


def encode_stream(tree: Tree) -> bytes:
    """The SNAP stream (snapstream.encode_snap_stream) of a modelled tree."""
    w = Writer().int(len(tree.applied))
    for z, p in tree.applied:
        w.long(z).buffer(p)
    return w.getvalue()


def decode_stream(stream: bytes, zxid: int) -> Tree:
    r = Reader(stream)
    applied = [(r.long(), r.buffer() or b"") for _ in range(r.int())]
    return Tree(applied, zxid)


class Conn:
    """A learner's TCP connection to a leader's quorum port: two FIFO directions."""

    __slots__ = ("ends", "role_ids", "handle", "open", "queues", "last_ready", "pumping", "sync_marks")

    def __init__(self, learner: int, learner_role: int, leader: int, leader_role: int, handle: int) -> None:
        self.ends = (learner, leader)  # indexed by direction: who receives
        self.role_ids = (learner_role, leader_role)
        self.handle = handle
        self.open = [True, True]
        self.queues: tuple[deque[tuple[int, Any]], deque[tuple[int, Any]]] = (deque(), deque())
        self.last_ready = [0, 0]
        self.pumping = [False, False]
        self.sync_marks: deque[int] = deque()  # the leader's applied count when each SYNC arrived


class Node:
    """One ensemble member: its disk always; its election, role and core while it runs."""

    def __init__(self, sid: int, voter: bool) -> None:
        self.sid = sid
        self.voter = voter
        self.disk = Disk()
        self.view: DiskView | None = None  # the executors' Disk over `disk`
        self.alive = False
        self.fle: Any = None  # FastLeaderElection
        self.fle_armed: int | None = None
        self.boot: tuple[Tree, int, int, int] | None = None  # recovered tree, last zxid, epochs
        self.kind: ServerState | None = None  # None while LOOKING
        self.role: Any = None  # Leader or Learner
        self.role_id = 0
        self.ending: str | None = None
        self.core: Core | None = None
        self.executor: Any = None  # LeaderExecutor or LearnerExecutor, with the role
        self.txn_log: TxnLogFake | None = None
        self.handles: dict[int, Link] = {}  # leader: the links to its learners (executor.links)
        self.next_handle = 0
        self.conn: Conn | None = None  # learner: its connection to the leader
        self.leader_sid = 0
        self.connect_tries = 0
        self.connect_deadline = 0
        self.checked = 0  # how much of core.tree.applied was verified against G
        self.last_seen: QuorumConfig | None = None  # a logged reconfig not yet activated (peer.py)
        self.silent: list[tuple[Conn, int]] = []  # connections a machine crash left half open

    @property
    def serving(self) -> bool:
        return self.core is not None and self.core.serving and self.ending is None


@dataclass
class Stats:
    elections: int = 0
    leaders: int = 0
    crashes: int = 0
    proposed: int = 0
    committed: int = 0
    syncs: int = 0
    snaps: int = 0
    truncs: int = 0
    diffs: int = 0
    settle_ms: int = 0
    events: int = 0
    reconfigs: int = 0  # reconfig txns a leader committed (and activated)
    reconfigs_refused: int = 0  # reconfig requests the leader's checks refused
    crashed_mid_commit: int = 0  # removed leaders crashed as their COMMITANDACTIVATE went out
    configs_by_newleader: int = 0  # new members a leader activated as it established (NEWLEADER)
    activations: int = 0  # configs members activated (leaders, learners, from notifications)
    adoptions: int = 0  # configs a LOOKING member took from a notification
    kept_trees: int = 0  # role ends whose tree was kept for the next election
    reloaded: int = 0  # role ends whose tree was not kept (mid-SNAP sync): recovered from disk
    mid_sync_ends: int = 0  # learner role ends between DIFF/TRUNC/SNAP and UPTODATE
    grouped_commits: int = 0  # a leader's commit() applying several txns (consecutive Commits)
    revalidations: int = 0
    revalidated_valid: int = 0
    touches: int = 0  # sessions a leader touched (forwarded requests, learners' pings)


# ---- the world -------------------------------------------------------------------------------


class World:
    """Seeded clock and event queue, network, and the committed history G.

    Network: `group` (members in different groups cannot talk) and `blocked` (one-way
    cuts).  Quorum connections are `Conn`s: in order per direction, each packet after a
    random delay, held while the direction is cut (TCP retransmits) and handed to
    `deliver` (the subclass) on arrival; a FIN arrives after what was sent before it.
    """

    def __init__(self, seed: int, n_voters: int, n_observers: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0
        self.seq = 0
        self.events: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self.voters = frozenset(range(1, n_voters + 1))
        self.observers = frozenset(range(n_voters + 1, n_voters + n_observers + 1))
        self.nodes = {sid: Node(sid, sid in self.voters) for sid in sorted(self.voters | self.observers)}
        self.shape = (n_voters, n_observers)
        self.tcp_delay = (1, 10)
        self.fsync_delay = (1, 10)
        self.group: dict[int, int] = {}
        self.blocked: set[tuple[int, int]] = set()
        self.G: list[Entry] = []
        self.proposed: dict[int, bytes] = {}
        self.stats = Stats()
        self.trace: deque[tuple[int, str]] = deque(maxlen=40)
        self.full_trace: list[tuple[int, str]] | None = None

    # -- events ----------------------------------------------------------------------------------

    def rand(self, lo: int, hi: int) -> int:
        return lo + int(self.rng.random() * (hi - lo + 1))

    def push(self, at: int, fn: Callable[..., None], *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, fn, args))

    def run_until(self, t_end: int, stop: Callable[[], bool] | None = None) -> bool:
        """Run events up to t_end; with stop, return True as soon as it holds (checked once per ms)."""
        events, stats, checked_at = self.events, self.stats, -1
        while events and events[0][0] <= t_end:
            at, _, fn, args = heapq.heappop(events)
            self.now = at
            stats.events += 1
            try:
                fn(*args)
            except Crashed:
                pass
            if stop is not None and at != checked_at:
                checked_at = at
                if stop():
                    return True
        self.now = max(self.now, t_end)
        return stop is not None and stop()

    def call(self, fn: Callable[..., None], *args: Any) -> None:
        """Run fn now, outside the event loop (a fault a scenario injects)."""
        try:
            fn(*args)
        except Crashed:
            pass

    def log(self, msg: str) -> None:
        self.trace.append((self.now, msg))
        if self.full_trace is not None:
            self.full_trace.append((self.now, msg))

    def fail(self, msg: str) -> None:
        lines = "\n".join(f"    {t:>8} {m}" for t, m in self.trace)
        v, o = self.shape
        raise InvariantViolation(f"seed={self.seed} voters={v} observers={o} t={self.now}: {msg}\n"
                                 f"  last events:\n{lines}")

    # -- network ---------------------------------------------------------------------------------

    def reachable(self, a: int, b: int) -> bool:
        return self.group.get(a, 0) == self.group.get(b, 0) and (a, b) not in self.blocked

    def linked(self, a: int, b: int) -> bool:
        return self.nodes[a].alive and self.nodes[b].alive and self.reachable(a, b)

    def tcp_send(self, conn: Conn, dest: int, pkt: QuorumPacket, raw: bytes = b"",
                 encoded: bytes | None = None) -> None:
        if not conn.open[1 - dest]:
            return
        if pkt.type != PacketType.PING or pkt.data:  # what arrives is what the codec makes of the bytes
            reader = PacketReader()
            reader.feed(encoded if encoded is not None else pkt.encode())
            decoded = reader.next()
            assert decoded is not None and not reader.buf and decoded == pkt, (pkt, decoded)
            pkt = decoded
        self.tcp_enqueue(conn, dest, (pkt, raw))

    def tcp_enqueue(self, conn: Conn, dest: int, item: Any) -> None:
        ready = max(self.now + self.rand(*self.tcp_delay), conn.last_ready[dest])
        conn.last_ready[dest] = ready
        conn.queues[dest].append((ready, item))
        if not conn.pumping[dest]:
            conn.pumping[dest] = True
            self.push(ready, self.pump, conn, dest)

    def pump(self, conn: Conn, dest: int) -> None:
        q = conn.queues[dest]
        ready, item = q[0]
        if self.now < ready:
            self.push(ready, self.pump, conn, dest)
            return
        if not self.reachable(conn.ends[1 - dest], conn.ends[dest]):
            self.push(self.now + STALL_POLL, self.pump, conn, dest)
            return
        # Like one socket read: the packets that have arrived together (a random number
        # of them, up to 8) go to the receiver as one batch.  A FIN comes alone, and a SNAP
        # ends its batch (its raw stream follows).
        q.popleft()
        items = [item]
        cap = self.rand(1, 8)
        while (item is not FIN and q and len(items) < cap and q[0][0] <= self.now
               and q[0][1] is not FIN and item[0].type != PacketType.SNAP):
            item = q.popleft()[1]
            items.append(item)
        if q:
            self.push(max(self.now, q[0][0]), self.pump, conn, dest)
        else:
            conn.pumping[dest] = False
        self.deliver(conn, dest, items)

    def close_side(self, conn: Conn, side: int) -> None:
        if conn.open[side]:
            conn.open[side] = False
            self.tcp_enqueue(conn, 1 - side, FIN)

    def deliver(self, conn: Conn, dest: int, items: list[Any]) -> None:
        raise NotImplementedError

    # -- what a member's server core reports (Core calls these; the simulator implements them)

    def committed(self, n: Node, count: int) -> None:
        raise NotImplementedError

    def forwarded(self, n: Node, sid: int, op: int, body: bytes, owner: int) -> None:
        raise NotImplementedError

    def revalidated(self, n: Node, sid: int, valid: bool) -> None:
        raise NotImplementedError

    def sync_released(self, n: Node) -> None:
        raise NotImplementedError

    # -- the committed history -------------------------------------------------------------------

    def observe(self, n: Node, authority: bool = False) -> None:
        """n's applied txns must be a prefix of G; a serving leader's (authority) extend G."""
        assert n.core is not None
        applied, G = n.core.tree.applied, self.G
        i, m = n.checked, min(len(applied), len(G))
        while i < m:
            if applied[i] != G[i]:
                self.fail(f"server {n.sid} applied {fmt(applied[i])} at position {i}, the committed "
                          f"history has {fmt(G[i])} there")
            i += 1
        if len(applied) > len(G):
            if not authority:
                self.fail(f"server {n.sid} ({n.kind.name if n.kind else '?'}) applied "
                          f"{fmt(applied[len(G)])} which no leader committed")
            for e in applied[len(G):]:
                self.extend_history(e, n)
        n.checked = len(applied)

    def extend_history(self, e: Entry, n: Node) -> None:
        """Primary order: zxids rise, within an epoch from counter 1 without gaps; as proposed."""
        z, p = e
        G = self.G
        last = G[-1][0] if G else 0
        if z <= last:
            self.fail(f"leader {n.sid} commits {hexz(z)} after {hexz(last)}")
        if z >> 32 == last >> 32 and z != last + 1:
            self.fail(f"leader {n.sid} commits {hexz(z)} right after {hexz(last)}: a gap")
        if z >> 32 != last >> 32 and z & 0xFFFFFFFF != 1:
            self.fail(f"leader {n.sid} commits {hexz(z)} as the first txn of its epoch")
        if self.proposed.get(z) != p:
            self.fail(f"leader {n.sid} commits {fmt(e)}, which is not what was proposed")
        G.append(e)
        self.stats.committed += 1
