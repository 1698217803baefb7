"""The simulator's QuorumPeer: elections, roles and quorum connections of every member.

`Simulator` plays zkpy.zab.peer over the world of tests/sim_zab_world.py: it runs the
real FastLeaderElection and the real Leader/Learner cores, and carries out their actions
with the real executors of zkpy.zab.executors plugged into the fakes of
tests/sim_zab_fakes.py.  tests/sim_zab.py holds the scenarios and the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.sim_zab_fakes import Core, DiskView, Link
from tests.sim_zab_world import (
    FIN,
    FOLLOWING,
    LEADING,
    OBSERVING,
    TO_LEADER,
    TO_LEARNER,
    Conn,
    Crashed,
    Entry,
    Node,
    StartupRefused,
    Tree,
    TxnLogFake,
    World,
    fmt,
    hexz,
)
from zkpy.election.fle import Decided, FastLeaderElection, NewConfig, Vote
from zkpy.election.fle import Send as FleSend
from zkpy.election.messages import Notification
from zkpy.jute.codec import INT
from zkpy.jute.constants import KeeperError, OpCode
from zkpy.jute.txns import SetDataTxn, TxnHeader, encode_txn
from zkpy.server.quorum_config import QuorumConfig
from zkpy.zab.executors import LeaderExecutor, LearnerExecutor, load_tree
from zkpy.zab.leader import Leader, reconfig_config
from zkpy.zab.learner import Learner, Stage
from zkpy.zab.packets import PacketType, QuorumPacket

TICK = 200  # tickTime (ms); initLimit and syncLimit are in ticks as in zoo.cfg
INIT_LIMIT = 10
SYNC_LIMIT = 5
HISTORY_LIMIT = 500  # peer.py: the leader's history is at most the log's last 500 txns
CONNECT_TIMEOUT = 5000  # peer.py: asyncio.wait_for(create_connection, 5)
CONNECT_RETRY = 100  # peer.py: at most 5 connection attempts, 100 ms apart
CONNECT_TRIES = 5
SYNC_OP = int(OpCode.SYNC).to_bytes(4, "big")  # a REQUEST's op field (data[12:16])
SESSION_TIMEOUT = 4000


class Simulator(World):
    """An ensemble of `n_voters` voters and `n_observers` observers (sids 1..), one seed.

    Knobs (change them between `run_until` calls): election message loss and delay; TCP
    delay; fsync delay; `crash_mid`, the chance to crash right after each durable
    write inside an action batch; `auto_restart`, to bring crashed members back; `writes`,
    client load on serving members.  Faults: `crash`, `start`, `partition`, `heal`.
    """

    def __init__(self, seed: int, n_voters: int = 3, n_observers: int = 0, spares: int = 0,
                 reconfig: bool = False) -> None:
        super().__init__(seed, n_voters, n_observers)
        # reconfigEnabled: every member keeps its committed config on disk and runs with
        # it, as peer.py does; `spares` more servers (never started unless a scenario
        # starts them) know the initial members and themselves, as a joiner's zoo.cfg
        self.reconfig = reconfig
        if reconfig:
            initial = "\n".join(member_line(sid, sid in self.observers) for sid in sorted(self.nodes))
            for n in self.nodes.values():
                n.disk.config = QuorumConfig.parse(initial, 0)
            for sid in range(len(self.nodes) + 1, len(self.nodes) + spares + 1):
                self.nodes[sid] = Node(sid, False)
                self.nodes[sid].disk.config = QuorumConfig.parse(f"{initial}\n{member_line(sid)}", 0)
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
        # Scripted faults (tests/sim_zk_regressions.py): crash_point(node, where) -> True
        # crashes that member at that durable write; on_deliver(conn, dest, packets) runs
        # as packets reach a member, before it handles them.
        self.crash_point: Callable[[Node, str], bool] | None = None
        self.on_deliver: Callable[[Conn, int, list[QuorumPacket]], None] | None = None
        self.role_seq = 0
        self.write_seq = 0
        self.epoch_leader: dict[int, int] = {}  # epoch -> role id of the leader that established it
        self.created_sessions: set[int] = set()
        self.fle_queued: dict[tuple[int, int], bytes] = {}  # (from, to) -> waiting notification
        # reconfig checks: version -> the one config text any member activated for it;
        # the versions leaders activated; (leader role id, zxid) -> who ACKed it
        self.configs: dict[int, str] = {}
        self.leader_activated: set[int] = set()
        self.acks: dict[tuple[int, int], set[int]] = {}
        self.fle_last: dict[tuple[int, int], bytes] = {}  # (from, to) -> the last one written
        self.push(0, self.client_tick)

    # -- members ------------------------------------------------------------------------------

    def start(self, sid: int) -> None:
        n = self.nodes[sid]
        if n.alive:
            return
        n.alive = True
        q = n.disk.config
        if q is not None:
            n.fle = FastLeaderElection(sid, q.voters, q.observers, config=q.text().encode(), reconfig=True)
        else:
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
        if n.disk.config is not None:
            n.last_seen = last_seen(tree, n.disk.config)
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
            elif isinstance(a, NewConfig):
                self.stats.adoptions += 1
                self.activated(n, a.config, "from a notification")
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
            q = n.disk.config
            n.role = Leader(n.sid, q.voters if q else self.voters, accepted, current, last, history,
                            self.now, TICK, INIT_LIMIT, SYNC_LIMIT, q.text().encode() if q else b"",
                            quorum=q, next_quorum=n.last_seen, reconfig=q is not None)
            n.executor = LeaderExecutor(n.role, n.view, lambda epoch: self.established(n, epoch, n.sid),
                                        lambda reason: self.request_end(n, reason), n.sid,
                                        lambda config: self.activated(n, config, "leading"))
            n.handles, n.next_handle = {}, 0
            n.executor.links = n.handles
            n.executor.pipeline = n.core
            n.core.zab = n.executor
            self.push(self.now + TICK // 2, self.role_tick, n.sid, n.role_id)
        else:
            q = n.disk.config
            # peer.py: an observer by the committed config; a server outside it follows
            observer = n.sid in q.observers if q is not None else not n.voter
            if q is not None:  # peer.py: the role by the config, not by the vote
                n.kind = OBSERVING if observer else FOLLOWING
            n.role = Learner(n.sid, observer, accepted, current, last, self.now, TICK, INIT_LIMIT,
                             SYNC_LIMIT, leader_id=d.vote.leader, quorum=q, reconfig=q is not None)
            leader_sid = d.vote.leader
            n.executor = LearnerExecutor(n.role, "observer" if observer else "follower", n.view,
                                         lambda epoch: self.established(n, epoch, leader_sid),
                                         lambda reason: self.request_end(n, reason),
                                         lambda config: self.activated(n, config, "learning"))
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

    def snapshot_written(self, sid: int, fle: Any, zxid: int, applied: tuple[Entry, ...]) -> None:
        n = self.nodes[sid]
        if n.fle is fle:  # the same run of the server: no crash since
            n.disk.snapshots[zxid] = applied

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
            # peer._established: Database.snapshot_in_background of the tree the epoch starts
            # from, the log rolled; a forked child writes it (a role end waits for it, a
            # crash loses it)
            assert n.txn_log is not None
            n.txn_log.roll()
            self.push(self.now + self.rand(*self.fsync_delay), self.snapshot_written, n.sid, fle,
                      core.tree.last, tuple(applied))
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
        if (self.crash_point is not None and self.crash_point(n, where)) or \
                (self.crash_mid and self.rng.random() < self.crash_mid):
            self.log(f"{n.sid} crashes {where}")
            self.crash(n.sid)
            raise Crashed

    # -- reconfiguration ----------------------------------------------------------------------

    def activated(self, n: Node, config: QuorumConfig, how: str) -> None:
        """peer._activate: a config became n's committed one.  Checks: one config per
        version; a leader activates a config only once a quorum of the config it ran with
        and a quorum of the new one acked it (the NEWLEADER that carried it, or the
        reconfig txn); anyone else only a config some leader activated."""
        old = n.disk.config
        assert old is not None
        if config.version <= old.version:
            return
        text = config.text()
        if self.configs.setdefault(config.version, text) != text:
            self.fail(f"two configs of version {hexz(config.version)}: "
                      f"{self.configs[config.version]!r} and, at server {n.sid}, {text!r}")
        if how == "leading":
            L = n.role
            assert n.core is not None
            if n.core.serving:  # a reconfig txn committed: the ACKs of that zxid, ours if durable
                acked = set(self.acks.get((n.role_id, config.version), ()))
                if n.core.durable >= config.version:
                    acked.add(n.sid)
                self.stats.reconfigs += 1
            else:  # establishing (Activate comes before Established): the config NEWLEADER carried
                acked = set(self.acks.get((n.role_id, L.new_epoch << 32), ())) | {n.sid}
                if not config.same_members(old):
                    self.stats.configs_by_newleader += 1  # e.g. a reconfig its proposer left uncommitted
            if not (old.is_quorum(acked) and config.is_quorum(acked)):
                self.fail(f"leader {n.sid} activated config {hexz(config.version)} acked by "
                          f"{sorted(acked)}: not a quorum of both {sorted(old.voters)} and "
                          f"{sorted(config.voters)}")
            self.leader_activated.add(config.version)
        elif config.version not in self.leader_activated:
            self.fail(f"server {n.sid} activated config {hexz(config.version)} ({how}), "
                      f"which no leader activated")
        self.stats.activations += 1
        self.log(f"{n.sid} activates config {hexz(config.version)} ({how}): {', '.join(config.lines())}")
        n.disk.config = config
        if n.last_seen is not None and n.last_seen.version <= config.version:
            n.last_seen = None
        if n.fle is not None:
            n.fle.reconfigure(config.voters, config.observers, config.text().encode(), config.version)

    def client_reconfig(self, joining: str | None, leaving: str | None, members: str | None = None) -> bool:
        """A client's reconfig at the serving leader (core._prepare_reconfig, _append):
        the leader core's checks, then a reconfig txn proposed like any write."""
        L = next((n for n in self.nodes.values() if n.kind == LEADING and n.serving), None)
        if L is None:
            return False
        core = L.core
        assert core is not None
        zxid = L.executor.next_zxid()
        what = f"+{joining} -{leaving}" + (f" ={members.replace(chr(10), ',')}" if members else "")
        try:
            text = L.executor.prepare_reconfig(joining, leaving, members, -1, zxid, self.now, True)
        except KeeperError as e:
            self.stats.reconfigs_refused += 1
            self.log(f"reconfig {what} refused by {L.sid}: {e.code.name}")
            return False
        self.write_seq += 1
        hdr = TxnHeader(0, self.write_seq, zxid, 0, OpCode.RECONFIG)
        payload = hdr.encode() + encode_txn(SetDataTxn("/zookeeper/config", text, -1))
        if self.proposed.setdefault(zxid, payload) != payload:
            self.fail(f"zxid {hexz(zxid)} proposed twice with different txns (leader {L.sid})")
        self.stats.proposed += 1
        self.log(f"reconfig {what} proposed by {L.sid} as {hexz(zxid)}")
        core.append(hdr, payload)
        return True

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
        if self.on_deliver is not None:
            self.on_deliver(conn, dest, pkts)
            if not n.alive or n.role_id != conn.role_ids[dest]:
                return
        if dest == TO_LEADER:
            for pkt in pkts:
                if pkt.type == PacketType.ACK and self.reconfig:
                    acked = self.acks.setdefault((conn.role_ids[TO_LEADER], pkt.zxid), set())
                    acked.add(conn.ends[TO_LEARNER])
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


def syncing(n: Node) -> bool:
    """n is a learner between the leader's DIFF/TRUNC/SNAP and NEWLEADER's ack."""
    return (n.role is not None and n.kind != LEADING and n.ending is None
            and n.role.stage == Stage.SYNC and n.role.sync_mode is not None
            and not n.role.newleader_acked)


def member_line(sid: int, observer: bool = False) -> str:
    """server.N's line (made-up addresses: the simulator's network is by server id)."""
    return f"server.{sid}=10.0.0.{sid}:2888:3888:{'observer' if observer else 'participant'};2181"


def last_seen(tree: Tree, committed: QuorumConfig) -> QuorumConfig | None:
    """peer._note_last_seen: the newest reconfig txn in the tree (logged txns replayed),
    if it is newer than the committed config -- a leader completes it before serving."""
    for _z, payload in reversed(tree.applied):
        config = reconfig_config(payload)
        if config is not None:
            return config if config.version > committed.version else None
    return None
