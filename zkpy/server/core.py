"""The request pipeline of a standalone server: prepare -> log -> commit -> apply -> reply.

`ZooKeeperServer` owns the tree, the session tracker, the outstanding-change overlay
and the ordered queue of requests waiting for their txns to be durable.  Connections
hand it decoded requests; it hands back reply frames through `conn.send()`.

Ordering: every write goes into `self.queue` in zxid order.  A read from a session
that has anything queued waits in the same queue, so each session sees its own
operations in order; other reads are answered inline from the tree.  The txn log is
synced in a worker thread (group commit: every txn appended before a sync is covered
by it) and only then are txns applied and replied to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from zkpy.datatree.acl import check_acl, require, world_readable
from zkpy.datatree.tree import ApplyResult, DataTree, Event
from zkpy.jute.codec import INT, JuteError, Reader
from zkpy.jute.constants import (
    Err,
    KeeperError,
    OpCode,
    Perm,
)
from zkpy.jute.records import (
    ACL,
    OPEN_ACL_UNSAFE,
    REQUEST_DECODERS,
    ConnectRequest,
    MultiRequest,
    PathWatch,
)
from zkpy.jute.txns import (
    TXN_HEADER,
    CloseSessionTxn,
    CreateSessionTxn,
    ErrorTxn,
    SetDataTxn,
    Txn,
    TxnHeader,
    decode_txn,
    encode_entry,
)
from zkpy.server import reads, session_lifecycle, session_requests
from zkpy.server.config import Config
from zkpy.server.groupcommit import GroupCommit
from zkpy.server.local_sessions import creates_ephemeral, server_of
from zkpy.server.metrics import METRICS
from zkpy.server.prepare import Preparer, Settings
from zkpy.server.replies import frame, notification, ustring, write_result_body
from zkpy.server.sessions import SessionTracker
from zkpy.server.stats import ServerStats

if TYPE_CHECKING:
    from zkpy.server.connection import ClientConnection

log = logging.getLogger("zkpy.server")

WRITE_OPS = frozenset({
    OpCode.CREATE, OpCode.CREATE2, OpCode.CREATE_CONTAINER, OpCode.CREATE_TTL, OpCode.DELETE,
    OpCode.SET_DATA, OpCode.SET_ACL, OpCode.MULTI, OpCode.CLOSE_SESSION, OpCode.DELETE_CONTAINER,
})
# Stands in for a request whose record could not be decoded: Java answers it with
# MARSHALLINGERROR (a write still goes through as an error txn) and keeps the connection.
MALFORMED: Any = object()

# NamedTuple constructors run Python code; on the hot paths build the tuple directly
_tuple = tuple.__new__


class Entry:
    """A txn waiting in the commit queue; conn is the local client that asked for it."""

    __slots__ = ("conn", "xid", "op", "hdr", "txn")

    def __init__(self, conn: Any, xid: int, op: int, hdr: TxnHeader, txn: Txn) -> None:
        self.conn = conn
        self.xid = xid
        self.op = op
        self.hdr = hdr
        self.txn = txn


# kinds of items in a connection's `pending` queue
WAIT_WRITE, WAIT_READ, WAIT_SYNC = 0, 1, 2
LOCAL_CLOSE = object()  # the request of a queued closeSession of a local session


class Replication(Protocol):
    """What an ensemble role (zkpy.zab.peer) provides to the request pipeline."""

    role: str  # "leader", "follower" or "observer"

    def next_zxid(self) -> int: ...

    def propose(self, hdr: TxnHeader, payload: bytes) -> None: ...

    def persisted(self, zxid: int) -> None: ...

    def forward(self, session_id: int, cxid: int, op: int, body: bytes,
                auth: list[tuple[str, str]]) -> None: ...

    def revalidate(self, session_id: int, timeout: int) -> None: ...


class ZooKeeperServer:
    """Server core: sessions, the write pipeline and read dispatch, for every role.

    Standalone, txns commit when the local log is durable.  With `zab` set, the leader
    proposes each txn and commits on a quorum of acks; a learner forwards writes to the
    leader and logs and applies what the leader proposes and commits.
    """

    def __init__(self, config: Config, tree: DataTree | None = None, txn_log: Any = None,
                 server_id: int = 1, zab: Replication | None = None) -> None:
        self.config = config
        # The owner the leader (or standalone) records for sessions whose client is
        # connected here; a learner's clients are owned by that learner's server id.
        self.server_id = server_id
        self.tree = tree or DataTree()
        self._readable_acl: tuple[ACL, ...] = OPEN_ACL_UNSAFE  # see _deliver
        self.preparer = Preparer(self.tree, Settings(config.skip_acl, config.extended_types,
                                                           config.sasl_acl, config.x509_acl))
        self.preparer.settings.enforce_quota = config.enforce_quota
        self.audit = config.audit
        self.txn_log = txn_log
        self.zab = zab
        self.zxid = self.tree.last_processed_zxid
        self.queue: deque[Entry] = deque()
        self.connections: set[ClientConnection] = set()
        self.dirty: list[ClientConnection] = []
        self.stats = ServerStats()
        self.sessions = SessionTracker(server_id, config.tick_time, self.now_ms(),
                                       int(time.time() * 1000))
        self.local_sessions: dict[int, ClientConnection] = {}  # session id -> its connection here
        # localSessionsEnabled (ensemble only): sessions that live on this member alone
        self.local_tracker: SessionTracker | None = None
        if config.local_sessions_enabled and zab is not None:
            self.local_tracker = SessionTracker(server_id, config.tick_time, self.now_ms(), 0)
        self.connecting: dict[int, ClientConnection] = {}  # createSession/revalidate in flight
        self.waiting_syncs: deque[ClientConnection] = deque()
        self.touched: dict[int, int] = {}  # learner: sessions seen since the last ping
        self.write_error: str | None = None  # set for good when the txn log fails
        self._serving = True
        self.on_disk_failed: Callable[[], None] | None = None  # the role's hook (ensemble)
        self.read_only: bool = False  # readonlymode.enabled and no quorum: reads for read-only clients
        self.throttled = False
        self.waiting = 0  # reads and syncs queued in connections' `pending` (outstanding)
        # seconds; 0 (zkpy.inlineSyncMicros=0) means always the thread, even after free syncs
        self._outstanding_limit = config.global_outstanding_limit
        self.group = GroupCommit(txn_log, config.inline_sync_us, config.fsync_warning_ms,
                                 self._durable, self._disk_failed, self.zxid)
        self.on_applied: Callable[[int], None] | None = None  # snapshot trigger: txns applied
        self.proposal_sizes = [-1, -1, -1]  # leader: last, max, min proposal bytes (mntr)
        now = self.now_ms()
        for sid, timeout in self.tree.sessions.items():
            self.sessions.add(sid, timeout, now)

    @property
    def serving(self) -> bool:
        """Whether clients are served: the role says so and the txn log has not failed."""
        return self._serving and self.write_error is None

    @serving.setter
    def serving(self, value: bool) -> None:
        self._serving = value

    @property
    def mode(self) -> str:
        if self.read_only:
            return "read-only"
        return "standalone" if self.zab is None else self.zab.role

    @property
    def is_learner(self) -> bool:
        return self.zab is not None and self.zab.role != "leader"

    # ---- clocks -------------------------------------------------------------------
    @staticmethod
    def now_ms() -> int:
        return int(time.monotonic() * 1000)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.group.loop = loop

    def close(self) -> None:
        self.group.close()

    # ---- sessions: handshake, revalidation, expiry (session_lifecycle.py) -------------
    def connect(self, conn: ClientConnection, req: ConnectRequest) -> None:
        """Handle a ConnectRequest; the response is sent when the session is settled."""
        session_lifecycle.connect(self, conn, req)

    def revalidated(self, sid: int, valid: bool) -> None:
        """Learner: the leader's answer to a session revalidation."""
        session_lifecycle.revalidated(self, sid, valid)

    def expire_sessions(self) -> None:
        session_lifecycle.expire_sessions(self)

    def sweep_containers(self, wall_ms: int, limit: int) -> int:
        """Delete empty containers that have had children, and expired TTL nodes."""
        return session_lifecycle.sweep_containers(self, wall_ms, limit)

    # ---- requests -------------------------------------------------------------------
    def touch(self, conn: ClientConnection) -> None:
        """conn's client sent something: its session is alive (called once per read batch)."""
        lt = self.local_tracker
        if lt is not None and lt.touch(conn.session_id, self.now_ms()):
            return
        if self.is_learner:
            self.touched[conn.session_id] = conn.timeout
        else:
            self.sessions.touch(conn.session_id, self.now_ms())

    def request(self, conn: ClientConnection, xid: int, op: int, req: Any, body: bytes = b"") -> None:
        """A decoded request from an established session (body: the raw request record)."""
        zab = self.zab
        if zab is None or zab.role == "leader":
            session = self.sessions.sessions.get(conn.session_id)
            if session is None or session.closing:
                if session is not None or not self._is_local(conn.session_id):
                    conn.send(frame(xid, self.tree.last_processed_zxid, Err.SESSIONEXPIRED))
                    return
            elif session.owner != self.server_id:
                if session.owner is not None:
                    # The session moved to a learner: as the reference, a connection that
                    # no longer owns its session is closed without an answer (a write is
                    # audited as refused, as Java's error txn is).
                    if self.audit is not None and op in WRITE_OPS:
                        self.audit.write(conn, op, req, ApplyResult(Err.SESSIONMOVED))
                    conn.close()
                    return
                session.owner = self.server_id
        if op == OpCode.AUTH:
            session_requests.authenticate(self.config, conn, req)
            return
        if op == OpCode.SASL:
            session_requests.sasl(self.config, conn, xid, req)
            return
        if self.config.enforce_auth_schemes and not session_requests.enforce_auth(self.config,
                                                                                    conn, xid):
            return
        if req is MALFORMED and op not in WRITE_OPS:
            if conn.pending:
                self._wait(conn, (WAIT_READ, xid, op, req, time.perf_counter()))
            else:
                self._read(conn, xid, op, req, 0.0)
            return
        if self.read_only and (op in WRITE_OPS or op == OpCode.SYNC):
            if op == OpCode.CLOSE_SESSION:
                self.sessions.remove(conn.session_id)
                conn.send(frame(xid, self.tree.last_processed_zxid, 0))
                conn.close_after_flush()
            else:
                conn.send(frame(xid, self.tree.last_processed_zxid, Err.NOTREADONLY))
            return
        if op == OpCode.CLOSE_SESSION and self._is_local(conn.session_id):
            # no txn: answered here, in order with the session's earlier reads
            if conn.pending:
                self._wait(conn, (WAIT_READ, xid, op, LOCAL_CLOSE, time.perf_counter()))
            else:
                self._close_local(conn, xid)
            return
        if op in WRITE_OPS or (op == OpCode.RECONFIG and self.config.reconfig_enabled):
            conn.pending.append((WAIT_WRITE, xid, op, req, time.perf_counter()))
            self._write(conn, xid, op, req, body)
        elif op == OpCode.SYNC and (self.is_learner or self.queue):
            self._wait(conn, (WAIT_SYNC, xid, op, req, self.zxid))
            if self.is_learner:
                assert self.zab is not None
                self.waiting_syncs.append(conn)
                self.zab.forward(conn.session_id, xid, OpCode.SYNC, body, conn.auth_ids)
            else:
                self.waiting_syncs.append(conn)
        elif conn.pending:
            self._wait(conn, (WAIT_READ, xid, op, req, time.perf_counter()))
        else:
            self._read(conn, xid, op, req, 0.0)

    def _wait(self, conn: ClientConnection, item: tuple[Any, ...]) -> None:
        """Queue a read or sync behind conn's earlier requests.  It is outstanding, as
        Java's requestsInProcess counts reads too, so it counts against
        globalOutstandingLimit."""
        conn.pending.append(item)
        self.waiting += 1
        if len(self.queue) + self.waiting >= self._outstanding_limit and not self.throttled:
            self._throttle(True)

    def forget_pending(self, conn: ClientConnection) -> None:
        """conn is gone: its queued reads and syncs are no longer outstanding (its
        writes still are, until they commit)."""
        self.waiting -= sum(1 for item in conn.pending if item[0] != WAIT_WRITE)
        if self.audit is None:
            conn.pending.clear()
        else:  # each write is audited when it is applied (`_audit_unanswered`)
            writes = [item for item in conn.pending if item[0] == WAIT_WRITE]
            conn.pending.clear()
            conn.pending.extend(writes)
        self._maybe_unthrottle()

    def _maybe_unthrottle(self) -> None:
        if self.throttled and len(self.queue) + self.waiting < max(1, self._outstanding_limit // 2):
            self._throttle(False)

    def _write(self, conn: ClientConnection, xid: int, op: int, req: Any, body: bytes) -> None:
        if self.write_error is not None:
            conn.pending.pop()
            conn.send(frame(xid, self.tree.last_processed_zxid, Err.SYSTEMERROR))
            return
        sid = conn.session_id
        if self.local_tracker is not None and sid in self.local_tracker.sessions \
                and creates_ephemeral(op, req):
            if not self.config.local_sessions_upgrading:
                conn.pending.pop()
                conn.send(frame(xid, self.tree.last_processed_zxid, Err.EPHEMERALONLOCALSESSION))
                return
            self._upgrade(sid)
        if self.is_learner:
            assert self.zab is not None
            self.zab.forward(sid, xid, op, body, conn.auth_ids)
            return
        if op == OpCode.DELETE_CONTAINER:
            self._append(conn, xid, op, sid, ErrorTxn(Err.BADARGUMENTS), OpCode.ERROR)
            return
        txn, type_ = self._prepare(sid, op, req, conn.auth_ids, self.server_id)
        self._append(conn, xid, op, sid, txn, type_)

    def _is_local(self, sid: int) -> bool:
        return self.local_tracker is not None and sid in self.local_tracker.sessions

    def _upgrade(self, sid: int) -> None:
        """Make local session sid global (its first ephemeral create): a createSession
        goes to the leader ahead of the write that needs it."""
        assert self.local_tracker is not None
        timeout = self.local_tracker.sessions[sid].timeout
        self.local_tracker.remove(sid)
        log.info("upgrading local session 0x%x to a global session", sid & 0xFFFFFFFFFFFFFFFF)
        if self.is_learner:
            assert self.zab is not None
            self.touched[sid] = timeout
            self.zab.forward(sid, 0, OpCode.CREATE_SESSION, INT.pack(timeout), [])
            return
        self.sessions.add(sid, timeout, self.now_ms()).owner = self.server_id
        self._append(None, 0, OpCode.CREATE_SESSION, sid, CreateSessionTxn(timeout),
                     OpCode.CREATE_SESSION)

    def _close_local(self, conn: ClientConnection, xid: int) -> None:
        assert self.local_tracker is not None
        self.local_tracker.remove(conn.session_id)
        self.local_sessions.pop(conn.session_id, None)
        conn.send(frame(xid, self.tree.last_processed_zxid, 0))
        conn.close_after_flush()

    def _prepare(self, sid: int, op: int, req: Any, auth: list[tuple[str, str]],
                 owner: int) -> tuple[Txn, int]:
        """Validate a write and build its txn; owner is the server the client is on."""
        zxid = self.zab.next_zxid() if self.zab is not None else self.zxid + 1
        if op == OpCode.CLOSE_SESSION:  # not owner-checked: expiry closes sessions too
            self.sessions.set_closing(sid)
            return CloseSessionTxn(self.preparer.close_session(sid, zxid)), OpCode.CLOSE_SESSION
        if sid != 0:
            session = self.sessions.sessions.get(sid)
            if session is None or session.closing:
                # a session this leader does not track may be a learner's local session
                # (as the reference: one whose id names another server, or ours); an
                # ephemeral needs a global session
                lt = self.local_tracker
                if session is not None or lt is None or creates_ephemeral(op, req) \
                        or not (sid in lt.sessions or server_of(sid) != self.server_id & 0xFF):
                    return ErrorTxn(Err.SESSIONEXPIRED), OpCode.ERROR
            elif session.owner != owner:
                if session.owner is not None:  # resumed on another server since
                    return ErrorTxn(Err.SESSIONMOVED), OpCode.ERROR
                session.owner = owner
        if req is MALFORMED:
            return ErrorTxn(Err.MARSHALLINGERROR), OpCode.ERROR
        try:
            if op == OpCode.MULTI:
                return self.preparer.prepare_multi(req, zxid, sid, auth), OpCode.MULTI
            if op == OpCode.RECONFIG:
                return self._prepare_reconfig(req, zxid, auth), op
            return self.preparer.prepare(op, req, zxid, sid, auth), op
        except KeeperError as e:
            return ErrorTxn(e.code), OpCode.ERROR

    def _prepare_reconfig(self, req: Any, zxid: int, auth: list[tuple[str, str]]) -> SetDataTxn:
        """The reconfig op on the leader (the checks are the leader core's, in
        PrepRequestProcessor's order; then WRITE on /zookeeper/config): a setData of
        /zookeeper/config with the new config, logged under the reconfig type."""
        if not self.config.reconfig_enabled:
            raise KeeperError(Err.RECONFIGDISABLED)
        prepare = getattr(self.zab, "prepare_reconfig", None)
        if prepare is None:  # standalone: ZooKeeper has no reconfig there
            raise KeeperError(Err.UNIMPLEMENTED)
        text = prepare(req.joining, req.leaving, req.new_members, req.cur_config_id, zxid,
                       self.now_ms(), self.config.standalone_enabled)
        node = self.tree.nodes["/zookeeper/config"]
        if self.config.skip_acl:
            log.warning("skipACL is set, reconfig operation will skip ACL checks!")
        require(node.acl, Perm.WRITE, auth, self.config.skip_acl)
        return SetDataTxn("/zookeeper/config", text, -1)

    def forwarded(self, sid: int, cxid: int, op: int, body: bytes, auth: list[tuple[str, str]],
                  owner: int) -> None:
        """Leader: a write that learner `owner` (its server id) forwarded for a client."""
        if self.write_error is not None:
            return
        if op == OpCode.CREATE_SESSION:
            timeout = INT.unpack_from(body)[0] if len(body) >= 4 else self.config.max_session_timeout
            self.sessions.add(sid, timeout, self.now_ms()).owner = owner
            self._append(None, cxid, op, sid, CreateSessionTxn(timeout), OpCode.CREATE_SESSION)
            return
        self.sessions.touch(sid, self.now_ms())
        if op == OpCode.DELETE_CONTAINER:
            self._append(None, cxid, op, sid, ErrorTxn(Err.BADARGUMENTS), OpCode.ERROR)
            return
        decoder = REQUEST_DECODERS.get(op)
        try:
            req = decoder(Reader(body)) if decoder is not None else None
        except JuteError:
            req = None
        if req is None and op != OpCode.CLOSE_SESSION:
            self._append(None, cxid, op, sid, ErrorTxn(Err.MARSHALLINGERROR), OpCode.ERROR)
            return
        txn, type_ = self._prepare(sid, op, req, list(auth), owner)
        self._append(None, cxid, op, sid, txn, type_)

    def _append(self, conn: Any, xid: int, op: int, sid: int, txn: Txn, type_: int) -> None:
        zab = self.zab
        self.zxid = zxid = zab.next_zxid() if zab is not None else self.zxid + 1
        now = int(time.time() * 1000)
        hdr = _tuple(TxnHeader, (sid, xid, zxid, now, type_))
        entry = encode_entry(sid, xid, zxid, now, type_, txn)
        if self.txn_log is not None:
            self.txn_log.append_entry(zxid, entry)
        if zab is not None:
            zab.propose(hdr, entry)
            if zab.role == "leader":
                METRICS.proposal_count.value += 1
                sizes, size = self.proposal_sizes, len(entry)
                sizes[0] = size
                if size > sizes[1]:
                    sizes[1] = size
                if sizes[2] < 0 or size < sizes[2]:
                    sizes[2] = size
        group = self.group
        group.appended = zxid
        queue = self.queue
        queue.append(Entry(conn, xid, op, hdr, txn))
        if len(queue) + self.waiting >= self._outstanding_limit and not self.throttled:
            self._throttle(True)
        group.request()

    def _throttle(self, on: bool) -> None:
        """Back-pressure (globalOutstandingLimit): stop reading from clients until half of
        the outstanding requests (txns in the queue, reads and syncs waiting behind them)
        are answered."""
        self.throttled = on
        for c in list(self.connections):
            c.pause(on)

    def log_proposal(self, payload: bytes) -> int:
        """Learner: log a txn the leader proposed (TxnHeader + record); returns its zxid."""
        hdr = _tuple(TxnHeader, TXN_HEADER.unpack_from(payload))
        txn = decode_txn(hdr.type, payload[TXN_HEADER.size:])
        if self.txn_log is not None:
            self.txn_log.append_entry(hdr.zxid, payload)
        self.zxid = max(self.zxid, hdr.zxid)
        METRICS.learner_proposals.value += 1
        self.group.appended = self.zxid
        self.queue.append(Entry(None, hdr.cxid, hdr.type, hdr, txn))
        self.group.request()
        return hdr.zxid

    def replace_tree(self, tree: DataTree) -> None:
        """Learner: the tree a sync brought (SNAP) or left (TRUNC) replaces ours; its
        sessions are tracked from now on."""
        self.tree = tree
        self.preparer.tree = tree
        self.zxid = tree.last_processed_zxid
        now = self.now_ms()
        for sid, timeout in tree.sessions.items():
            self.sessions.add(sid, timeout, now)

    def submit_internal(self, op: int, req: Any) -> None:
        """A write from the server itself (container and TTL sweeps), session 0.

        deleteContainer comes only this way: from a client (`_write`, `forwarded`) it is
        refused with BADARGUMENTS before any ACL or path check, as Apache ZooKeeper 3.8
        does (it reads that op's path from the whole request buffer, header included, so a
        client's never names a valid path); nothing is deleted, the connection stays open.
        """
        if self.write_error is not None or self.is_learner:
            return
        txn, type_ = self._prepare(0, op, req, [("super", "")], self.server_id)
        self._append(None, 0, op, 0, txn, type_)

    # ---- durability -------------------------------------------------------------------
    def _durable(self, upto: int) -> None:
        """The txn log is synced up to zxid upto (groupcommit.py)."""
        if self.zab is not None:
            self.zab.persisted(upto)
        else:
            self.commit(upto)

    def _disk_failed(self, exc: BaseException) -> None:
        """The txn log could not be made durable: nothing appended since the last good
        sync is acknowledged, and this server stops serving clients for good, as Java
        stops on a failed log write: every client connection is closed (clients move
        to another server), new ones are closed at the handshake, ``ruok`` no longer
        answers ``imok`` and srvr/stat/mntr say why.  The process stays up so that
        monitoring can see the state; restart it once the disk is fixed (recovery
        replays what reached the disk)."""
        self.write_error = f"txn log sync failed: {exc}"
        log.error("%s. This server no longer serves clients: every client connection is "
                  "closed and new ones are refused. Free space or fix the disk under %s, then "
                  "restart the server.", self.write_error, self.config.data_log_dir)
        for e in list(self.queue):
            if e.conn is not None:
                e.conn.close()
        self.queue.clear()
        for conn in list(self.connections):
            conn.close()
        if self.on_disk_failed is not None:
            self.on_disk_failed()

    def commit(self, upto: int) -> None:
        """Apply every queued txn up to zxid upto, in order, and answer its client."""
        q = self.queue
        n = last = 0
        while q and q[0].hdr.zxid <= upto:
            e = q.popleft()
            self._apply(e)
            last = e.hdr.zxid
            n += 1
        if n:
            self._committed(n, e.hdr.time)
            self.preparer.applied(last)
            if self.on_applied is not None:
                self.on_applied(n)
        if self.waiting_syncs and not self.is_learner:
            self._release_syncs()
        self._maybe_unthrottle()
        self.flush_dirty()

    def _committed(self, n: int, txn_time: int) -> None:
        """Metrics of n txns just applied: ZooKeeper's propagation latency (txn time to
        applied here) for the last, and the leader's proposal latency or a learner's
        commits received."""
        m = METRICS
        zab = self.zab
        latency = int(time.time() * 1000) - txn_time
        if latency >= 0:
            m.propagation_latency.add(latency)
        if zab is None:
            return
        if zab.role == "leader":
            m.commit_count.value += n
            if latency >= 0:
                m.proposal_latency.add(latency)
        else:
            m.learner_commits.value += n

    def _release_syncs(self) -> None:
        done = self.tree.last_processed_zxid
        ws = self.waiting_syncs
        for _ in range(len(ws)):
            conn = ws.popleft()
            if conn.pending and conn.pending[0][0] == WAIT_SYNC and conn.pending[0][4] <= done:
                self._drain(conn)
            elif not conn.closed:
                ws.append(conn)

    def sync_released(self) -> None:
        """Learner: the leader answered the oldest forwarded sync (one answer for each,
        also for a client that has gone since: its answer releases nobody else)."""
        if self.waiting_syncs:
            conn = self.waiting_syncs.popleft()
            if not conn.closed:
                for i, item in enumerate(conn.pending):
                    if item[0] == WAIT_SYNC:
                        conn.pending[i] = (WAIT_SYNC, item[1], item[2], item[3], -1)
                        break
                self._drain(conn)
        self._maybe_unthrottle()
        self.flush_dirty()

    def flush_dirty(self) -> None:
        """Write out every connection that has replies waiting (one write each)."""
        dirty = self.dirty
        if dirty:
            self.dirty = []
            for conn in dirty:
                conn.flush()

    def _apply(self, e: Entry) -> None:
        hdr = e.hdr
        res, events = self.tree.apply(hdr, e.txn)
        if events:
            self._deliver(events)
        sid = hdr.client_id
        if hdr.type == OpCode.CREATE_SESSION:
            if self.is_learner:
                # the header's type fixes the record's
                self.sessions.add(sid, cast(CreateSessionTxn, e.txn).timeout, self.now_ms())
            if self.local_tracker is not None:  # upgraded: global from now on
                self.local_tracker.remove(sid)
            conn = self.connecting.pop(sid, None)
            if conn is not None and not conn.closed:
                session_lifecycle.established(self, conn, sid, conn.pending_timeout)
            return
        if hdr.type == OpCode.CLOSE_SESSION:
            self.sessions.remove(sid)
            self.touched.pop(sid, None)
            if self.audit is not None and res.subs:
                self.audit.ephemerals_deleted(sid, res.subs)
        conn = e.conn
        if conn is None:
            conn = self.local_sessions.get(sid)
            if conn is not None and not (conn.pending and conn.pending[0][0] == WAIT_WRITE
                                         and conn.pending[0][1] == hdr.cxid):
                conn = None
            if conn is None:
                if hdr.type == OpCode.CLOSE_SESSION:
                    self._drop_session(sid)
                return
        if conn.closed:
            if self.audit is not None:  # a write that committed after its client left
                self._audit_unanswered(conn, res)
                if hdr.type == OpCode.CLOSE_SESSION:  # found through its kept write
                    self.local_sessions.pop(sid, None)
            return
        if res.err == Err.SESSIONMOVED:
            # The leader found the session owned by another server (the client resumed it
            # there): close without an answer, as the reference's FinalRequestProcessor.
            if self.audit is not None:
                self._audit_unanswered(conn, res)
            conn.close()
            return
        item = conn.pending.popleft()
        if self.audit is not None:
            self.audit.write(conn, item[2], item[3], res)
        self.stats.record(item[4], METRICS.updatelatency)
        op = item[2]
        if res.err:
            conn.send(frame(e.xid, hdr.zxid, res.err))
        elif op == OpCode.SET_DATA:  # the most common write: the body is the Stat
            conn.send(frame(e.xid, hdr.zxid, 0, res.stat or b""))
        elif op == OpCode.RECONFIG:  # GetDataResponse: the new config and the Stat
            data = self.tree.nodes["/zookeeper/config"].data or b""
            conn.send(frame(e.xid, hdr.zxid, 0, INT.pack(len(data)) + data + (res.stat or b"")))
        else:
            conn.send(frame(e.xid, hdr.zxid, 0, write_result_body(op, res)))
        conn.last_op_code = op
        conn.last_zxid = hdr.zxid
        if hdr.type == OpCode.CLOSE_SESSION:
            self.local_sessions.pop(sid, None)
            conn.close_after_flush()
            return
        pending = conn.pending
        if pending and pending[0][0] != WAIT_WRITE:  # reads queued behind this write
            self._drain(conn)

    def _audit_unanswered(self, conn: ClientConnection, res: ApplyResult) -> None:
        """Audit the oldest write of conn that no client will see answered: Java's
        FinalRequestProcessor logs those too (`forget_pending` keeps a closed
        connection's writes for this)."""
        assert self.audit is not None
        for i, item in enumerate(conn.pending):
            if item[0] == WAIT_WRITE:
                del conn.pending[i]
                self.audit.write(conn, item[2], item[3], res)
                return

    def _drop_session(self, sid: int) -> None:
        conn = self.local_sessions.pop(sid, None)
        if conn is not None:
            conn.close()

    def _drain(self, conn: ClientConnection) -> None:
        """Answer the reads (and released syncs) at the head of conn's queue."""
        pending = conn.pending
        while pending and not conn.closed:
            kind, xid, op, req, extra = pending[0]
            if kind == WAIT_WRITE:
                return
            if kind == WAIT_SYNC:
                if extra != -1 and (self.is_learner or extra > self.tree.last_processed_zxid):
                    return
                pending.popleft()
                self.waiting -= 1
                conn.send(frame(xid, self.tree.last_processed_zxid, 0, ustring(req.path)))
                continue
            pending.popleft()
            self.waiting -= 1
            self._read(conn, xid, op, req, extra)

    def _deliver(self, events: list[Event]) -> None:
        """Send each event to those of its watchers that may READ the node (CVE-2024-23944:
        Apache ZooKeeper checks the event's ACL against the watcher connection's auth ids
        when it delivers; a one-shot watch is used up all the same).  Almost every node
        shares one interned world-readable ACL tuple, remembered in _readable_acl, so the
        common case costs one identity test per event."""
        by_type = METRICS.watchers_by_event
        for ev in events:
            if not ev.watchers:
                continue
            summary = by_type.get(ev.type)
            if summary is not None:
                summary.add(len(ev.watchers))
            # the tree holds any hashable watcher; this server registers only connections
            watchers = cast("set[ClientConnection]", ev.watchers)
            data = notification(ev.type, ev.path)
            acl = ev.acl
            if acl is self._readable_acl or self.config.skip_acl:
                for w in watchers:
                    w.notify(data)
            elif world_readable(acl):
                self._readable_acl = acl
                for w in watchers:
                    w.notify(data)
            else:
                for w in watchers:
                    if check_acl(acl, Perm.READ, w.auth_ids):
                        w.notify(data)

    # ---- reads ----------------------------------------------------------------------
    def _read(self, conn: ClientConnection, xid: int, op: int, req: Any, started: float) -> None:
        """Answer a read; started is when it was queued, 0.0 for one answered on arrival."""
        tree = self.tree
        skip = self.config.skip_acl
        if req is LOCAL_CLOSE:
            self._close_local(conn, xid)
            return
        try:
            if req is MALFORMED:
                raise KeeperError(Err.MARSHALLINGERROR)
            if op == OpCode.GET_DATA:
                body = reads.get_data(tree, conn, req, skip)
            elif op == OpCode.EXISTS:
                body = reads.exists(tree, conn, req, skip)
            elif op == OpCode.GET_CHILDREN:
                body = reads.get_children(tree, conn, req, skip, False)
            elif op == OpCode.GET_CHILDREN2:
                body = reads.get_children(tree, conn, req, skip, True)
            elif op == OpCode.PING:
                conn.send(frame(xid, tree.last_processed_zxid, 0))
                return
            elif op == OpCode.GET_ACL:
                body = reads.get_acl(tree, conn, req, skip)
            elif op == OpCode.SYNC:
                body = ustring(req.path)
            elif op == OpCode.MULTI_READ:
                body = reads.multi_read(tree, conn, req, skip)
            elif op == OpCode.GET_ALL_CHILDREN_NUMBER:
                body = reads.get_all_children_number(tree, conn, req, skip)
            elif op == OpCode.GET_EPHEMERALS:
                body = reads.get_ephemerals(tree, conn, req)
            elif op in (OpCode.SET_WATCHES, OpCode.SET_WATCHES2):
                session_requests.set_watches(tree, conn, req)
                body = b""
            elif op == OpCode.ADD_WATCH:
                body = session_requests.add_watch(conn, req)
            elif op in (OpCode.CHECK_WATCHES, OpCode.REMOVE_WATCHES):
                session_requests.check_watches(tree, conn, req, op == OpCode.REMOVE_WATCHES)
                body = b""
            elif op == OpCode.WHO_AM_I:
                body = session_requests.who_am_i(conn.auth_ids)
            elif op == OpCode.RECONFIG:
                if self.audit is not None:
                    self.audit.refused(conn, "reconfig")
                raise KeeperError(Err.RECONFIGDISABLED if not self.config.reconfig_enabled
                                  else Err.UNIMPLEMENTED)
            else:
                raise KeeperError(Err.UNIMPLEMENTED)
        except KeeperError as e:
            conn.send(frame(xid, tree.last_processed_zxid, e.code))
            self.stats.record(started, METRICS.readlatency)
            conn.last_op(op, tree.last_processed_zxid)
            return
        conn.send(frame(xid, tree.last_processed_zxid, 0, body))
        self.stats.record(started, METRICS.readlatency)
        conn.last_op(op, tree.last_processed_zxid)


__all__ = ["ZooKeeperServer", "MultiRequest", "PathWatch"]
