"""Sessions: timeout negotiation, resume, wrong password, expiry, closeSession, containers, TTL.

The shared server runs tickTime=2000 (session timeouts clamp to [4000, 40000] ms) and checks
containers and TTL nodes every 500 ms (znode.container.checkIntervalMs).
"""

from __future__ import annotations

import shutil
import struct
import time

import pytest
from kazoo.client import KazooClient

from tests.conformance import rawconn
from tests.conformance.rawconn import Closed, RawConnection
from tests.conftest import start_server

EPHEMERAL = 1
CONTAINER_FLAGS, TTL_FLAGS = 4, 5


def java_session_password(sid: int) -> bytes:
    """java.util.Random(sid ^ 0xB3415C00).nextBytes(16), as ZooKeeperServer generates it."""
    m, mask = 0x5DEECE66D, (1 << 48) - 1
    seed = (((sid & 0xFFFFFFFFFFFFFFFF) ^ 0xB3415C00) ^ m) & mask
    out = b""
    while len(out) < 16:
        seed = (seed * m + 0xB) & mask
        out += (seed >> 16).to_bytes(4, "little")
    return out


def wait_for(cond, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------- handshake


def test_password_vectors():
    assert java_session_password(0x0100000000000000).hex() == "f22acd4a97e69d6d20a49bb638eadb38"
    assert java_session_password(0xFFFFFFFFFFFFFFFF).hex() == "20f62cb5648dc2d771471c8a2486a9ee"


def test_negotiated_timeout_is_clamped(server):
    cases = [(1, 4000), (0, 4000), (-5, 4000), (3999, 4000), (4000, 4000), (5000, 5000),
             (40000, 40000), (40001, 40000), (10**9, 40000)]
    for requested, expected in cases:
        c = RawConnection(server.port)
        try:
            negotiated, sid, _ = c.handshake(requested)
            assert negotiated == expected, requested
            assert sid != 0
        finally:
            c.end()


def test_connect_response_shape(server):
    c = RawConnection(server.port)
    try:
        negotiated, sid, passwd = c.handshake(12345)
        resp = c.handshake_response
        assert len(resp) == 37  # the request had the readOnly byte, so the response has it
        assert struct.unpack(">iiqi", resp[:20]) == (0, 12345, sid, 16)
        assert resp[36] == 0
        assert sid >> 56 == 1  # standalone server id 1 in the top byte
        assert passwd == java_session_password(sid)
    finally:
        c.end()
    old = RawConnection(server.port)
    try:
        old.handshake(10000, read_only=None)
        assert len(old.handshake_response) == 36  # old client: no readOnly byte back
        old.ping()
    finally:
        old.end()


def test_client_ahead_of_server_is_dropped_without_reply(server):
    c = RawConnection(server.port)
    try:
        with pytest.raises(Closed):
            c.handshake(10000, last_zxid=1 << 60)
        assert c.buf == b""
    finally:
        c.close()


# --------------------------------------------------------------------------- resume


def test_resume_with_kazoo_keeps_ephemerals(server, zk, base, make_client):
    a = rawconn.session(server.port)
    try:
        p = f"{base}/eph"
        assert a.create(p, b"x", flags=EPHEMERAL).err == 0
        a.close()  # drop the connection, keep the session
        c = make_client(client_id=(a.session_id, a.passwd))
        assert c.client_id[0] == a.session_id
        data, stat = c.get(p)
        assert data == b"x" and stat.ephemeralOwner == a.session_id
        assert zk.exists(p).ephemeralOwner == a.session_id
        c.stop()  # closeSession
        assert zk.exists(p) is None
    finally:
        a.end()


def test_resume_closes_the_sessions_other_connection(server, base, zk):
    a = rawconn.session(server.port)
    b = RawConnection(server.port)
    try:
        a.create(f"{base}/eph", flags=EPHEMERAL)
        negotiated, sid, passwd = b.handshake(20000, session_id=a.session_id, passwd=a.passwd)
        assert (negotiated, sid, passwd) == (20000, a.session_id, a.passwd)
        assert a.wait_closed(5) == b""
        assert b.exists(f"{base}/eph").err == 0
        b.ping()
    finally:
        b.end()
        a.close()
    assert zk.exists(f"{base}/eph") is None


def test_wrong_password_gets_invalid_response_and_close(server, base, zk):
    a = rawconn.session(server.port)
    bad = RawConnection(server.port)
    try:
        p = f"{base}/eph"
        a.create(p, flags=EPHEMERAL)
        wrong = bytes(b ^ 0xFF for b in a.passwd)
        assert bad.handshake(session_id=a.session_id, passwd=wrong) == (0, 0, bytes(16))
        assert bad.wait_closed(5) == b""
        # The attempt knocks the session's connection off this server, but the session lives.
        assert a.wait_closed(5) == b""
        assert zk.exists(p).ephemeralOwner == a.session_id
        again = RawConnection(server.port)
        try:
            assert again.handshake(session_id=a.session_id, passwd=a.passwd)[1] == a.session_id
            assert again.exists(p).err == 0
        finally:
            again.end()
        assert zk.exists(p) is None
    finally:
        bad.close()
        a.close()


def test_wrong_password_with_kazoo_is_session_expired(server, zk, base, make_client):
    victim = make_client()
    p = victim.create(f"{base}/eph", ephemeral=True)
    sid, passwd = victim.client_id
    c = KazooClient(hosts=server.hosts, timeout=10, client_id=(sid, bytes(16)))
    try:
        c.start(timeout=15)
        # kazoo treats the invalid ConnectResponse as expiry and starts over with a new session.
        assert c.client_id[0] != sid
    finally:
        c.stop()
        c.close()
    # The victim reconnects with its own (valid) session and keeps its ephemeral.
    assert wait_for(lambda: victim.connected and victim.exists(p) is not None)
    assert zk.exists(p).ephemeralOwner == sid


# --------------------------------------------------------------------------- expiry and close


def test_expiry_removes_ephemerals_and_fires_watches(server, zk, base, make_client):
    watcher = make_client()
    events = []
    p = f"{base}/eph"
    # A session with the same timeout that keeps pinging stays alive throughout.
    pinger = rawconn.session(server.port, 4000)
    a = rawconn.session(server.port, 4000)
    try:
        assert a.negotiated == pinger.negotiated == 4000
        pinger.create(f"{base}-pinger", flags=EPHEMERAL)
        a.create(p, b"", flags=EPHEMERAL)
        assert a.create(f"{base}/s-", b"", flags=EPHEMERAL | 2).err == 0
        watcher.exists(p, watch=events.append)
        watcher.get_children(base, watch=events.append)
        a.ping()
        last_touch = time.monotonic()
        # Go quiet: the session expires between timeout and timeout + tickTime after the last
        # touch, and the server closes the idle connection without sending anything.
        while True:
            try:
                a.wait_closed(0.5)
                break
            except TimeoutError:
                pinger.ping()
                assert time.monotonic() - last_touch < 20, "session did not expire"
        assert a.buf == b""
        assert wait_for(lambda: len(events) >= 2, 20), events
        elapsed = time.monotonic() - last_touch
        assert 3.5 <= elapsed <= 15, elapsed
        assert {(e.type, e.path) for e in events} == {("DELETED", p), ("CHILD", base)}
        assert zk.get_children(base) == []
        pinger.ping()
        assert zk.exists(f"{base}-pinger").ephemeralOwner == pinger.session_id
        again = RawConnection(server.port)
        try:
            assert again.handshake(session_id=a.session_id, passwd=a.passwd) == (0, 0, bytes(16))
            assert again.wait_closed(5) == b""
        finally:
            again.close()
    finally:
        a.close()
        pinger.end()


def test_close_session_removes_ephemerals_immediately(server, zk, base, raw):
    watcher = raw()
    a = rawconn.session(server.port)
    try:
        p = f"{base}/eph"
        a.create(p, flags=EPHEMERAL)
        watcher.exists(p, watch=True)
        before = zk.exists(base).pzxid
        r = a.close_session()
        assert (r.err, r.body) == (0, b"")
        assert r.zxid > before
        assert a.wait_closed(5) == b""
        assert zk.exists(p) is None
        assert zk.exists(base).pzxid == r.zxid
        assert [(e.type, e.path) for e in watcher.take_events()] == [(rawconn.NODE_DELETED, p)]
        again = RawConnection(server.port)
        try:
            assert again.handshake(session_id=a.session_id, passwd=a.passwd) == (0, 0, bytes(16))
        finally:
            again.close()
    finally:
        a.close()


def test_sessions_survive_a_restart(server):
    """Sessions are persisted: after a restart a client can resume its session (ephemerals
    intact), and a session nobody resumes expires a full timeout after the restart."""
    srv = start_server(server.kind)
    try:
        kept = rawconn.session(srv.port, 20000)
        kept.create("/kept", flags=EPHEMERAL)
        last_zxid = kept.exists("/kept").zxid
        gone = rawconn.session(srv.port, 4000)
        gone.create("/gone", flags=EPHEMERAL)
        kept.close()
        gone.close()
        srv.restart()
        restarted = time.monotonic()
        watcher = rawconn.session(srv.port)
        assert watcher.exists("/gone", watch=True).err == 0  # not expired at load time
        again = RawConnection(srv.port)
        try:
            negotiated, sid, passwd = again.handshake(20000, session_id=kept.session_id,
                                                      passwd=kept.passwd, last_zxid=last_zxid)
            assert (negotiated, sid, passwd) == (20000, kept.session_id, kept.passwd)
            assert rawconn.stat_fields(again.exists("/kept").body)[7] == kept.session_id
            assert [(e.type, e.path) for e in watcher.wait_events(1, 20)] == [
                (rawconn.NODE_DELETED, "/gone")]
            assert time.monotonic() - restarted >= 3.0
            again.ping()
            assert watcher.exists("/kept").err == 0
        finally:
            again.end()
            watcher.end()
    finally:
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)


# --------------------------------------------------------------------------- containers and TTL


def _create_container(c: RawConnection, path: str) -> int:
    return c.call(rawconn.CREATE_CONTAINER, rawconn.create_body(path, b"", CONTAINER_FLAGS)).err


def _create_ttl(c: RawConnection, path: str, ttl: int, flags: int = TTL_FLAGS) -> int:
    return c.call(rawconn.CREATE_TTL, rawconn.create_body(path, b"", flags) + struct.pack(">q", ttl)).err


def test_container_sweep_fires_watches(zk, base, raw):
    """The sweeper's deleteContainer is an ordinary delete for watchers (creation and sweeping
    rules themselves are covered in test_extended_ops.py)."""
    a = raw()
    used = f"{base}/used"
    assert _create_container(a, used) == 0
    zk.create(f"{used}/kid")
    a.exists(used, watch=True)
    a.get_children(base, watch=True)
    zk.delete(f"{used}/kid")
    assert [(e.type, e.path) for e in a.wait_events(2)] == [
        (rawconn.NODE_DELETED, used), (rawconn.NODE_CHILDREN_CHANGED, base)]
    assert zk.exists(used) is None


def test_ttl_node_refreshed_by_set_data_and_kept_by_children(zk, base, raw):
    a = raw()
    p = f"{base}/ttl"
    assert _create_ttl(a, p, 1000) == 0
    deadline = time.monotonic() + 1.6
    while time.monotonic() < deadline:  # setData moves mtime forward
        zk.set(p, b"x")
        time.sleep(0.2)
    assert zk.exists(p) is not None
    zk.create(f"{p}/kid")
    time.sleep(1.2)
    assert zk.exists(p) is not None  # children keep it
    a.exists(p, watch=True)
    zk.delete(f"{p}/kid")
    assert [(e.type, e.path) for e in a.wait_events(1)] == [(rawconn.NODE_DELETED, p)]
    assert zk.exists(p) is None
