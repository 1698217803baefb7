"""QuorumPeer: the ensemble role, which runs election, then leads or follows.

All protocol decisions live in the pure cores (zkpy.election.fle, zkpy.zab.leader,
zkpy.zab.learner); this module moves their bytes over TCP, executes their actions in
order, and swaps the server core a client connection talks to when the role changes.
The client listener, the housekeeping timers and the signals belong to the runtime
(zkpy.server.runtime), as for a standalone server.  After a role, the tree is kept in
memory and the txns that role logged but did not apply are replayed from the log.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zkpy.datatree.tree import DataTree
from zkpy.election.fle import Decided, FastLeaderElection
from zkpy.election.fle import Send as FleSend
from zkpy.election.messages import Notification, ServerState
from zkpy.election.transport import ElectionTransport
from zkpy.jute.codec import Writer
from zkpy.jute.txns import TxnHeader
from zkpy.persistence.files import VERSION_DIR, valid_snapshots
from zkpy.persistence.recovery import recover, replay, take_snapshot
from zkpy.persistence.snapshot import no_gc
from zkpy.persistence.txnlog import TxnLog, iter_log
from zkpy.server.config import Config
from zkpy.server.core import ZooKeeperServer
from zkpy.server.database import Database
from zkpy.zab import actions as A
from zkpy.zab.epochs import load_epochs, write_epoch
from zkpy.zab.leader import Leader
from zkpy.zab.learner import Learner
from zkpy.zab.packets import PacketReader, PacketType, QuorumPacket, request_data
from zkpy.zab.snapstream import SnapScanner, decode_snap_stream, encode_snap_stream

log = logging.getLogger("zkpy.quorum")


def read_myid(data_dir: Path) -> int:
    try:
        return int((data_dir / "myid").read_text().split()[0])
    except (OSError, ValueError, IndexError) as e:
        raise RuntimeError(f"{data_dir / 'myid'} must hold this server's id (server.N): {e}") from None


_SYNC_TYPES = (int(PacketType.DIFF), int(PacketType.TRUNC))
_PENDING_STREAMS: list[QuorumStream] = []  # streams with queued packets, flushed after each batch


def flush_streams() -> None:
    while _PENDING_STREAMS:
        _PENDING_STREAMS.pop().flush()


class QuorumStream(asyncio.Protocol):
    """One quorum-port TCP connection; hands the complete packets of each read to
    `on_packets` together (a list, in order)."""

    def __init__(self, on_packets: Callable[[QuorumStream, list[QuorumPacket]], None],
                 on_lost: Callable[[QuorumStream], None]) -> None:
        self.reader = PacketReader()
        self.on_packets = on_packets
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.handle = 0
        self.snap_zxid: int | None = None  # reading a SNAP stream for this zxid
        self.scanner: SnapScanner | None = None
        self.on_snapshot: Callable[[bytes, int], None] | None = None
        self.closed = False
        self.out: list[bytes] = []
        self.out_streams = _PENDING_STREAMS

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while not self.closed:
                if self.snap_zxid is not None:
                    assert self.scanner is not None and self.on_snapshot is not None
                    n = self.scanner.scan(memoryview(self.reader.buf))
                    if n is None:
                        return
                    stream = self.reader.take_raw(n)
                    zxid, self.snap_zxid, self.scanner = self.snap_zxid, None, None
                    self.on_snapshot(stream or b"", zxid)
                    continue
                pkts = self.reader.drain()
                if not pkts:
                    return
                self.on_packets(self, pkts)
        except Exception as e:  # a peer sending garbage must not take the server down
            log.warning("dropping quorum connection: %s", e)
            self.close()

    def send(self, pkt: QuorumPacket, raw: bytes = b"", encoded: bytes | None = None) -> None:
        """Queue a packet; everything queued during one event-loop iteration is written
        together at its end (one write per stream, not one per packet)."""
        if self.transport is not None and not self.closed:
            if not self.out:
                if not self.out_streams:
                    asyncio.get_running_loop().call_soon(flush_streams)
                self.out_streams.append(self)
            self.out.append(encoded if encoded is not None else pkt.encode())
            if raw:
                self.out.append(raw)

    def flush(self) -> None:
        if self.out and self.transport is not None and not self.closed:
            self.transport.writelines(self.out)
        self.out = []

    def close(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.on_lost(self)


class QuorumPeer:
    """One member of an ensemble, configured by zoo.cfg's server.N lines."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.my_id = read_myid(config.data_dir)
        if self.my_id not in config.servers:
            raise RuntimeError(f"myid {self.my_id} has no server.{self.my_id} line in the config")
        self.me = config.servers[self.my_id]
        self.voters = frozenset(s for s, spec in config.servers.items() if not spec.observer)
        self.observers = frozenset(s for s, spec in config.servers.items() if spec.observer)
        self.snap_dir = config.data_dir / VERSION_DIR
        self.fle = FastLeaderElection(self.my_id, self.voters, self.observers)
        self.transport: ElectionTransport | None = None
        self.core = ZooKeeperServer(config, server_id=self.my_id)
        self.core.serving = False
        self.state = ServerState.LOOKING
        self._decided: asyncio.Future[Decided] | None = None
        self._role_done: asyncio.Future[str] | None = None
        self._fle_timer: asyncio.TimerHandle | None = None
        self._stopping = False
        self.txn_log: TxnLog | None = None
        self.database: Database | None = None

    @property
    def tick(self) -> int:
        return self.config.tick_time

    @staticmethod
    def now() -> int:
        return int(time.monotonic() * 1000)

    # ---- lifecycle (called by the runtime) ----------------------------------------
    def client_address(self) -> tuple[str, int]:
        return self.config.client_port_address, self.config.client_port or self.me.client_port or 2181

    async def open(self) -> None:
        peers = {sid: (s.host, s.election_port) for sid, s in self.config.servers.items()}
        self.transport = ElectionTransport(self.my_id, (self.me.host, self.me.election_port), peers,
                                           self._on_election_message)
        await self.transport.start()
        log.info("server %d: election on %s:%d, quorum port %d", self.my_id, self.me.host,
                 self.me.election_port, self.me.quorum_port)

    def serving(self) -> None:
        pass

    async def run(self) -> None:
        kept: DataTree | None = None
        while not self._stopping:
            tree, last_zxid = self._load_tree(kept)
            accepted, current = load_epochs(self.snap_dir, last_zxid)
            decided = await self._elect(last_zxid, current, tree)
            if self._stopping:
                break
            if decided.state == ServerState.LEADING:
                reason = await self._lead(tree, last_zxid, accepted, current)
            else:
                reason = await self._follow(decided, tree, last_zxid, accepted, current)
            log.warning("server %d leaves %s: %s", self.my_id, self.state.name, reason)
            role_core = self.core
            usable = role_core.zab is not None and role_core.write_error is None
            kept = role_core.tree if usable else None
            self._retire_core()  # closes the txn log: everything logged is on disk now

    def _load_tree(self, kept: DataTree | None) -> tuple[DataTree, int]:
        """The tree to elect with: recovered from disk at start-up; after a role, the tree
        that role left in memory plus the txns it logged but did not apply (what a
        recovery from disk would give, without reading a whole snapshot again: Java keeps
        its database across elections the same way)."""
        if kept is None:
            with no_gc():  # as open_database: no collection walks the new tree before it is frozen
                tree, last_zxid = recover(self.config.data_dir, self.config.data_log_dir)
                if not valid_snapshots(self.snap_dir, 1):
                    take_snapshot(tree, self.config.data_dir, fsync=True)  # as Java at start-up
                gc.freeze()
            return tree, last_zxid
        start = kept.last_processed_zxid
        # the general apply: the kept tree is not promised to be free of watches
        count, _ = replay(kept, iter_log(self.config.data_log_dir / VERSION_DIR, start),
                          direct_creates=False)
        log.info("server %d: kept the tree at 0x%x, applied %d more logged txns", self.my_id,
                 start, count)
        return kept, kept.last_processed_zxid

    async def close(self) -> None:
        self.request_stop()
        if self.transport is not None:
            await self.transport.close()
            self.transport = None
        self._retire_core()

    def request_stop(self) -> None:
        self._stopping = True
        for fut in (self._decided, self._role_done):
            if fut is not None and not fut.done():
                fut.set_result("stopping")  # type: ignore[arg-type]

    def _retire_core(self) -> None:
        old = self.core
        for c in list(old.connections):
            c.close()
        old.close()
        if self.database is not None:
            self.database.stop_snapshots()
            self.database = None
        if self.txn_log is not None:
            self.txn_log.close()
            self.txn_log = None
        self.core = ZooKeeperServer(self.config, server_id=self.my_id)
        self.core.serving = False

    # ---- election ---------------------------------------------------------------
    def _on_election_message(self, sid: int, payload: bytes) -> None:
        n = Notification.decode(payload)
        if n is not None:
            self._run_fle(self.fle.receive(self.now(), sid, n))

    def _run_fle(self, actions: list[Any]) -> None:
        for a in actions:
            if isinstance(a, FleSend):
                if self.transport is not None:
                    self.transport.send(a.to, a.message.encode())
            elif isinstance(a, Decided) and self._decided is not None and not self._decided.done():
                self._decided.set_result(a)
        self._arm_fle_timer()

    def _arm_fle_timer(self) -> None:
        if self._fle_timer is not None:
            self._fle_timer.cancel()
        deadline = self.fle.next_deadline()
        if deadline is not None:
            delay = max(0.0, (deadline - self.now()) / 1000.0)
            # the clock may read a millisecond short of the deadline when the timer fires
            self._fle_timer = asyncio.get_running_loop().call_later(
                delay, lambda: self._run_fle(self.fle.tick(max(self.now(), deadline))))

    async def _serve_read_only(self, tree: Any) -> None:
        """readonlymode.enabled: after a while without a quorum, serve read-only clients."""
        await asyncio.sleep(max(2000, self.tick) / 1000.0)
        core = ZooKeeperServer(self.config, tree, server_id=self.my_id)
        core.attach(asyncio.get_running_loop())
        core.read_only = True
        old, self.core = self.core, core
        for c in list(old.connections):
            c.close()
        old.close()
        log.warning("server %d: no quorum; serving read-only clients", self.my_id)

    async def _elect(self, last_zxid: int, current_epoch: int, tree: Any = None) -> Decided:
        self.state = ServerState.LOOKING
        self._decided = asyncio.get_running_loop().create_future()
        self._run_fle(self.fle.look(self.now(), last_zxid, current_epoch))
        ro_task = None
        if self.config.read_only_mode and tree is not None:
            ro_task = asyncio.get_running_loop().create_task(self._serve_read_only(tree))
        try:
            decided = await self._decided
        finally:
            if ro_task is not None:
                ro_task.cancel()
            if self.core.read_only:
                self._retire_core()
        if isinstance(decided, Decided):
            self.state = decided.state
            log.info("server %d: election done, %s, leader %d", self.my_id, decided.state.name,
                     decided.vote.leader)
        return decided

    # ---- shared role plumbing ---------------------------------------------------------
    def _open_log(self) -> TxnLog:
        log_dir = self.config.data_log_dir / VERSION_DIR
        self.txn_log = TxnLog(log_dir, self.config.pre_alloc_size_kb * 1024, self.config.force_sync)
        return self.txn_log

    def _new_core(self, tree: Any, glue: Any) -> ZooKeeperServer:
        tree.set_config_data(self._config_text())  # as the reference's initConfigInZKDatabase
        core = ZooKeeperServer(self.config, tree, self.txn_log, server_id=self.my_id, zab=glue)
        core.attach(asyncio.get_running_loop())
        core.serving = False
        assert self.txn_log is not None
        self.database = Database(self.config, tree, self.txn_log)
        self.database.attach(core)  # snapshots every ~snapCount txns, as standalone
        old = self.core
        for c in list(old.connections):
            c.close()
        old.close()
        self.core = core
        return core

    async def _ticker(self, tick_fn: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(self.tick / 2000.0)
            tick_fn()

    # ---- leading ----------------------------------------------------------------------
    async def _lead(self, tree: Any, last_zxid: int, accepted: int, current: int) -> str:
        loop = asyncio.get_running_loop()
        self._role_done = loop.create_future()
        self._open_log()
        # Only txns the recovered tree holds: those after the newest snapshot.  Older log
        # files may hold a tail that a SNAP sync superseded (txns of a lost epoch); DIFFing a
        # learner from there would skip whatever the snapshot brought in their place.
        snaps = valid_snapshots(self.snap_dir, 1)
        history = [(h.zxid, h.encode() + rec) for h, rec in _tail(iter_log(
            self.config.data_log_dir / VERSION_DIR, snaps[0][0] if snaps else 0), 500)]
        leader = Leader(self.my_id, self.voters, accepted, current, last_zxid, history, self.now(),
                        self.tick, self.config.init_limit or 10, self.config.sync_limit or 5,
                        self._config_text())
        glue = _LeaderGlue(self, leader)
        core = self._new_core(tree, glue)
        glue.core = core
        streams: dict[int, QuorumStream] = {}
        next_handle = [1]

        def on_packets(stream: QuorumStream, pkts: list[QuorumPacket]) -> None:
            glue.run(leader.receive_batch(stream.handle, pkts, self.now()))

        def on_lost(stream: QuorumStream) -> None:
            streams.pop(stream.handle, None)
            glue.run(leader.learner_lost(stream.handle))

        def factory() -> QuorumStream:
            s = QuorumStream(on_packets, on_lost)
            s.handle = next_handle[0]
            next_handle[0] += 1
            streams[s.handle] = s
            leader.learner_connected(s.handle, self.now())
            return s

        glue.streams = streams
        server = await loop.create_server(factory, self.me.host, self.me.quorum_port, reuse_address=True)

        def tick() -> None:
            glue.run(leader.tick(self.now()))

        ticker = loop.create_task(self._ticker(tick))
        try:
            return await self._role_done
        finally:
            ticker.cancel()
            server.close()
            for s in list(streams.values()):
                s.close()

    def _config_text(self) -> bytes:
        lines = []
        for sid, s in sorted(self.config.servers.items()):
            role = "observer" if s.observer else "participant"
            lines.append(f"server.{sid}={s.host}:{s.quorum_port}:{s.election_port}:{role}")
        lines.append("version=0")
        return "\n".join(lines).encode()

    def _established(self, epoch: int, state: ServerState, leader_sid: int) -> None:
        core = self.core
        core.tree.last_processed_zxid = max(core.tree.last_processed_zxid, epoch << 32)
        core.serving = True
        vote = self.fle.current_vote
        self.fle.established(state, type(vote)(leader_sid, vote.zxid, vote.election_epoch, epoch))
        log.info("server %d serving as %s in epoch %d", self.my_id, state.name, epoch)

    def _finish_role(self, reason: str) -> None:
        if self._role_done is not None and not self._role_done.done():
            self._role_done.set_result(reason)

    # ---- following ----------------------------------------------------------------------
    async def _follow(self, decided: Decided, tree: Any, last_zxid: int, accepted: int,
                      current: int) -> str:
        loop = asyncio.get_running_loop()
        self._role_done = loop.create_future()
        leader_spec = self.config.servers.get(decided.vote.leader)
        if leader_spec is None:
            return f"unknown leader {decided.vote.leader}"
        self._open_log()
        observer = self.my_id in self.observers
        learner = Learner(self.my_id, observer, accepted, current, last_zxid, self.now(), self.tick,
                          self.config.init_limit or 10, self.config.sync_limit or 5)
        glue = _LearnerGlue(self, learner, "observer" if observer else "follower", decided.vote.leader)
        core = self._new_core(tree, glue)
        glue.core = core

        def on_packets(stream: QuorumStream, pkts: list[QuorumPacket]) -> None:
            if learner.sync_mode is None:
                for pkt in pkts:
                    if pkt.type in (PacketType.DIFF, PacketType.TRUNC, PacketType.SNAP):
                        log.info("server %d: leader %d syncs us by %s to 0x%x", self.my_id,
                                 decided.vote.leader, PacketType(pkt.type).name, pkt.zxid)
                        break
            last = pkts[-1]  # a SNAP packet ends its batch: its raw stream follows
            if last.type == PacketType.SNAP:
                stream.snap_zxid = last.zxid
                stream.scanner = SnapScanner()
            glue.run(learner.receive_batch(pkts, self.now()))

        def on_snapshot(stream_bytes: bytes, zxid: int) -> None:
            glue.run(learner.snapshot_arrived(stream_bytes, zxid))

        def on_lost(stream: QuorumStream) -> None:
            self._finish_role("connection to the leader lost")

        # Like the reference's Learner.connectToLeader: give up after about half a second
        # (5 attempts 100 ms apart there) or initLimit, and go back to LOOKING: an election
        # may have named a leader that is gone.  The new leader opens its port a moment
        # after the election, so the first retries come quickly.
        deadline = time.monotonic() + min(0.5, (self.config.init_limit or 10) * self.tick / 1000.0)
        stream: QuorumStream | None = None
        pause = 0.01
        while stream is None:
            try:
                _, stream = await asyncio.wait_for(loop.create_connection(
                    lambda: QuorumStream(on_packets, on_lost), leader_spec.host, leader_spec.quorum_port), 5)
            except (TimeoutError, OSError):
                if time.monotonic() + pause > deadline or self._stopping:
                    return f"cannot reach leader {decided.vote.leader} at {leader_spec.host}:" \
                           f"{leader_spec.quorum_port}"
                await asyncio.sleep(pause)
                pause = min(0.1, pause * 2)
        stream.on_snapshot = on_snapshot
        glue.stream = stream
        glue.run(learner.connected(self.now()))

        def tick() -> None:
            glue.run(learner.tick(self.now()))

        ticker = loop.create_task(self._ticker(tick))
        try:
            return await self._role_done
        finally:
            ticker.cancel()
            stream.close()


def _tail(it: Any, n: int) -> list[tuple[TxnHeader, bytes]]:
    from collections import deque

    return list(deque(it, maxlen=n))


class _LeaderGlue:
    """Replication for the leader's server core, and the leader core's action runner."""

    role = "leader"

    def __init__(self, peer: QuorumPeer, leader: Leader) -> None:
        self.peer = peer
        self.leader = leader
        self.core: ZooKeeperServer | None = None
        self.streams: dict[int, QuorumStream] = {}

    def next_zxid(self) -> int:
        return self.leader.next_zxid()

    def propose(self, hdr: TxnHeader, payload: bytes) -> None:
        self.run(self.leader.propose(hdr.zxid, payload))

    def persisted(self, zxid: int) -> None:
        self.run(self.leader.persisted(zxid))

    def forward(self, *args: Any) -> None:
        raise RuntimeError("the leader does not forward requests")

    def revalidate(self, *args: Any) -> None:
        raise RuntimeError("the leader does not revalidate through itself")

    def _log_sync(self, handle: int, how: str, zxid: int) -> None:
        ls = self.leader.learners.get(handle)
        log.info("server %d: syncing learner %s by %s to 0x%x", self.peer.my_id,
                 ls.sid if ls is not None else "?", how, zxid)

    def run(self, actions: list[A.Action]) -> None:
        core = self.core
        assert core is not None
        encoded: dict[int, bytes] = {}
        commit = -1  # consecutive commits are applied together, before any other action
        for a in actions:
            if type(a) is A.Send:
                s = self.streams.get(a.to)
                if s is not None:
                    pkt = a.packet
                    if pkt.type in _SYNC_TYPES:
                        self._log_sync(a.to, PacketType(pkt.type).name, pkt.zxid)
                    key = id(pkt)  # a proposal or commit is one object for every learner
                    enc = encoded.get(key)
                    if enc is None:
                        enc = encoded[key] = pkt.encode()
                    s.send(pkt, encoded=enc)
                continue
            if type(a) is A.Commit:
                commit = a.zxid
                continue
            if commit >= 0:
                core.commit(commit)
                commit = -1
            if isinstance(a, A.SendSnapshot):
                s = self.streams.get(a.to)
                if s is not None:
                    zxid = core.tree.last_processed_zxid
                    self._log_sync(a.to, "SNAP", zxid)
                    s.send(QuorumPacket(PacketType.SNAP, zxid), encode_snap_stream(core.tree))
            elif isinstance(a, A.PersistAcceptedEpoch):
                write_epoch(self.peer.snap_dir, "acceptedEpoch", a.epoch)
            elif isinstance(a, A.PersistCurrentEpoch):
                write_epoch(self.peer.snap_dir, "currentEpoch", a.epoch)
            elif isinstance(a, A.Established):
                self.peer._established(a.epoch, ServerState.LEADING, self.peer.my_id)
            elif isinstance(a, A.ForwardedRequest):
                ls = self.leader.learners.get(a.learner)
                if ls is not None:
                    core.forwarded(a.session_id, a.cxid, a.op, a.body, list(a.auth), ls.sid)
            elif isinstance(a, A.Revalidate):
                session = core.sessions.sessions.get(a.session_id)
                ls = self.leader.learners.get(a.learner)
                valid = session is not None and not session.closing and ls is not None
                if valid:
                    session.timeout = a.timeout  # type: ignore[union-attr]
                    session.owner = ls.sid  # type: ignore[union-attr]  # its writes elsewhere: SESSIONMOVED
                    core.sessions.touch(a.session_id, core.now_ms())
                self.run(self.leader.revalidated(a.learner, a.session_id, valid))
            elif isinstance(a, A.TouchSessions):
                now = core.now_ms()
                for sid, _timeout in a.sessions:
                    core.sessions.touch(sid, now)
            elif isinstance(a, A.Abandon):
                self.peer._finish_role(a.reason)
        if commit >= 0:
            core.commit(commit)
        core.flush_dirty()


class _LearnerGlue:
    """Replication for a follower's or observer's server core; runs learner actions."""

    def __init__(self, peer: QuorumPeer, learner: Learner, role: str, leader_sid: int) -> None:
        self.peer = peer
        self.learner = learner
        self.role = role
        self.leader_sid = leader_sid
        self.core: ZooKeeperServer | None = None
        self.stream: QuorumStream | None = None

    def next_zxid(self) -> int:
        raise RuntimeError("learners do not assign zxids")

    def propose(self, hdr: TxnHeader, payload: bytes) -> None:
        raise RuntimeError("learners do not propose")

    def persisted(self, zxid: int) -> None:
        self.run(self.learner.persisted(zxid))

    def forward(self, session_id: int, cxid: int, op: int, body: bytes,
                auth: list[tuple[str, str]]) -> None:
        if self.stream is not None:
            self.stream.send(QuorumPacket(PacketType.REQUEST, -1, request_data(session_id, cxid, op, body),
                                          tuple(auth)))

    def revalidate(self, session_id: int, timeout: int) -> None:
        if self.stream is not None:
            data = Writer().long(session_id).int(timeout).getvalue()
            self.stream.send(QuorumPacket(PacketType.REVALIDATE, -1, data))

    def _replace_tree(self, tree: Any) -> None:
        core = self.core
        assert core is not None
        tree.set_config_data(self.peer._config_text())
        core.tree = tree
        core.preparer.tree = tree
        core.zxid = tree.last_processed_zxid
        now = core.now_ms()
        for sid, timeout in tree.sessions.items():
            core.sessions.add(sid, timeout, now)

    def run(self, actions: list[A.Action]) -> None:
        core = self.core
        peer = self.peer
        assert core is not None
        for a in actions:
            if isinstance(a, A.Send):
                if self.stream is not None:
                    self.stream.send(a.packet)
            elif isinstance(a, A.LogTxns):
                for p in a.payloads:
                    core.log_proposal(p)
                if a.sync and peer.txn_log is not None:
                    peer.txn_log.sync()
            elif isinstance(a, A.Commit):
                core.commit(a.zxid)
            elif isinstance(a, A.PersistAcceptedEpoch):
                write_epoch(peer.snap_dir, "acceptedEpoch", a.epoch)
            elif isinstance(a, A.PersistCurrentEpoch):
                write_epoch(peer.snap_dir, "currentEpoch", a.epoch)
            elif isinstance(a, A.LoadSnapshot):
                self._replace_tree(decode_snap_stream(a.stream, a.zxid))
            elif isinstance(a, A.Truncate):
                if peer.txn_log is not None:
                    peer.txn_log.truncate(a.zxid)
                tree, _ = recover(peer.config.data_dir, peer.config.data_log_dir)
                self._replace_tree(tree)
            elif isinstance(a, A.TakeSnapshot):
                take_snapshot(core.tree, peer.config.data_dir, fsync=True)
                if peer.txn_log is not None:
                    peer.txn_log.roll()
            elif isinstance(a, A.Established):
                state = ServerState.OBSERVING if self.role == "observer" else ServerState.FOLLOWING
                peer._established(a.epoch, state, self.leader_sid)
            elif isinstance(a, A.PingReply):
                w = Writer()
                for sid, timeout in core.touched.items():
                    w.long(sid).int(timeout)
                core.touched.clear()
                if self.stream is not None:
                    self.stream.send(QuorumPacket(PacketType.PING, a.zxid, w.getvalue()))
            elif isinstance(a, A.SyncReleased):
                core.sync_released()
            elif isinstance(a, A.RevalidateAnswer):
                core.revalidated(a.session_id, a.valid)
            elif isinstance(a, A.Abandon):
                peer._finish_role(a.reason)
        core.flush_dirty()
