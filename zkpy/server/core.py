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
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from zkpy.datatree.acl import digest_id
from zkpy.datatree.tree import DataTree, Event, owner_ttl
from zkpy.jute.constants import (
    XID_AUTH,
    Err,
    KeeperError,
    OpCode,
    WatcherType,
)
from zkpy.jute.records import (
    AuthPacket,
    ConnectRequest,
    MultiRequest,
    PathOnly,
    PathType,
    PathWatch,
    SetWatches,
)
from zkpy.jute.txns import (
    CloseSessionTxn,
    CreateSessionTxn,
    ErrorTxn,
    Txn,
    TxnHeader,
    encode_txn,
)
from zkpy.server import reads
from zkpy.server.config import Config
from zkpy.server.prepare import Preparer, Settings
from zkpy.server.replies import frame, notification, write_result_body
from zkpy.server.sessions import SessionTracker, session_password
from zkpy.server.stats import ServerStats

if TYPE_CHECKING:
    from zkpy.server.connection import ClientConnection

log = logging.getLogger("zkpy.server")

WRITE_OPS = frozenset({
    OpCode.CREATE, OpCode.CREATE2, OpCode.CREATE_CONTAINER, OpCode.CREATE_TTL, OpCode.DELETE,
    OpCode.SET_DATA, OpCode.SET_ACL, OpCode.MULTI, OpCode.CLOSE_SESSION, OpCode.DELETE_CONTAINER,
})
INVALID_PASSWD = bytes(16)


class Entry:
    """A request waiting in the commit queue (hdr is None for a read)."""

    __slots__ = ("conn", "xid", "op", "req", "hdr", "txn", "started")

    def __init__(self, conn: Any, xid: int, op: int, req: Any,
                 hdr: TxnHeader | None, txn: Txn, started: float) -> None:
        self.conn = conn
        self.xid = xid
        self.op = op
        self.req = req
        self.hdr = hdr
        self.txn = txn
        self.started = started


class ZooKeeperServer:
    """Standalone server core: sessions, the write pipeline and read dispatch."""

    def __init__(self, config: Config, tree: DataTree | None = None, txn_log: Any = None,
                 server_id: int = 1) -> None:
        self.config = config
        self.tree = tree or DataTree()
        self.preparer = Preparer(self.tree, Settings(config.skip_acl, config.extended_types))
        self.txn_log = txn_log
        self.zxid = self.tree.last_processed_zxid
        self.queue: deque[Entry] = deque()
        self.connections: set[ClientConnection] = set()
        self.dirty: list[ClientConnection] = []
        self.stats = ServerStats()
        self.sessions = SessionTracker(server_id, config.tick_time, self.now_ms(),
                                       int(time.time() * 1000))
        self.write_error: str | None = None
        self._last_appended = self.zxid
        self._flushing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zkpy-fsync")
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_applied: Callable[[int], None] | None = None  # snapshot trigger hook
        now = self.now_ms()
        for sid, timeout in self.tree.sessions.items():
            self.sessions.add(sid, timeout, now)

    # ---- clocks -------------------------------------------------------------------
    @staticmethod
    def now_ms() -> int:
        return int(time.monotonic() * 1000)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # ---- handshake ----------------------------------------------------------------
    def negotiate_timeout(self, requested: int) -> int:
        c = self.config
        return max(c.min_session_timeout, min(requested, c.max_session_timeout))

    def connect(self, conn: ClientConnection, req: ConnectRequest) -> None:
        """Handle a ConnectRequest; the response is sent when the session is settled."""
        if req.last_zxid_seen > self.tree.last_processed_zxid:
            log.info("refusing client %s: it has seen zxid 0x%x, we are at 0x%x",
                     conn.peer, req.last_zxid_seen, self.tree.last_processed_zxid)
            conn.close()
            return
        timeout = self.negotiate_timeout(req.timeout)
        if req.session_id == 0:
            self._create_session(conn, timeout)
            return
        sid = req.session_id
        for other in list(self.connections):
            if other is not conn and other.session_id == sid:
                other.close()
        session = self.sessions.sessions.get(sid)
        if req.passwd != session_password(sid) or session is None or session.closing:
            conn.connect_failed()
            return
        session.timeout = timeout
        self.sessions.touch(sid, self.now_ms())
        session.owner = conn
        conn.session_established(sid, timeout, session_password(sid))

    def _create_session(self, conn: ClientConnection, timeout: int) -> None:
        if self.write_error is not None:
            conn.close()
            return
        sid = self.sessions.new_id()
        session = self.sessions.add(sid, timeout, self.now_ms())
        session.owner = conn
        conn.session_id = sid
        conn.pending_timeout = timeout
        self._append(conn, 0, OpCode.CREATE_SESSION, None, sid, CreateSessionTxn(timeout),
                     OpCode.CREATE_SESSION)

    # ---- requests -------------------------------------------------------------------
    def request(self, conn: ClientConnection, xid: int, op: int, req: Any) -> None:
        """A decoded request from an established session."""
        sid = conn.session_id
        session = self.sessions.sessions.get(sid)
        if session is None or session.closing:
            conn.send(frame(xid, self.tree.last_processed_zxid, Err.SESSIONEXPIRED))
            return
        self.sessions.touch(sid, self.now_ms())
        if op == OpCode.AUTH:
            self._auth(conn, req)
            return
        if op in WRITE_OPS:
            self._write(conn, xid, op, req)
        elif conn.queued or (op == OpCode.SYNC and self.queue):
            self.queue.append(Entry(conn, xid, op, req, None, None, time.perf_counter()))
            conn.queued += 1
        else:
            self._read(conn, xid, op, req, time.perf_counter())

    def _write(self, conn: ClientConnection, xid: int, op: int, req: Any) -> None:
        if self.write_error is not None:
            conn.send(frame(xid, self.tree.last_processed_zxid, Err.SYSTEMERROR))
            return
        sid = conn.session_id
        zxid = self.zxid + 1
        if op == OpCode.CLOSE_SESSION:
            self.sessions.set_closing(sid)
            txn: Txn = CloseSessionTxn(self.preparer.close_session(sid, zxid))
            type_ = OpCode.CLOSE_SESSION
        elif op == OpCode.MULTI:
            txn = self.preparer.prepare_multi(req, zxid, sid, conn.auth_ids)
            type_ = OpCode.MULTI
        else:
            try:
                txn = self.preparer.prepare(op, req, zxid, sid, conn.auth_ids)
                type_ = op
            except KeeperError as e:
                txn, type_ = ErrorTxn(e.code), OpCode.ERROR
        self._append(conn, xid, op, req, sid, txn, type_)

    def _append(self, conn: Any, xid: int, op: int, req: Any, sid: int, txn: Txn, type_: int) -> None:
        self.zxid += 1
        hdr = TxnHeader(sid, xid, self.zxid, int(time.time() * 1000), type_)
        if self.txn_log is not None:
            self.txn_log.append(hdr, encode_txn(txn))
        self._last_appended = self.zxid
        self.queue.append(Entry(conn, xid, op, req, hdr, txn, time.perf_counter()))
        if conn is not None:
            conn.queued += 1
        self._request_flush()

    def submit_internal(self, op: int, req: Any) -> None:
        """A write from the server itself (container and TTL sweeps), session 0."""
        if self.write_error is not None:
            return
        zxid = self.zxid + 1
        try:
            txn: Txn = self.preparer.prepare(op, req, zxid, 0, [("super", "")])
            type_ = op
        except KeeperError as e:
            txn, type_ = ErrorTxn(e.code), OpCode.ERROR
        self._append(None, 0, op, req, 0, txn, type_)

    # ---- group commit ---------------------------------------------------------------
    def _request_flush(self) -> None:
        if self._flushing or self._last_appended <= self.tree.last_processed_zxid:
            return
        loop = self._loop or asyncio.get_event_loop()
        self._flushing = True
        upto = self._last_appended
        if self.txn_log is None:
            loop.call_soon(self._synced, upto, None)
            return
        fut = loop.run_in_executor(self._executor, self.txn_log.sync)
        fut.add_done_callback(lambda f: self._synced(upto, f.exception()))

    def _synced(self, upto: int, exc: BaseException | None) -> None:
        self._flushing = False
        if exc is not None:
            self._disk_failed(exc)
            return
        self._commit(upto)
        self._request_flush()

    def _disk_failed(self, exc: BaseException) -> None:
        self.write_error = f"txn log sync failed: {exc}"
        log.error("%s; no longer accepting writes (fix the disk and restart the server)",
                  self.write_error)
        for e in list(self.queue):
            if e.conn is not None:
                e.conn.close()
        self.queue.clear()

    def _commit(self, upto: int) -> None:
        q = self.queue
        while q:
            e = q[0]
            if e.hdr is not None and e.hdr.zxid > upto:
                break
            q.popleft()
            conn = e.conn
            if conn is not None:
                conn.queued -= 1
            if e.hdr is None:
                if not conn.closed:
                    self._read(conn, e.xid, e.op, e.req, e.started)
                continue
            self._apply(e)
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
        assert hdr is not None
        res, events = self.tree.apply(hdr, e.txn)
        self.preparer.applied(hdr.zxid)
        self._deliver(events)
        if hdr.type == OpCode.CLOSE_SESSION:
            self.sessions.remove(hdr.client_id)
        if self.on_applied is not None:
            self.on_applied(hdr.zxid)
        conn = e.conn
        if e.op == OpCode.CREATE_SESSION:
            if conn is not None and not conn.closed:
                conn.session_established(hdr.client_id, conn.pending_timeout,
                                         session_password(hdr.client_id))
            return
        if conn is None:
            if hdr.type == OpCode.CLOSE_SESSION:
                for c in list(self.connections):
                    if c.session_id == hdr.client_id:
                        c.close()
            return
        if conn.closed:
            return
        self.stats.record(e.started)
        if res.err:
            conn.send(frame(e.xid, hdr.zxid, res.err))
        else:
            conn.send(frame(e.xid, hdr.zxid, 0, write_result_body(e.op, res)))
        conn.last_op(e.op, hdr.zxid)
        if e.op == OpCode.CLOSE_SESSION:
            conn.close_after_flush()

    def _deliver(self, events: list[Event]) -> None:
        for ev in events:
            if not ev.watchers:
                continue
            data = notification(ev.type, ev.path)
            for w in ev.watchers:
                w.notify(data)  # type: ignore[attr-defined]

    # ---- reads ----------------------------------------------------------------------
    def _read(self, conn: ClientConnection, xid: int, op: int, req: Any, started: float) -> None:
        tree = self.tree
        skip = self.config.skip_acl
        try:
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
                body = reads_path(req)
            elif op == OpCode.MULTI_READ:
                body = reads.multi_read(tree, conn, req, skip)
            elif op == OpCode.GET_ALL_CHILDREN_NUMBER:
                body = reads.get_all_children_number(tree, conn, req, skip)
            elif op == OpCode.GET_EPHEMERALS:
                body = reads.get_ephemerals(tree, conn, req)
            elif op in (OpCode.SET_WATCHES, OpCode.SET_WATCHES2):
                self._set_watches(conn, req)
                body = b""
            elif op == OpCode.ADD_WATCH:
                body = self._add_watch(conn, req)
            elif op in (OpCode.CHECK_WATCHES, OpCode.REMOVE_WATCHES):
                self._check_watches(conn, req, op == OpCode.REMOVE_WATCHES)
                body = b""
            elif op == OpCode.WHO_AM_I:
                body = who_am_i(conn.auth_ids)
            elif op == OpCode.RECONFIG:
                raise KeeperError(Err.RECONFIGDISABLED if not self.config.reconfig_enabled
                                  else Err.UNIMPLEMENTED)
            else:
                raise KeeperError(Err.UNIMPLEMENTED)
        except KeeperError as e:
            conn.send(frame(xid, tree.last_processed_zxid, e.code))
            self.stats.record(started)
            conn.last_op(op, tree.last_processed_zxid)
            return
        conn.send(frame(xid, tree.last_processed_zxid, 0, body))
        self.stats.record(started)
        conn.last_op(op, tree.last_processed_zxid)

    def _set_watches(self, conn: ClientConnection, req: SetWatches) -> None:
        tree = self.tree
        rel = req.relative_zxid
        out: list[bytes] = []
        for p in req.data:
            n = tree.nodes.get(p)
            if n is None:
                out.append(notification(2, p))
            elif n.mzxid > rel:
                out.append(notification(3, p))
            else:
                conn.watch_data(p)
        for p in req.exist:
            if p in tree.nodes:
                out.append(notification(1, p))
            else:
                conn.watch_data(p)
        for p in req.child:
            n = tree.nodes.get(p)
            if n is None:
                out.append(notification(2, p))
            elif n.pzxid > rel:
                out.append(notification(4, p))
            else:
                conn.watch_child(p)
        for p in req.persistent:
            conn.watch_persistent(p, False)
        for p in req.persistent_recursive:
            conn.watch_persistent(p, True)
        for data in out:
            conn.notify(data)

    def _add_watch(self, conn: ClientConnection, req: PathType) -> bytes:
        if req.type not in (0, 1):
            # Java's AddWatchMode.fromZooKeeperMode throws; the catch-all answers MARSHALLINGERROR.
            raise KeeperError(Err.MARSHALLINGERROR)
        conn.watch_persistent(req.path, req.type == 1)
        return b"\x00\x00\x00\x00"

    def _check_watches(self, conn: ClientConnection, req: PathType, remove: bool) -> None:
        wm = self.tree.watches
        if req.type not in tuple(WatcherType):
            # Java's WatcherType.fromInt throws; the catch-all answers MARSHALLINGERROR.
            raise KeeperError(Err.MARSHALLINGERROR)
        if remove:
            found = wm.remove(req.path, conn, req.type)
        else:
            found = wm.contains(req.path, conn, req.type)
        if not found:
            raise KeeperError(Err.NOWATCHER)

    def _auth(self, conn: ClientConnection, pkt: AuthPacket) -> None:
        scheme = pkt.scheme
        if scheme == "digest" and self.config.digest_enabled:
            ident = digest_id(pkt.auth.decode("utf-8", "replace"))
            if self.config.super_digest and ident == self.config.super_digest:
                conn.add_auth("super", "")
            conn.add_auth("digest", ident)
        elif scheme == "ip":
            conn.add_auth("ip", conn.peer_ip)
        else:
            log.info("auth failed for %s: unknown scheme %r", conn.peer, scheme)
            conn.send(frame(XID_AUTH, 0, Err.AUTHFAILED))
            conn.close_after_flush()
            return
        conn.send(frame(XID_AUTH, 0, 0))

    # ---- timers ---------------------------------------------------------------------
    def expire_sessions(self) -> None:
        for sid in self.sessions.expired(self.now_ms()):
            log.info("session 0x%x expired", sid & 0xFFFFFFFFFFFFFFFF)
            self._close_expired(sid)

    def _close_expired(self, sid: int) -> None:
        if self.write_error is not None:
            return
        zxid = self.zxid + 1
        txn = CloseSessionTxn(self.preparer.close_session(sid, zxid))
        self._append(None, 0, OpCode.CLOSE_SESSION, None, sid, txn, OpCode.CLOSE_SESSION)

    def sweep_containers(self, wall_ms: int, limit: int) -> int:
        """Delete empty containers that have had children, and expired TTL nodes."""
        tree = self.tree
        candidates: list[str] = []
        for p in tree.containers:
            n = tree.nodes.get(p)
            if n is None or n.children:
                continue
            never_used = self.config.container_max_never_used_ms
            if n.cversion > 0 or (never_used > 0 and wall_ms - n.mtime > never_used):
                candidates.append(p)
        for p in tree.ttls:
            n = tree.nodes.get(p)
            if n is None or n.children:
                continue
            ttl = owner_ttl(n.owner)
            if ttl is not None and wall_ms - n.mtime > ttl:
                candidates.append(p)
        candidates.sort()
        for p in candidates[:limit]:
            self.submit_internal(OpCode.DELETE_CONTAINER, PathOnly(p))
        return min(len(candidates), limit)


def reads_path(req: PathOnly) -> bytes:
    from zkpy.server.replies import ustring

    return ustring(req.path)


def who_am_i(auth_ids: list[tuple[str, str]]) -> bytes:
    from zkpy.jute.codec import Writer

    w = Writer().int(len(auth_ids))
    for scheme, ident in auth_ids:
        user = ident.split(":", 1)[0] if scheme == "digest" else ident
        w.ustring(scheme).ustring(user)
    return w.getvalue()


__all__ = ["ZooKeeperServer", "MultiRequest", "PathWatch"]
