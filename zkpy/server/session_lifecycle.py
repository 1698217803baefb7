"""Sessions from the server's side: the handshake (create, resume, revalidate through
the leader, local and read-only sessions), expiry, and the container/TTL sweep.

Functions over a `ZooKeeperServer` (core.py keeps the request path; these run once per
connection or per timer tick, not per request).  A new global session is a
createSession txn (on a learner: forwarded to the leader); a local one
(localSessionsEnabled, see local_sessions.py) or a read-only one lives on this member
only.  Only the leader (or standalone) expires global sessions, each with a
closeSession txn; the sweep submits deleteContainer txns where txns are proposed, as
the reference's ContainerManager.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from zkpy.datatree.tree import owner_ttl
from zkpy.jute.codec import INT
from zkpy.jute.constants import OpCode
from zkpy.jute.records import ConnectRequest, PathOnly
from zkpy.jute.txns import CreateSessionTxn
from zkpy.server.metrics import METRICS
from zkpy.server.sessions import session_password

if TYPE_CHECKING:
    from zkpy.server.connection import ClientConnection
    from zkpy.server.core import ZooKeeperServer

log = logging.getLogger("zkpy.server")


def negotiate_timeout(core: ZooKeeperServer, requested: int) -> int:
    c = core.config
    return max(c.min_session_timeout, min(requested, c.max_session_timeout))


def connect(core: ZooKeeperServer, conn: ClientConnection, req: ConnectRequest) -> None:
    """Handle a ConnectRequest; the response is sent when the session is settled."""
    if not core.serving:
        conn.close()
        return
    if core.read_only:
        connect_read_only(core, conn, req)
        return
    if req.last_zxid_seen > core.tree.last_processed_zxid:
        log.info("refusing client %s: it has seen zxid 0x%x, we are at 0x%x",
                 conn.peer, req.last_zxid_seen, core.tree.last_processed_zxid)
        conn.close()
        return
    timeout = negotiate_timeout(core, req.timeout)
    if req.session_id == 0:
        create_session(core, conn, timeout)
        return
    sid = req.session_id
    for other in list(core.connections):
        if other is not conn and other.session_id == sid:
            other.close()
    if req.passwd != session_password(sid):
        conn.connect_failed()
        return
    conn.pending_timeout = timeout
    lt = core.local_tracker
    if lt is not None and sid in lt.sessions:  # a local session of ours: no leader to ask
        lt.sessions[sid].timeout = timeout
        lt.touch(sid, core.now_ms())
        established(core, conn, sid, timeout)
        return
    if core.is_learner:
        assert core.zab is not None
        core.connecting[sid] = conn
        core.zab.revalidate(sid, timeout)
        return
    session = core.sessions.sessions.get(sid)
    if session is None or session.closing:
        conn.connect_failed()
        return
    session.timeout = timeout
    core.sessions.touch(sid, core.now_ms())
    session.owner = core.server_id
    established(core, conn, sid, timeout)


def connect_read_only(core: ZooKeeperServer, conn: ClientConnection, req: ConnectRequest) -> None:
    """A partitioned member in read-only mode: local sessions for clients that asked."""
    if not req.read_only:
        conn.close()  # the reference drops clients that cannot live with read-only
        return
    timeout = negotiate_timeout(core, req.timeout)
    sid = req.session_id
    if sid == 0:
        sid = core.sessions.new_id()
    elif req.passwd != session_password(sid):
        conn.connect_failed()
        return
    core.sessions.add(sid, timeout, core.now_ms()).owner = core.server_id
    conn.session_id = sid
    established(core, conn, sid, timeout)


def revalidated(core: ZooKeeperServer, sid: int, valid: bool) -> None:
    """Learner: the leader's answer to a session revalidation."""
    conn = core.connecting.pop(sid, None)
    if conn is None or conn.closed:
        return
    if valid:
        established(core, conn, sid, conn.pending_timeout)
    else:
        conn.connect_failed()
    core.flush_dirty()


def established(core: ZooKeeperServer, conn: ClientConnection, sid: int, timeout: int) -> None:
    core.local_sessions[sid] = conn
    if core.is_learner and (core.local_tracker is None or sid not in core.local_tracker.sessions):
        core.touched[sid] = timeout
    conn.session_established(sid, timeout, session_password(sid))


def create_session(core: ZooKeeperServer, conn: ClientConnection, timeout: int) -> None:
    if core.write_error is not None:
        conn.close()
        return
    sid = core.sessions.new_id()
    conn.session_id = sid
    conn.pending_timeout = timeout
    if core.local_tracker is not None:  # no txn: the session lives here only
        core.local_tracker.add(sid, timeout, core.now_ms()).owner = core.server_id
        established(core, conn, sid, timeout)
        return
    core.connecting[sid] = conn
    if core.is_learner:
        assert core.zab is not None
        core.zab.forward(sid, 0, OpCode.CREATE_SESSION, INT.pack(timeout), [])
        return
    core.sessions.add(sid, timeout, core.now_ms()).owner = core.server_id
    core._append(conn, 0, OpCode.CREATE_SESSION, sid, CreateSessionTxn(timeout),
                 OpCode.CREATE_SESSION)


def expire_sessions(core: ZooKeeperServer) -> None:
    lt = core.local_tracker
    if lt is not None:  # local sessions expire where they live, without a txn
        for sid in lt.expired(core.now_ms()):
            log.info("local session 0x%x expired", sid & 0xFFFFFFFFFFFFFFFF)
            lt.remove(sid)
            core._drop_session(sid)
    if core.is_learner:
        return
    for sid in core.sessions.expired(core.now_ms()):
        log.info("session 0x%x expired", sid & 0xFFFFFFFFFFFFFFFF)
        METRICS.inc("stale_sessions_expired")
        if core.read_only:  # local sessions: nothing to log
            core.sessions.remove(sid)
            core._drop_session(sid)
        else:
            close_expired(core, sid)


def close_expired(core: ZooKeeperServer, sid: int) -> None:
    if core.write_error is not None or core.is_learner:
        return
    txn, type_ = core._prepare(sid, OpCode.CLOSE_SESSION, None, [], core.server_id)
    core._append(None, 0, OpCode.CLOSE_SESSION, sid, txn, type_)


def sweep_containers(core: ZooKeeperServer, wall_ms: int, limit: int) -> int:
    """Delete empty containers that have had children, and expired TTL nodes.

    Only where txns are proposed (standalone or an established leader), as the
    reference's ContainerManager; the deletes go through the pipeline like any write."""
    if core.is_learner or core.read_only or not core.serving or core.write_error is not None:
        return 0
    tree = core.tree
    candidates: list[str] = []
    for p in tree.containers:
        n = tree.nodes.get(p)
        if n is None or n.children:
            continue
        never_used = core.config.container_max_never_used_ms
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
        core.submit_internal(OpCode.DELETE_CONTAINER, PathOnly(p))
    return min(len(candidates), limit)
