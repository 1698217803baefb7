"""QuorumPeer: the ensemble role, which runs election, then leads or follows.

All protocol decisions live in the pure cores (zkpy.election.fle, zkpy.zab.leader,
zkpy.zab.learner) and their actions are carried out by zkpy.zab.executors; this module
moves bytes over TCP, supplies the executors' files (FileDisk) and streams, and swaps
the server core a client connection talks to when the role changes.
The client listener, the housekeeping timers and the signals belong to the runtime
(zkpy.server.runtime), as for a standalone server.  After a role, the tree is kept in
memory and the txns that role logged but did not apply are replayed from the log.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

from zkpy.datatree.tree import DataTree
from zkpy.election.fle import Decided, FastLeaderElection, NewConfig
from zkpy.election.fle import Send as FleSend
from zkpy.election.messages import Notification, ServerState
from zkpy.election.transport import ElectionTransport
from zkpy.jute.codec import JuteError
from zkpy.jute.txns import TxnHeader
from zkpy.persistence.files import VERSION_DIR, valid_snapshots
from zkpy.persistence.recovery import recover, replay, take_snapshot
from zkpy.persistence.snapshot import no_gc
from zkpy.persistence.txnlog import TxnLog, iter_log
from zkpy.server.config import Config
from zkpy.server.core import ZooKeeperServer
from zkpy.server.database import Database
from zkpy.server.dynamic_config import backup_static_config, write_dynamic_config
from zkpy.server.metrics import METRICS
from zkpy.server.quorum_config import QuorumConfig
from zkpy.server.quorum_link import QuorumLink
from zkpy.zab.epochs import load_epochs, write_epoch
from zkpy.zab.executors import LeaderExecutor, LearnerExecutor, load_tree
from zkpy.zab.leader import Leader
from zkpy.zab.learner import Learner
from zkpy.zab.packets import PacketReader, PacketType, QuorumPacket
from zkpy.zab.snapstream import SnapScanner, decode_snap_stream, encode_snap_stream

log = logging.getLogger("zkpy.quorum")


def read_myid(data_dir: Path) -> int:
    try:
        return int((data_dir / "myid").read_text().split()[0])
    except (OSError, ValueError, IndexError) as e:
        raise RuntimeError(f"{data_dir / 'myid'} must hold this server's id (server.N): {e}") from None


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
        # a stream protocol is handed an asyncio.Transport; the base signature only says
        # BaseTransport
        self.transport = cast(asyncio.Transport, transport)

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
        except JuteError as e:  # a peer sending garbage must not take the server down
            log.warning("dropping quorum connection: %s", e)
            self.close()
        except Exception:  # a fault in handling what the peer sent: drop it, with the traceback
            log.exception("dropping quorum connection after an error handling its packets")
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
        # the committed membership (QuorumPeer's quorumVerifier), and a newer one a
        # reconfig proposed that this member logged but has not seen committed (lastSeen)
        self.quorum: QuorumConfig = config.quorum
        self.last_seen: QuorumConfig | None = None
        self.snap_dir = config.data_dir / VERSION_DIR
        self.fle = FastLeaderElection(self.my_id, self.voters, self.observers,
                                      config=self._config_text(), reconfig=config.reconfig_enabled)
        if config.reconfig_enabled and config.dynamic_config_file is None and config.source is not None:
            backup_static_config(config.source)
        self.transport: ElectionTransport | None = None
        self.core = ZooKeeperServer(config, server_id=self.my_id)
        self.core.serving = False
        self.state = ServerState.LOOKING
        self._decided: asyncio.Future[Decided | str] | None = None  # "stopping": request_stop
        self._role_done: asyncio.Future[str] | None = None
        self._halted: asyncio.Future[str] | None = None  # out of service after a disk failure
        self._fle_timer: asyncio.TimerHandle | None = None
        self._stopping = False
        self._role_started = 0  # monotonic ms when the current role began (sync time)
        self.txn_log: TxnLog | None = None
        self.database: Database | None = None
        self.disk = FileDisk(self)
        # set by the runtime: move the client listener (a reconfig changed our client port)
        self.rebind_clients: Callable[[tuple[str, int]], Coroutine[Any, Any, None]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.link = QuorumLink.from_config(config)  # TLS and SASL on both quorum ports

    @property
    def voters(self) -> frozenset[int]:
        return self.quorum.voters

    @property
    def observers(self) -> frozenset[int]:
        return self.quorum.observers

    @property
    def tick(self) -> int:
        return self.config.tick_time

    @staticmethod
    def now() -> int:
        return int(time.monotonic() * 1000)

    # ---- lifecycle (called by the runtime) ----------------------------------------
    def client_address(self) -> tuple[str, int] | None:
        """clientPort, else the port of this server's server.N line; no default port."""
        port = self.config.client_port or self.me.client_port  # Java: clientPort=0 is unset too
        return None if port is None else (self.config.client_port_address, port)

    async def open(self) -> None:
        peers = {sid: (s.host, s.election_port) for sid, s in self.config.servers.items()}
        self.transport = ElectionTransport(self.my_id, (self.me.host, self.me.election_port), peers,
                                           self._on_election_message, link=self.link)
        self.link.start()
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
            if self._stopping or not isinstance(decided, Decided):  # "stopping" implies _stopping
                break
            if decided.state == ServerState.LEADING:
                reason = await self._lead(tree, last_zxid, accepted, current)
            else:
                reason = await self._follow(decided, tree, last_zxid, accepted, current)
            log.warning("server %d leaves %s: %s", self.my_id, self.state.name, reason)
            zab = self.core.zab
            failed = self.core.write_error
            # not after a SNAP was loaded but not yet snapshotted: that tree is not on disk
            kept = zab.kept_tree() if isinstance(zab, LeaderExecutor | LearnerExecutor) else None
            self._retire_core()  # closes the txn log: everything logged is on disk now
            if failed is not None:
                await self._out_of_service(failed)
                break

    async def _out_of_service(self, failure: str) -> None:
        """The txn log failed: leave the ensemble (no votes, no role: this server can no
        longer promise what it acknowledges) and stay up, refusing clients and saying
        why in the 4-letter words, until stopped, as a standalone server does."""
        log.error("server %d leaves the ensemble for good: %s; the others go on without it. "
                  "Fix the disk under %s and restart this server.", self.my_id, failure,
                  self.config.data_log_dir)
        if self.transport is not None:
            await self.transport.close()
            self.transport = None
        self.core.write_error = failure
        self._halted = asyncio.get_running_loop().create_future()
        if not self._stopping:
            await self._halted

    def _load_tree(self, kept: DataTree | None) -> tuple[DataTree, int]:
        """The tree to elect with (executors.load_tree): recovered at start-up, else
        what the last role left in memory plus the txns it logged and did not apply."""
        if kept is not None:
            tree = load_tree(self.disk, kept)
            self._note_last_seen(tree)  # (FileDisk.recover does it for a recovered tree)
        else:
            with no_gc():  # as open_database: no collection walks the new tree before it is frozen
                tree = load_tree(self.disk, None)
                gc.freeze()
        return tree, tree.last_processed_zxid

    def _note_last_seen(self, tree: DataTree) -> None:
        """A reconfig txn logged (and so replayed into the tree) but not activated here is
        the config this member last saw: a leader completes it before serving."""
        node = tree.get("/zookeeper/config")
        seen = QuorumConfig.from_bytes(node.data or b"") if node is not None else None
        # recomputed from the data every time: a reconfig a TRUNC cut off is forgotten
        newer = seen is not None and seen.version > self.quorum.version and self.config.reconfig_enabled
        self.last_seen = seen if newer else None
        self.init_config_node(tree)

    async def close(self) -> None:
        self.request_stop()
        self.link.close()
        if self.transport is not None:
            await self.transport.close()
            self.transport = None
        self._retire_core()

    def request_stop(self) -> None:
        self._stopping = True
        for fut in (self._decided, self._role_done, self._halted):
            if fut is not None and not fut.done():
                fut.set_result("stopping")

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
            elif isinstance(a, NewConfig):
                self._activate(a.config)
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

    async def _elect(self, last_zxid: int, current_epoch: int, tree: Any = None) -> Decided | str:
        self.state = ServerState.LOOKING
        METRICS.inc("looking_count")
        looking_since = self.now()
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
            METRICS.observe("election_time", self.now() - looking_since)
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
        self.init_config_node(tree)
        core = ZooKeeperServer(self.config, tree, self.txn_log, server_id=self.my_id, zab=glue)
        core.attach(asyncio.get_running_loop())
        core.serving = False
        assert self.txn_log is not None
        self.database = Database(self.config, tree, self.txn_log)
        self.database.attach(core)  # snapshots every ~snapCount txns, as standalone
        core.on_disk_failed = lambda: self._finish_role(f"{core.write_error}")
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
                        self._config_text(), quorum=self.quorum, next_quorum=self.last_seen,
                        reconfig=self.config.reconfig_enabled)
        glue = LeaderExecutor(leader, self.disk,
                              lambda epoch: self._established(epoch, ServerState.LEADING, self.my_id),
                              self._finish_role, self.my_id, self._activate)
        core = self._new_core(tree, glue)
        glue.pipeline = core
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

        glue.links = streams
        server = await self.link.serve(factory, self.me.host, self.me.quorum_port)

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
        return self.quorum.text().encode()

    def init_config_node(self, tree: DataTree) -> None:
        """/zookeeper/config shows the committed config (initConfigInZKDatabase)."""
        tree.set_config_data(self._config_text(), mzxid=self.quorum.version, mtime=int(time.time() * 1000))

    def _activate(self, config: QuorumConfig) -> None:
        """A config became the committed one (QuorumPeer.processReconfig): use its
        members for elections and roles, show it in /zookeeper/config, and write
        zoo.cfg.dynamic.<version> and the static file pointing at it, as Java does."""
        if config.version <= self.quorum.version:
            return
        self.quorum = config
        if self.last_seen is not None and self.last_seen.version <= config.version:
            self.last_seen = None
        log.info("server %d: config version 0x%x active: %s", self.my_id, config.version,
                 ", ".join(config.lines()))
        node = self.core.tree.get("/zookeeper/config")
        if node is None or node.data != self._config_text():
            # no txn set it (the initial config's version): as initConfigInZKDatabase; a
            # reconfig's own setData (applied just before) keeps its mzxid and mtime, as
            # Java activates before it applies the txn
            self.init_config_node(self.core.tree)
        self.fle.reconfigure(config.voters, config.observers, self._config_text(), config.version)
        if self.transport is not None:
            for sid, spec in config.members.items():
                if sid != self.my_id:
                    self.transport.peers[sid] = (spec.host, spec.election_port)
        me = config.members.get(self.my_id)
        if me is not None:
            old, self.me = self.me, me
            moved = me.client_port is not None and (me.client_host, me.client_port) != (
                old.client_host, old.client_port)
            if moved and self.rebind_clients is not None and me.client_port is not None:
                address = (me.client_host or "0.0.0.0", me.client_port)
                task = asyncio.get_running_loop().create_task(self.rebind_clients(address))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if self.config.source is not None and self.config.reconfig_enabled:
            erase_client = me is not None and me.client_port is not None
            try:
                write_dynamic_config(self.config.source, config, erase_client)
            except OSError as e:  # as Java: logged, the new config is still used
                log.error("server %d: cannot write the dynamic config file: %s", self.my_id, e)

    def _established(self, epoch: int, state: ServerState, leader_sid: int) -> None:
        core = self.core
        core.tree.last_processed_zxid = max(core.tree.last_processed_zxid, epoch << 32)
        core.serving = True
        if state != ServerState.LEADING:  # ZooKeeper's follower/observer_sync_time
            METRICS.observe("observer_sync_time" if state == ServerState.OBSERVING
                            else "follower_sync_time", self.now() - self._role_started)
        vote = self.fle.current_vote
        self.fle.established(state, type(vote)(leader_sid, vote.zxid, vote.election_epoch, epoch))
        log.info("server %d serving as %s in epoch %d", self.my_id, state.name, epoch)
        if state == ServerState.LEADING and self.database is not None:
            # As the reference's loadData at the start of lead(): a snapshot of the tree the
            # new epoch starts from, so that a restart recovers it without replaying the
            # logs of earlier epochs (which may hold txns a later SNAP superseded).
            self.database.snapshot_in_background()

    def _finish_role(self, reason: str) -> None:
        if self._role_done is not None and not self._role_done.done():
            self._role_done.set_result(reason)

    # ---- following ----------------------------------------------------------------------
    async def _follow(self, decided: Decided, tree: Any, last_zxid: int, accepted: int,
                      current: int) -> str:
        loop = asyncio.get_running_loop()
        self._role_done = loop.create_future()
        self._role_started = self.now()
        leader_spec = self.quorum.members.get(decided.vote.leader)
        if leader_spec is None:
            return f"unknown leader {decided.vote.leader}"
        self._open_log()
        observer = self.my_id in self.observers
        learner = Learner(self.my_id, observer, accepted, current, last_zxid, self.now(), self.tick,
                          self.config.init_limit or 10, self.config.sync_limit or 5,
                          leader_id=decided.vote.leader, quorum=self.quorum,
                          reconfig=self.config.reconfig_enabled)
        state = ServerState.OBSERVING if observer else ServerState.FOLLOWING
        leader_sid = decided.vote.leader
        glue = LearnerExecutor(learner, "observer" if observer else "follower", self.disk,
                               lambda epoch: self._established(epoch, state, leader_sid),
                               self._finish_role, self._activate)
        glue.voters = self.voters
        core = self._new_core(tree, glue)
        glue.pipeline = core

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
                _, stream = await asyncio.wait_for(self.link.connect(
                    lambda: QuorumStream(on_packets, on_lost), leader_spec.host, leader_spec.quorum_port), 5)
            except (TimeoutError, OSError):
                if time.monotonic() + pause > deadline or self._stopping:
                    return f"cannot reach leader {decided.vote.leader} at {leader_spec.host}:" \
                           f"{leader_spec.quorum_port}"
                await asyncio.sleep(pause)
                pause = min(0.1, pause * 2)
        stream.on_snapshot = on_snapshot
        glue.link = stream
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


class FileDisk:
    """The executors' Disk (zkpy.zab.executors) over this peer's data dirs and the
    txn log of its current role."""

    def __init__(self, peer: QuorumPeer) -> None:
        self.peer = peer
        self.config = peer.config

    def write_epoch(self, name: str, epoch: int) -> None:
        write_epoch(self.peer.snap_dir, name, epoch)

    def sync_log(self) -> None:
        if self.peer.txn_log is not None:
            self.peer.txn_log.sync()

    def truncate_log(self, zxid: int) -> None:
        if self.peer.txn_log is not None:
            self.peer.txn_log.truncate(zxid)

    def roll_log(self) -> None:
        if self.peer.txn_log is not None:
            self.peer.txn_log.roll()

    def take_snapshot(self, tree: DataTree) -> None:
        take_snapshot(tree, self.config.data_dir, fsync=True)

    def ensure_snapshot(self, tree: DataTree) -> None:
        if not valid_snapshots(self.peer.snap_dir, 1):
            take_snapshot(tree, self.config.data_dir, fsync=True)  # as Java at start-up

    def recover(self) -> DataTree:
        cfg = self.config
        tree, _ = recover(cfg.data_dir, cfg.data_log_dir, cfg.snapshot_trust_empty,
                          cfg.progress_snapshot_bytes, cfg.progress_txns)
        self.peer._note_last_seen(tree)
        return tree

    def replay_log(self, tree: DataTree) -> int:
        # the general apply: a kept tree is not promised to be free of watches
        count, _ = replay(tree, iter_log(self.config.data_log_dir / VERSION_DIR,
                                         tree.last_processed_zxid), direct_creates=False)
        return count

    def encode_snapshot(self, tree: DataTree) -> bytes:
        return encode_snap_stream(tree)

    def decode_snapshot(self, stream: bytes, zxid: int) -> DataTree:
        tree = decode_snap_stream(stream, zxid)
        self.peer.init_config_node(tree)
        return tree
