"""Deterministic simulation of whole zkpy ensembles: FLE + ZAB cores over a fake disk, network and clock.

Every member runs the real pure cores -- `FastLeaderElection`, then a `Leader` or `Learner` --
and the real action executors (`zkpy.zab.executors`: LeaderExecutor, LearnerExecutor,
load_tree) that zkpy.zab.peer runs, plugged into the fakes of tests/sim_zab_world.py
instead of files and sockets; this module plays QuorumPeer (elections, roles,
connections).  One process and one seeded RNG, so a seed replays a run exactly:

* disk: txn log files of (zxid, payload) records, each durable once an fsync covering it
  has completed (a crash keeps only durable records), snapshots, acceptedEpoch and
  currentEpoch.  As in peer.py: at start-up the tree is recovered from disk (newest
  snapshot + the logged txns after it); after a role it is the tree that role left plus
  the txns it logged and did not apply (load_tree), unless the role ended between a
  SNAP's LoadSnapshot and its TakeSnapshot; the leader's history is the tail of the logged
  txns after the newest snapshot; the executors truncate, load snapshots, log, sync and
  snapshot through the fake disk;
* server core: the applied txns, the queue of logged txns a Commit applies, group commit
  (one fsync in flight, completing after a random delay, then `persisted(upto)`); client
  writes proposed at serving leaders (`next_zxid` + `propose`) and forwarded by serving
  learners (REQUEST: setData, createSession, sync), session revalidation (REVALIDATE) and
  session touches carried by pings;
* network: election notifications as datagrams (loss, delay, reordering);
  quorum connections with TCP semantics (in order per connection, stalled by a partition,
  FIN when a side closes, RST when a crashed host comes back, optionally cut at once by a
  partition); independent delays reorder traffic across connections;
* clock: simulated milliseconds; roles tick every tickTime/2 as peer.py's ticker does.

Faults: election message loss, delays, symmetric and one-way partitions,
crash and restart of any member at any time, also inside an action batch right after a
durable write (so the ordering duty of zkpy.zab.actions is tested), slow fsync,
crashes of the leader while its proposals are in flight, and roles ended without a
crash (the tree is kept), also in the middle of a learner's sync.

Invariants, checked as they happen (a failure names the seed and prints a short trace):

* at most one leader establishes per epoch;
* one committed history G, only ever extended, by what a serving leader applies (its
  history when it establishes, then each Commit): every serving member's applied txns are
  a prefix of G, byte for byte, and the leader that establishes the newest epoch holds
  all of G -- no acknowledged (committed on a leader) txn is lost;
* primary order: G's zxids increase, within an epoch from counter 1 without gaps, and
  every txn in G is the one its epoch's leader proposed;
* a SYNC forwarded by a learner is answered only once it applied what the leader had
  applied when the SYNC arrived;
* a revalidation is answered valid only for a session some leader created;
* after healing and restarting: a leader establishes and every live member serves with it
  within LIVENESS_MS, new writes commit, and every live member applies exactly G.

    python tests/sim_zab.py --seeds 5000 [--voters 5] [--observers 1] [--scenario chaos]
    python tests/sim_zab.py --scenario chaos --seed 17 --voters 3 --observers 0 --trace
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sim_zab_world import (  # noqa: E402
    FIN,
    LEADING,
    TO_LEADER,
    TO_LEARNER,
    Conn,
    Core,
    Crashed,
    DiskView,
    InvariantViolation,
    Link,
    Node,
    StartupRefused,
    Stats,
    Tree,
    TxnLogFake,
    World,
    fmt,
    hexz,
)
from zkpy.election.fle import Decided, FastLeaderElection, Vote  # noqa: E402
from zkpy.election.fle import Send as FleSend  # noqa: E402
from zkpy.election.messages import Notification  # noqa: E402
from zkpy.jute.codec import INT  # noqa: E402
from zkpy.jute.constants import OpCode  # noqa: E402
from zkpy.jute.txns import SetDataTxn, TxnHeader, encode_txn  # noqa: E402
from zkpy.zab.executors import LeaderExecutor, LearnerExecutor, load_tree  # noqa: E402
from zkpy.zab.leader import Leader  # noqa: E402
from zkpy.zab.learner import Learner, Stage  # noqa: E402
from zkpy.zab.packets import PacketType  # noqa: E402

__all__ = ["SCENARIOS", "SHAPES", "InvariantViolation", "Simulator", "Stats", "run"]

TICK = 200  # tickTime (ms); initLimit and syncLimit are in ticks as in zoo.cfg
INIT_LIMIT = 10
SYNC_LIMIT = 5
HISTORY_LIMIT = 500  # peer.py: the leader's history is at most the log's last 500 txns
CONNECT_TIMEOUT = 5000  # peer.py: asyncio.wait_for(create_connection, 5)
CONNECT_RETRY = 100  # peer.py: at most 5 connection attempts, 100 ms apart
CONNECT_TRIES = 5
SYNC_OP = int(OpCode.SYNC).to_bytes(4, "big")  # a REQUEST's op field (data[12:16])
SESSION_TIMEOUT = 4000
LIVENESS_MS = 120_000  # after healing, an established ensemble within this much simulated time


class Simulator(World):
    """An ensemble of `n_voters` voters and `n_observers` observers (sids 1..), one seed.

    Knobs (change them between `run_until` calls): election message loss and delay; TCP
    delay; fsync delay; `crash_mid`, the chance to crash right after each durable
    write inside an action batch; `auto_restart`, to bring crashed members back; `writes`,
    client load on serving members.  Faults: `crash`, `start`, `partition`, `heal`.
    """

    def __init__(self, seed: int, n_voters: int = 3, n_observers: int = 0) -> None:
        super().__init__(seed, n_voters, n_observers)
        for n in self.nodes.values():
            n.view = DiskView(n, self.maybe_crash)
        self.fle_loss = 0.0
        self.fle_delay = (1, 20)
        self.crash_mid = 0.0
        self.auto_restart: tuple[int, int] | None = None
        self.writes = False
        self.burst = 1  # a leader's client writes per client tick (at 60% each)
        self.history_limit = HISTORY_LIMIT
        # (sid, by_leader): end that learner's role (or its leader's) as soon as a sync
        # packet put it in the middle of a sync
        self.end_in_sync: tuple[int, bool] | None = None
        self.role_seq = 0
        self.write_seq = 0
        self.epoch_leader: dict[int, int] = {}  # epoch -> role id of the leader that established it
        self.created_sessions: set[int] = set()
        self.fle_queued: dict[tuple[int, int], bytes] = {}  # (from, to) -> waiting notification
        self.fle_last: dict[tuple[int, int], bytes] = {}  # (from, to) -> the last one written
        self.push(0, self.client_tick)

    # -- members ------------------------------------------------------------------------------

    def start(self, sid: int) -> None:
        n = self.nodes[sid]
        if n.alive:
            return
        n.alive = True
        n.fle = FastLeaderElection(sid, self.voters, self.observers)
        n.fle_armed = None
        self.log(f"start {sid}")
        for conn, side in n.silent:  # a rebooted host answers the old connection with RST
            if conn.open[1 - side]:
                self.tcp_enqueue(conn, 1 - side, FIN)
        n.silent = []
        self.go_looking(n)
        self.fle_reconnect(sid)

    def crash(self, sid: int) -> None:
        n = self.nodes[sid]
        if not n.alive:
            return
        self.stats.crashes += 1
        self.log(f"crash {sid} ({n.kind.name if n.kind else 'LOOKING'})")
        silent = self.rng.random() < 0.5  # machine crash (no FIN) rather than process crash
        conns = [(link.conn, TO_LEADER) for link in n.handles.values()]
        if n.conn is not None:
            conns.append((n.conn, TO_LEARNER))
        for conn, side in conns:
            conn.open[side] = False
            if silent:
                n.silent.append((conn, side))
            else:
                self.tcp_enqueue(conn, 1 - side, FIN)
        n.alive = False
        n.fle = None
        for key in [k for k in (*self.fle_queued, *self.fle_last) if k[0] == sid]:
            self.fle_queued.pop(key, None)
            self.fle_last.pop(key, None)
        self.drop_role(n)
        n.disk.lose_unsynced()
        if self.auto_restart is not None:
            self.push(self.now + self.rand(*self.auto_restart), self.start, sid)

    def drop_role(self, n: Node) -> None:
        n.kind, n.role, n.role_id, n.ending = None, None, 0, None
        n.core, n.executor, n.txn_log, n.handles, n.conn = None, None, None, {}, None

    def go_looking(self, n: Node, kept: Tree | None = None) -> None:
        """peer.run's loop head: load the tree (load_tree), the epochs, start an election round."""
        assert n.fle is not None and n.view is not None
        tree = load_tree(n.view, kept)
        try:
            accepted, current = n.disk.load_epochs(tree.last)
        except StartupRefused as e:
            self.fail(f"server {n.sid} cannot start: {e}")
        n.boot = (tree, tree.last, accepted, current)
        self.stats.elections += 1
        self.run_fle(n, n.fle.look(self.now, tree.last, current))

    # -- election -----------------------------------------------------------------------------

    def run_fle(self, n: Node, actions: list[Any]) -> None:
        decided = None
        for a in actions:
            if isinstance(a, FleSend):
                self.fle_send(n.sid, a.to, a.message)
            elif isinstance(a, Decided) and n.kind is None and decided is None:
                decided = a
        if decided is not None:
            self.start_role(n, decided)
        self.arm_fle(n)

    def arm_fle(self, n: Node) -> None:
        if n.fle is None:
            return
        deadline = n.fle.next_deadline()
        if deadline is not None and deadline != n.fle_armed:
            n.fle_armed = deadline
            self.push(deadline, self.fle_timer, n.sid, n.fle, deadline)

    def fle_timer(self, sid: int, fle: FastLeaderElection, deadline: int) -> None:
        n = self.nodes[sid]
        if n.fle is fle and fle.next_deadline() == deadline:
            n.fle_armed = None
            self.run_fle(n, fle.tick(self.now))

    def fle_send(self, src: int, dst: int, msg: Notification) -> None:
        """election/transport.py: a message for a peer we cannot reach waits (the newest
        one) until a connection to it comes up."""
        if not self.linked(src, dst):
            self.fle_queued[(src, dst)] = msg.encode()
            return
        if self.fle_loss and self.rng.random() < self.fle_loss:
            return
        self.fle_last[(src, dst)] = payload = msg.encode()
        self.push(self.now + self.rand(*self.fle_delay), self.fle_deliver, src, dst, payload)

    def fle_reconnect(self, sid: int) -> None:
        """Election connections between sid and its peers come up (a start, a heal): each
        side writes its queued message, or else its last one (the peer may have missed it)."""
        for other in self.nodes:
            for a, b in ((other, sid), (sid, other)):
                if a != b and self.linked(a, b):
                    payload = self.fle_queued.pop((a, b), None) or self.fle_last.get((a, b))
                    if payload is not None:
                        self.fle_last[(a, b)] = payload
                        self.push(self.now + self.rand(*self.fle_delay), self.fle_deliver, a, b, payload)

    def fle_deliver(self, src: int, dst: int, payload: bytes) -> None:
        n = self.nodes[dst]
        if not n.alive or n.fle is None or not self.reachable(src, dst):
            return
        note = Notification.decode(payload)
        assert note is not None
        self.run_fle(n, n.fle.receive(self.now, src, note))

    # -- roles --------------------------------------------------------------------------------

    def start_role(self, n: Node, d: Decided) -> None:
        assert n.boot is not None
        tree, last, accepted, current = n.boot
        self.role_seq += 1
        n.role_id, n.ending, n.checked = self.role_seq, None, 0
        n.txn_log = TxnLogFake(n.disk)
        n.core = Core(self, n, tree, n.txn_log)
        n.kind = d.state
        self.log(f"{n.sid} decided {d.state.name} leader={d.vote.leader} (last {hexz(last)}, "
                 f"epochs {accepted}/{current})")
        assert n.view is not None
        if d.state == LEADING:
            # peer._lead: the log's txns after the newest snapshot (what recovery replayed)
            history = list(n.disk.iter_log(n.disk.newest_snapshot()))[-self.history_limit:]
            n.role = Leader(n.sid, self.voters, accepted, current, last, history, self.now, TICK,
                            INIT_LIMIT, SYNC_LIMIT, b"")
            n.executor = LeaderExecutor(n.role, n.view, lambda epoch: self.established(n, epoch, n.sid),
                                        lambda reason: self.request_end(n, reason), n.sid)
            n.handles, n.next_handle = {}, 0
            n.executor.links = n.handles
            n.executor.pipeline = n.core
            n.core.zab = n.executor
            self.push(self.now + TICK // 2, self.role_tick, n.sid, n.role_id)
        else:
            n.role = Learner(n.sid, not n.voter, accepted, current, last, self.now, TICK,
                             INIT_LIMIT, SYNC_LIMIT)
            leader_sid = d.vote.leader
            n.executor = LearnerExecutor(n.role, "follower" if n.voter else "observer", n.view,
                                         lambda epoch: self.established(n, epoch, leader_sid),
                                         lambda reason: self.request_end(n, reason))
            n.executor.pipeline = n.core
            n.core.zab = n.executor
            n.leader_sid, n.conn, n.connect_tries = d.vote.leader, None, 0
            n.connect_deadline = self.now + INIT_LIMIT * TICK
            self.connect_attempt(n.sid, n.role_id)

    def request_end(self, n: Node, reason: str) -> None:
        """peer._finish_role: the role's coroutine unwinds on a later loop iteration."""
        if n.ending is None and n.role is not None:
            n.ending = reason
            self.push(self.now, self.end_role, n.sid, n.role_id)

    def end_role(self, sid: int, role_id: int) -> None:
        n = self.nodes[sid]
        if n.role_id != role_id or not n.alive:
            return
        self.log(f"{sid} leaves {n.kind.name if n.kind else '?'}: {n.ending}")
        if n.kind != LEADING and n.role.stage == Stage.SYNC:
            self.stats.mid_sync_ends += 1
        kept = n.executor.kept_tree()  # peer.run
        if kept is not None:
            self.stats.kept_trees += 1
        else:
            self.stats.reloaded += 1
        for link in n.handles.values():
            self.close_side(link.conn, TO_LEADER)
        if n.conn is not None:
            self.close_side(n.conn, TO_LEARNER)
        assert n.txn_log is not None
        n.txn_log.sync()  # _retire_core: TxnLog.close() writes and syncs what is pending
        self.drop_role(n)
        self.go_looking(n, kept)

    def role_tick(self, sid: int, role_id: int) -> None:
        n = self.nodes[sid]
        if n.role_id != role_id:
            return
        self.push(self.now + TICK // 2, self.role_tick, sid, role_id)
        n.executor.run(n.role.tick(self.now))

    def established(self, n: Node, epoch: int, leader_sid: int) -> None:
        """peer._established, plus the checks: one leader per epoch, G consistent."""
        core, fle = n.core, n.fle
        assert core is not None and fle is not None and n.kind is not None
        core.tree.last = max(core.tree.last, epoch << 32)
        core.serving = True
        vote = fle.current_vote
        fle.established(n.kind, Vote(leader_sid, vote.zxid, vote.election_epoch, epoch))
        self.log(f"{n.sid} established {n.kind.name} epoch {epoch} with {len(core.tree.applied)} txns")
        n.checked = 0
        if n.kind == LEADING:
            self.stats.leaders += 1
            other = self.epoch_leader.setdefault(epoch, n.role_id)
            if other != n.role_id:
                self.fail(f"two leaders established epoch {epoch}")
            applied = core.tree.applied
            if len(applied) < len(self.G) and epoch >= max(self.epoch_leader):
                # the newest epoch's leader starts from a history holding everything committed
                self.fail(f"leader {n.sid} established epoch {epoch} without the committed "
                          f"{fmt(self.G[len(applied)])} ({len(applied)} of {len(self.G)} txns)")
            self.observe(n, authority=True)
        else:
            self.observe(n)

    # -- what the server cores report (tests/sim_zab_world.Core) -----------------------------

    def committed(self, n: Node, count: int) -> None:
        """A Commit applied count txns: check them against G (a leader's extend it)."""
        if n.kind == LEADING:
            if count > 1:
                self.stats.grouped_commits += 1
            self.observe(n, authority=True)
        elif n.core is not None and n.core.serving:
            self.observe(n)

    def leader_write(self, n: Node, client: int, op: int = OpCode.SET_DATA) -> None:
        """A write on the leader (core._append): zxid from the leader, log, propose, queue."""
        core = n.core
        assert core is not None
        zxid = n.executor.next_zxid()
        self.write_seq += 1
        hdr = TxnHeader(client, self.write_seq, zxid, 0, op)
        payload = hdr.encode() + encode_txn(SetDataTxn("/w", b"%d" % self.write_seq, -1))
        if self.proposed.setdefault(zxid, payload) != payload:
            self.fail(f"zxid {hexz(zxid)} proposed twice with different txns (leader {n.sid})")
        self.stats.proposed += 1
        core.append(hdr, payload)

    def forwarded(self, n: Node, sid: int, op: int, body: bytes, owner: int) -> None:
        """core.forwarded on the leader: a learner's client asked for a write."""
        assert n.core is not None
        if op == OpCode.CREATE_SESSION:
            n.core.sessions.add(sid, INT.unpack_from(body)[0]).owner = owner
            self.created_sessions.add(sid)
        else:
            n.core.sessions.touch(sid, self.now)
        self.leader_write(n, sid)

    def revalidated(self, n: Node, sid: int, valid: bool) -> None:
        self.stats.revalidations += 1
        if valid:
            self.stats.revalidated_valid += 1
            if sid not in self.created_sessions:
                self.fail(f"server {n.sid}: session {sid:x} revalidated, but no leader created it")

    def sync_released(self, n: Node) -> None:
        assert n.conn is not None and n.core is not None
        self.stats.syncs += 1
        if not n.conn.sync_marks:
            self.fail(f"server {n.sid} got SYNC without a pending sync request")
        mark = n.conn.sync_marks.popleft()
        if len(n.core.tree.applied) < mark:
            self.fail(f"server {n.sid}: sync answered with {len(n.core.tree.applied)} txns applied, "
                      f"the leader had applied {mark} when the sync arrived")

    def maybe_crash(self, n: Node, where: str) -> None:
        if self.crash_mid and self.rng.random() < self.crash_mid:
            self.log(f"{n.sid} crashes {where}")
            self.crash(n.sid)
            raise Crashed

    # -- quorum connections -------------------------------------------------------------------

    def connect_attempt(self, sid: int, role_id: int) -> None:
        n = self.nodes[sid]
        if n.role_id != role_id:
            return
        if self.linked(sid, n.leader_sid) and self.linked(n.leader_sid, sid):
            self.push(self.now + 2 * self.rand(*self.tcp_delay), self.connect_done, sid, role_id)
        else:
            self.push(self.now + CONNECT_TIMEOUT, self.connect_failed, sid, role_id)

    def connect_failed(self, sid: int, role_id: int) -> None:
        n = self.nodes[sid]
        if n.role_id != role_id:
            return
        n.connect_tries += 1
        if n.connect_tries >= CONNECT_TRIES or self.now > n.connect_deadline:
            self.request_end(n, f"cannot reach leader {n.leader_sid}")
        else:
            self.push(self.now + CONNECT_RETRY, self.connect_attempt, sid, role_id)

    def connect_done(self, sid: int, role_id: int) -> None:
        n = self.nodes[sid]
        if n.role_id != role_id:
            return
        L = self.nodes[n.leader_sid]
        if not (L.kind == LEADING and L.ending is None and self.linked(sid, L.sid)
                and self.linked(L.sid, sid)):
            self.connect_failed(sid, role_id)  # refused: nobody listens on the quorum port
            return
        L.next_handle += 1
        conn = Conn(sid, role_id, L.sid, L.role_id, L.next_handle)
        L.handles[conn.handle] = Link(self, conn, TO_LEARNER)
        L.role.learner_connected(conn.handle, self.now)
        n.conn = conn
        n.executor.link = Link(self, conn, TO_LEADER)
        self.push(self.now + TICK // 2, self.role_tick, sid, role_id)
        n.executor.run(n.role.connected(self.now))

    def deliver(self, conn: Conn, dest: int, items: list[Any]) -> None:
        n = self.nodes[conn.ends[dest]]
        if not conn.open[dest] or n.role_id != conn.role_ids[dest]:
            return
        if items[0] is FIN:
            conn.open[dest] = False
            if dest == TO_LEARNER:
                n.conn = None
                self.request_end(n, "connection to the leader lost")
            else:
                n.handles.pop(conn.handle, None)
                n.executor.run(n.role.learner_lost(conn.handle))
            return
        pkts = [pkt for pkt, _raw in items]
        if dest == TO_LEADER:
            for pkt in pkts:
                if pkt.type == PacketType.REQUEST and pkt.data and pkt.data[12:16] == SYNC_OP:
                    assert n.core is not None
                    conn.sync_marks.append(len(n.core.tree.applied))
            n.executor.run(n.role.receive_batch(conn.handle, pkts, self.now))
            return
        for pkt in pkts:
            if pkt.type in (PacketType.DIFF, PacketType.TRUNC, PacketType.SNAP):
                self.log(f"{n.sid} gets {PacketType(pkt.type).name} {hexz(pkt.zxid)}")
                name = PacketType(pkt.type).name.lower() + "s"
                setattr(self.stats, name, getattr(self.stats, name) + 1)
        role_id = n.role_id
        if self.end_in_sync is not None and self.end_in_sync[0] == n.sid:
            items = self.until_syncing(n, conn, items)
        if items:
            n.executor.run(n.role.receive_batch([pkt for pkt, _raw in items], self.now))
            pkt, raw = items[-1]
            if pkt.type == PacketType.SNAP and n.role_id == role_id:
                assert raw
                n.executor.run(n.role.snapshot_arrived(raw, pkt.zxid))
        if self.end_in_sync is not None and self.end_in_sync[0] == n.sid and syncing(n):
            by_leader = self.end_in_sync[1]
            self.end_in_sync = None
            self.log(f"{n.sid} syncing by {n.role.sync_mode}: its {'leader' if by_leader else 'role'} ends")
            self.request_end(self.nodes[n.leader_sid] if by_leader else n, "role ended in a sync")

    def until_syncing(self, n: Node, conn: Conn, items: list[Any]) -> list[Any]:
        """For end_in_sync: deliver the batch's packets one by one until n is in the middle
        of a sync; what is left goes back to the connection, as if it came in a later read."""
        for i, (pkt, _raw) in enumerate(items[:-1]):
            n.executor.run(n.role.receive_batch([pkt], self.now))
            if syncing(n) or n.role_id != conn.role_ids[TO_LEARNER]:
                q = conn.queues[TO_LEARNER]
                q.extendleft((self.now, item) for item in reversed(items[i + 1:]))
                if not conn.pumping[TO_LEARNER]:
                    conn.pumping[TO_LEARNER] = True
                    self.push(self.now + 1, self.pump, conn, TO_LEARNER)
                return []
        return items[-1:]

    # -- faults -------------------------------------------------------------------------------

    def partition(self, groups: dict[int, int], blocked: set[tuple[int, int]] | None = None,
                  cut: bool = False) -> None:
        """Set the reachability; with cut, connections across it are reset at once."""
        self.group, self.blocked = dict(groups), set(blocked or ())
        self.log(f"network groups={groups} blocked={sorted(self.blocked)} cut={cut}")
        if not cut:
            return
        for n in self.nodes.values():
            for link in list(n.handles.values()):
                a, b = link.conn.ends
                if not (self.reachable(a, b) and self.reachable(b, a)):
                    self.push(self.now, self.reset, link.conn)

    def heal(self) -> None:
        self.partition({})
        for sid in self.nodes:
            self.fle_reconnect(sid)

    def reset(self, conn: Conn) -> None:
        for side in (TO_LEARNER, TO_LEADER):
            if conn.open[side]:
                self.deliver(conn, side, [FIN])

    # -- clients ------------------------------------------------------------------------------

    def client_tick(self) -> None:
        self.push(self.now + self.rand(10, 150), self.client_tick)
        if not self.writes:
            return
        rng = self.rng
        for n in list(self.nodes.values()):
            if not n.serving:
                continue
            if n.kind == LEADING:
                for _ in range(self.burst):
                    if rng.random() < 0.6:
                        self.leader_write(n, 0)
            elif n.conn is not None and rng.random() < 0.2:
                self.learner_client(n)

    def learner_client(self, n: Node) -> None:
        """A client of learner n: a sync, a write, a new session or a reconnect (revalidation)
        through the executor's forward/revalidate, as core.py asks; its session is touched."""
        assert n.core is not None
        r = self.rng.random()
        sid = n.sid << 56 | self.rand(0, 3)
        self.write_seq += 1
        if r < 0.1:
            n.executor.revalidate(sid, SESSION_TIMEOUT)
        elif r < 0.2:
            n.executor.forward(sid, 0, OpCode.CREATE_SESSION, INT.pack(SESSION_TIMEOUT), [])
        else:
            op = OpCode.SYNC if r < 0.5 else OpCode.SET_DATA
            n.executor.forward(sid, self.write_seq, op, b"", [("digest", "u:p")] if r < 0.3 else [])
        n.core.touched[sid] = SESSION_TIMEOUT

    # -- observations -------------------------------------------------------------------------

    def leader(self) -> Node | None:
        """The leader every live member serves with, if the ensemble is settled."""
        alive = [n for n in self.nodes.values() if n.alive]
        leaders = [n for n in alive if n.kind == LEADING and n.serving]
        if len(leaders) != 1:
            return None
        L = leaders[0]
        for n in alive:
            c = n.conn
            if n is not L and (not n.serving or c is None or c.ends[TO_LEADER] != L.sid
                               or c.role_ids[TO_LEADER] != L.role_id):
                return None
        return L

    def describe(self) -> str:
        parts = []
        for n in self.nodes.values():
            if not n.alive:
                parts.append(f"{n.sid}:down")
                continue
            kind = (n.kind.name if n.kind else "LOOKING") + ("+" if n.serving else "-")
            tree = n.core.tree if n.core is not None else n.boot[0] if n.boot else None
            applied = len(tree.applied) if tree is not None else 0
            parts.append(f"{n.sid}:{kind}({applied} txns, epochs {n.disk.accepted}/{n.disk.current})")
        return f"{' '.join(parts)}; G has {len(self.G)} txns"


# ---- scenarios -----------------------------------------------------------------------------


def stabilise(sim: Simulator, keep_down: set[int]) -> Stats:
    """Heal, restart (all but keep_down), then demand a leader, fresh commits, and convergence."""
    sim.fle_loss = sim.crash_mid = 0.0
    sim.fle_delay, sim.tcp_delay, sim.fsync_delay = (1, 20), (1, 10), (1, 10)
    sim.heal()
    for sid, n in sim.nodes.items():
        if not n.alive and sid not in keep_down:
            sim.call(sim.start, sid)
    healed = sim.now
    # A leader the partition cut off may still count as established when it heals, and
    # step down a moment later once it sees how long its followers were silent: the
    # ensemble has settled when a leader has kept its role for syncLimit.
    while True:
        if not sim.run_until(healed + LIVENESS_MS, stop=lambda: sim.leader() is not None) \
                or sim.now > healed + LIVENESS_MS:
            sim.fail(f"no established ensemble within {LIVENESS_MS} ms of healing: {sim.describe()}")
        L = sim.leader()
        assert L is not None
        found = sim.now
        sim.run_until(sim.now + SYNC_LIMIT * TICK, stop=lambda L=L: sim.leader() is not L)
        if sim.leader() is L:
            break
    sim.stats.settle_ms = found - healed
    epoch = L.role.new_epoch
    sim.writes = True
    sim.run_until(sim.now + 2000)
    sim.writes = False
    if not any(z >> 32 == epoch for z, _ in sim.G[-5:]):
        sim.fail(f"writes did not commit in epoch {epoch} after healing: {sim.describe()}")
    sim.run_until(sim.now + 2000)
    if sim.leader() is not L:
        sim.fail(f"the ensemble did not stay with leader {L.sid}: {sim.describe()}")
    for n in sim.nodes.values():
        if n.alive:
            assert n.core is not None
            if n.core.tree.applied != sim.G:
                sim.fail(f"server {n.sid} applied {len(n.core.tree.applied)} txns after stabilising, "
                         f"the committed history has {len(sim.G)}: {sim.describe()}")
    return sim.stats


def scenario_chaos(sim: Simulator) -> Stats:
    """Staggered starts, a noisy network and slow disks, random faults; then stabilise."""
    rng = sim.rng
    ids = sorted(sim.nodes)
    for sid in ids:
        sim.push(sim.rand(0, 2000), sim.start, sid)
    sim.writes = True
    sim.fle_loss = rng.choice([0.0, 0.05, 0.3])
    sim.fle_delay = (1, rng.choice([20, 300, 1500]))
    sim.tcp_delay = (1, rng.choice([5, 50, 400]))
    sim.fsync_delay = (1, rng.choice([5, 40, 400]))
    sim.crash_mid = rng.choice([0.0, 0.0, 0.05, 0.2])
    t, end = 0, sim.rand(4000, 25000)
    while t < end:
        t += sim.rand(100, 3000)
        sim.run_until(t)
        fault = rng.random()
        alive = [s for s in ids if sim.nodes[s].alive]
        leaders = [s for s in alive if sim.nodes[s].kind == LEADING]
        if fault < 0.2 and alive:
            sim.call(sim.crash, rng.choice(alive))
        elif fault < 0.3 and leaders:
            sim.call(sim.crash, rng.choice(leaders))
        elif fault < 0.5:
            down = [s for s in ids if not sim.nodes[s].alive]
            if down:
                sim.call(sim.start, rng.choice(down))
        elif fault < 0.65:
            sim.call(sim.partition, {s: sim.rand(0, 1) for s in ids}, None, rng.random() < 0.5)
        elif fault < 0.75:
            blocked = {(a, b) for a in ids for b in ids if a != b and rng.random() < 0.15}
            sim.call(sim.partition, {}, blocked, rng.random() < 0.3)
        elif fault < 0.82 and leaders:
            isolated = rng.choice(leaders)
            sim.call(sim.partition, {isolated: 1}, None, rng.random() < 0.5)
        else:
            sim.call(sim.heal)
    quorum = len(sim.voters) // 2 + 1
    keep_down = set(rng.sample(sorted(sim.voters), sim.rand(0, len(sim.voters) - quorum))) \
        if rng.random() < 0.3 else set()
    return stabilise(sim, keep_down)


def scenario_leader_crash(sim: Simulator) -> Stats:
    """Settle, then crash the leader while it has proposals in flight (a follower too, sometimes)."""
    rng = sim.rng
    ids = sorted(sim.nodes)
    for sid in ids:
        sim.call(sim.start, sid)
    sim.writes = True
    sim.tcp_delay = (1, rng.choice([5, 30, 200]))
    sim.fsync_delay = (1, rng.choice([5, 30, 200]))
    sim.crash_mid = rng.choice([0.0, 0.05])
    sim.auto_restart = (0, 4000)
    for _ in range(sim.rand(1, 4)):
        if not sim.run_until(sim.now + LIVENESS_MS, stop=lambda: sim.leader() is not None):
            sim.fail(f"no established ensemble: {sim.describe()}")
        L = sim.leader()
        assert L is not None
        sim.run_until(sim.now + sim.rand(0, 1500))
        # crash it with proposals in flight, if it still leads by then (it may have stepped
        # down meanwhile and follow someone else: then it is crashed as a follower)
        sim.run_until(sim.now + 3000, stop=lambda L=L: L.role_id != 0 and L.kind == LEADING
                      and bool(L.role.outstanding))
        sim.call(sim.crash, L.sid)
        if rng.random() < 0.4:
            sim.call(sim.crash, rng.choice([s for s in ids if s != L.sid]))
    return stabilise(sim, set())


def scenario_isolated_leader(sim: Simulator) -> Stats:
    """Cut the leader off (both ways or only its sending side) while it takes writes: the
    majority elects anew and moves on; when it comes back its unshared tail is truncated."""
    rng = sim.rng
    ids = sorted(sim.nodes)
    for sid in ids:
        sim.call(sim.start, sid)
    sim.writes = True
    sim.tcp_delay = (1, rng.choice([5, 30, 150]))
    sim.fsync_delay = (1, rng.choice([2, 20]))
    sim.crash_mid = rng.choice([0.0, 0.0, 0.05])
    sim.auto_restart = (0, 3000)
    for _ in range(sim.rand(1, 3)):
        if not sim.run_until(sim.now + LIVENESS_MS, stop=lambda: sim.leader() is not None):
            sim.fail(f"no established ensemble: {sim.describe()}")
        L = sim.leader()
        assert L is not None
        sim.run_until(sim.now + sim.rand(0, 1000))
        side = {L.sid}
        if len(sim.voters) == 5 and rng.random() < 0.5:
            side.add(rng.choice([s for s in sorted(sim.voters) if s != L.sid]))
        if rng.random() < 0.3:  # only what the minority sends is lost
            sim.call(sim.partition, {}, {(a, b) for a in side for b in ids if b not in side})
        else:
            sim.call(sim.partition, {s: 1 for s in side}, None, rng.random() < 0.3)
        sim.run_until(sim.now + sim.rand(300, 6000))
        if rng.random() < 0.3:
            sim.call(sim.crash, L.sid)
        sim.call(sim.heal)
    return stabilise(sim, set())


def syncing(n: Node) -> bool:
    """n is a learner between the leader's DIFF/TRUNC/SNAP and NEWLEADER's ack."""
    return (n.role is not None and n.kind != LEADING and n.ending is None
            and n.role.stage == Stage.SYNC and n.role.sync_mode is not None
            and not n.role.newleader_acked)


def scenario_role_churn(sim: Simulator) -> Stats:
    """Roles end without a crash, so the next election runs on the kept tree plus the
    replayed logged tail (load_tree): at random, and in the middle of a learner's sync --
    after DIFF, after TRUNC, after a SNAP was loaded but not snapshotted (that tree must
    not be kept) -- ended by the learner or by its leader.  A member that was down while
    hundreds of txns committed comes back to a SNAP."""
    rng = sim.rng
    ids = sorted(sim.nodes)
    for sid in ids:
        sim.call(sim.start, sid)
    sim.writes = True
    sim.tcp_delay = (1, rng.choice([5, 30, 150]))
    sim.fsync_delay = (1, rng.choice([2, 20, 100]))
    sim.crash_mid = rng.choice([0.0, 0.0, 0.05])
    sim.auto_restart = (0, 3000)
    for _ in range(sim.rand(2, 5)):
        sim.run_until(sim.now + LIVENESS_MS, stop=lambda: sim.leader() is not None)
        sim.run_until(sim.now + sim.rand(0, 1500))
        if rng.random() < 0.3:
            live = [n for n in sim.nodes.values() if n.role is not None and n.ending is None]
            if live:
                sim.call(sim.request_end, rng.choice(live), "role ended by the scenario")
            continue
        victim = rng.choice(ids)
        sim.auto_restart = None
        sim.call(sim.crash, victim)
        # a short history: the leader's no longer reaches back to the victim's last txn (SNAP)
        sim.history_limit = rng.choice([HISTORY_LIMIT, 5, 20])
        sim.run_until(sim.now + sim.rand(500, 5000))
        L = sim.leader()
        if L is not None and rng.random() < 0.6:  # the next leader starts from the short history
            sim.call(sim.request_end, L, "leader steps down")
            sim.run_until(sim.now + LIVENESS_MS, stop=lambda: sim.leader() is not None)
            sim.run_until(sim.now + sim.rand(0, 1000))
        sim.end_in_sync = (victim, rng.random() < 0.3)
        sim.call(sim.start, victim)
        sim.run_until(sim.now + 3000, stop=lambda: sim.end_in_sync is None)
        sim.end_in_sync = None
        sim.history_limit = HISTORY_LIMIT
        sim.auto_restart = (0, 3000)
    return stabilise(sim, set())


def scenario_write_bursts(sim: Simulator) -> Stats:
    """Bursts of writes against a slow leader disk and quick followers: acks for several
    proposals arrive together, so one action batch holds consecutive Commits, which the
    leader's executor applies with one commit() (grouped Commits), between crashes and
    role ends."""
    rng = sim.rng
    ids = sorted(sim.nodes)
    for sid in ids:
        sim.call(sim.start, sid)
    sim.writes = True
    sim.tcp_delay = (1, rng.choice([2, 10, 40]))
    sim.crash_mid = rng.choice([0.0, 0.0, 0.03])
    sim.auto_restart = (0, 3000)
    for _ in range(sim.rand(2, 5)):
        sim.run_until(sim.now + LIVENESS_MS, stop=lambda: sim.leader() is not None)
        sim.fsync_delay = (rng.choice([1, 20]), rng.choice([40, 200]))
        sim.burst = sim.rand(2, 12)
        sim.run_until(sim.now + sim.rand(500, 3000))
        sim.burst = 1
        sim.fsync_delay = (1, 10)
        fault = rng.random()
        L = sim.leader()
        if fault < 0.3 and L is not None:
            sim.call(sim.request_end, L, "leader steps down")
        elif fault < 0.5:
            sim.call(sim.crash, rng.choice(ids))
    return stabilise(sim, set())


SCENARIOS: dict[str, Callable[[Simulator], Stats]] = {
    "chaos": scenario_chaos,
    "leader_crash": scenario_leader_crash,
    "isolated_leader": scenario_isolated_leader,
    "role_churn": scenario_role_churn,
    "write_bursts": scenario_write_bursts,
}
SHAPES = [(3, 0), (3, 1), (5, 0), (5, 1)]


def run(scenario: str, seed: int, voters: int, observers: int, trace: bool = False) -> Stats:
    sim = Simulator(seed, voters, observers)
    if trace:
        sim.full_trace = []
    try:
        return SCENARIOS[scenario](sim)
    finally:
        if trace and sim.full_trace is not None:
            for t, m in sim.full_trace:
                print(f"{t:>8} {m}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=500)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--seed", type=int, help="run just this seed")
    p.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    p.add_argument("--voters", type=int, choices=[3, 5])
    p.add_argument("--observers", type=int, choices=[0, 1])
    p.add_argument("--trace", action="store_true", help="print every logged event (with --seed)")
    args = p.parse_args(argv)
    shapes = [(args.voters or v, args.observers if args.observers is not None else o) for v, o in SHAPES]
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    seeds = [args.seed] if args.seed is not None else list(range(args.first, args.first + args.seeds))
    failures = 0
    for name in scenarios:
        started, worst, totals = time.monotonic(), 0, Counter[str]()
        for seed in seeds:
            voters, observers = shapes[seed % len(shapes)]
            try:
                stats = run(name, seed, voters, observers, args.trace)
            except InvariantViolation as e:
                failures += 1
                print(f"FAIL {name}: {e}\n  reproduce: python tests/sim_zab.py --scenario {name} "
                      f"--seed {seed} --voters {voters} --observers {observers} --trace")
                continue
            worst = max(worst, stats.settle_ms)
            totals.update({k: v for k, v in asdict(stats).items() if k != "settle_ms"})
        print(f"{name}: {len(seeds)} seeds in {time.monotonic() - started:.1f}s, slowest settling "
              f"after healing {worst} ms (simulated)\n  " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
