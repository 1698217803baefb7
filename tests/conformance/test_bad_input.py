"""Malformed and hostile input: the offending connection is answered or closed the way Apache
ZooKeeper does it, every other client keeps working, and the server never goes down.
"""

from __future__ import annotations

import shutil
import socket
import struct
import time

import pytest

from tests.conformance import rawconn
from tests.conformance.rawconn import Closed, RawConnection
from tests.conftest import four_letter, start_server

MAX_BUFFER = 1048575  # jute.maxbuffer default
UNIMPLEMENTED, MARSHALLINGERROR, AUTHFAILED = -6, -5, -115
BADARGUMENTS, NONODE = -8, -101


@pytest.fixture(autouse=True)
def server_survives(server, zk, base):
    """After every test: the server process is alive and an unrelated session still works."""
    zk.set(base, b"before")
    yield
    assert server.proc is not None and server.proc.poll() is None, "server process died"
    assert four_letter(server.port, "ruok") == "imok"
    zk.set(base, b"after")
    assert zk.get(base)[0] == b"after"
    assert zk.get_children(base) is not None


def outcome(c: RawConnection, timeout: float = 3.0) -> list:
    """Every frame the server sends (as (xid, err)) until it closes ('closed') or goes quiet."""
    out: list = []
    try:
        while True:
            r = c.read_any(timeout)
            out.append((r.xid, r.err))
    except Closed:
        out.append("closed")
    except TimeoutError:
        out.append("open")
    return out


def established(server) -> RawConnection:
    c = RawConnection(server.port)
    c.handshake()
    return c


# --------------------------------------------------------------------------- frame length


def test_frame_longer_than_maxbuffer_closes_connection(server, zk, base):
    c = established(server)
    try:
        c.send_raw(struct.pack(">i", MAX_BUFFER + 1))
        assert outcome(c) == ["closed"]
    finally:
        c.end()


def test_frame_of_exactly_maxbuffer_is_accepted(server, zk, base):
    c = established(server)
    try:
        path = rawconn.ustring(base)
        fixed = 8 + len(path) + 4 + 4  # header, path, data length, version
        data = b"z" * (MAX_BUFFER - fixed)
        frame = struct.pack(">ii", 1, rawconn.SET_DATA) + path + rawconn.buffer(data) + struct.pack(">i", -1)
        assert len(frame) == MAX_BUFFER
        c.send_frame(frame)
        r = c.read_reply(1, timeout=20)
        assert r.err == 0
        assert zk.exists(base).dataLength == len(data)
        # one byte more is too much: the server may close on the length prefix while the
        # megabyte behind it is still being sent (then the send itself fails)
        try:
            c.send_frame(frame[:8] + path + rawconn.buffer(data + b"z") + struct.pack(">i", -1))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert outcome(c) == ["closed"]
        assert zk.exists(base).dataLength == len(data)
    finally:
        c.end()


@pytest.mark.parametrize("length", [-1, -5, -(2**31)])
def test_negative_frame_length_closes_connection(server, zk, base, length):
    c = established(server)
    try:
        c.send_raw(struct.pack(">i", length) + b"\0" * 8)
        assert outcome(c) == ["closed"]
    finally:
        c.end()


@pytest.mark.parametrize("length", [MAX_BUFFER + 1, -1, 0x7FFFFFFF])
def test_bad_length_before_handshake_closes_connection(server, length):
    with RawConnection(server.port) as c:
        c.send_raw(struct.pack(">i", length))
        assert outcome(c) == ["closed"]


def test_frame_shorter_than_request_header_closes_connection(server):
    c = established(server)
    try:
        c.send_frame(struct.pack(">i", 7))
        assert outcome(c) == ["closed"]
    finally:
        c.end()


def test_partial_frame_then_disconnect(server):
    for _ in range(3):
        c = established(server)
        c.send_raw(struct.pack(">i", 100) + b"\0" * 10)
        c.end(fresh=True)
    with RawConnection(server.port) as c:
        c.send_raw(struct.pack(">i", 45) + b"\0" * 20)
    four_letter(server.port, "ruok")


# --------------------------------------------------------------------------- opcodes


@pytest.mark.parametrize("op", [999, 0, 10, 99, -3, 200])
def test_unknown_opcode_gets_unimplemented_then_close(server, op):
    c = established(server)
    try:
        c.send(op, b"whatever")
        r = c.read_any()
        # ReplyHeader{xid, zxid -1, UNIMPLEMENTED}: the request never got a zxid.
        assert (r.xid, r.zxid, r.err, r.body) == (1, -1, UNIMPLEMENTED, b"")
        assert outcome(c) == ["closed"]
    finally:
        c.end()


def test_pipelined_bad_opcode(server, base):
    """Java answers an unknown opcode outside the request pipeline and closes at once, so
    replies to requests pipelined just before it may be lost or come after it; only the
    UNIMPLEMENTED reply and the close are certain."""
    c = established(server)
    try:
        frames = b""
        for xid, op, body in [(1, rawconn.EXISTS, rawconn.path_watch(base, False)),
                              (2, rawconn.GET_DATA, rawconn.path_watch(base, False)),
                              (3, 999, b"")]:
            payload = struct.pack(">ii", xid, op) + body
            frames += struct.pack(">i", len(payload)) + payload
        c.send_raw(frames)
        result = outcome(c)
        assert result[-1] == "closed" and (3, UNIMPLEMENTED) in result, result
        assert set(result[:-1]) <= {(1, 0), (2, 0), (3, UNIMPLEMENTED)}, result
    finally:
        c.end()


def test_check_outside_multi_never_succeeds(server, zk, base):
    """3.9 answers UNIMPLEMENTED and closes; Debian's 3.8.0 trips over a null Stat and sends
    nothing at all.  Either way the check does not succeed and nothing changes."""
    before = zk.exists(base)
    c = established(server)
    try:
        c.send(rawconn.CHECK, rawconn.ustring(base) + struct.pack(">i", before.version))
        result = outcome(c, 2.0)
        assert result in (["open"], [(1, UNIMPLEMENTED), "closed"]), result
    finally:
        c.end()
    after = zk.exists(base)
    assert (after.version, after.mzxid) == (before.version, before.mzxid)


# --------------------------------------------------------------------------- request bodies


@pytest.mark.parametrize("name,op,body", [
    pytest.param("create, cut inside the path", rawconn.CREATE, rawconn.ustring("/abc")[:5],
                 id="create-path"),
    pytest.param("create, data longer than the frame", rawconn.CREATE,
                 rawconn.ustring("/abc") + struct.pack(">i", 100) + b"xx", id="create-data"),
    pytest.param("setData without data", rawconn.SET_DATA, rawconn.ustring("/"), id="setData"),
    pytest.param("getData without watch flag", rawconn.GET_DATA, rawconn.ustring("/"), id="getData"),
    pytest.param("exists with half a length", rawconn.EXISTS, b"\0\0", id="exists"),
    pytest.param("getData with no body", rawconn.GET_DATA, b"", id="getData-empty"),
    pytest.param("getChildren, negative path length", rawconn.GET_CHILDREN, struct.pack(">i", -7) + b"\0",
                 id="getChildren-negative-length"),
    pytest.param("multi cut after a header", rawconn.MULTI, struct.pack(">ibi", 1, 0, -1), id="multi"),
])
def test_truncated_request_body_is_marshalling_error(server, zk, base, name, op, body):
    c = established(server)
    try:
        c.send(op, body)
        r = c.read_any()
        assert (r.xid, r.err, r.body) == (1, MARSHALLINGERROR, b""), name
        # The connection stays usable.
        c.ping()
        assert c.exists(base).err == 0
    finally:
        c.end()


def test_trailing_bytes_after_a_request_are_ignored(server, base):
    c = established(server)
    try:
        r = c.call(rawconn.EXISTS, rawconn.path_watch(base, False) + b"junk")
        assert r.err == 0 and len(r.body) == 68
        c.ping()
    finally:
        c.end()


def test_invalid_utf8_in_paths(server, zk, base):
    """Java decodes strings with replacement characters: the bad bytes become U+FFFD, which
    path validation rejects (BADARGUMENTS) and which no node has (NONODE on reads)."""
    bad = base.encode() + b"/a\xff\xfeb"
    c = established(server)
    try:
        r = c.call(rawconn.CREATE, struct.pack(">i", len(bad)) + bad + rawconn.buffer(b"x")
                   + rawconn.OPEN_ACL + struct.pack(">i", 0))
        assert r.err == BADARGUMENTS
        r = c.call(rawconn.EXISTS, struct.pack(">i", len(bad)) + bad + b"\0")
        assert r.err == NONODE
        surrogate = base.encode() + b"/\xed\xa0\x80"  # an encoded UTF-16 surrogate
        r = c.call(rawconn.GET_DATA, struct.pack(">i", len(surrogate)) + surrogate + b"\0")
        assert r.err == NONODE
        c.ping()
    finally:
        c.end()
    assert zk.get_children(base) == []


def test_unknown_auth_scheme_is_auth_failed_then_close(server):
    c = established(server)
    try:
        c.send(rawconn.AUTH, struct.pack(">i", 0) + rawconn.ustring("bogus") + rawconn.buffer(b"x"),
               xid=rawconn.AUTH_XID)
        r = c.read_any()
        assert (r.xid, r.err) == (rawconn.AUTH_XID, AUTHFAILED)
        assert outcome(c) == ["closed"]
    finally:
        c.end()


def test_frames_after_a_failed_auth_are_not_executed(server, zk, base):
    """A bad auth and a create in the same segment: AUTHFAILED, the connection closes,
    and the create behind the auth packet is never applied."""
    c = established(server)
    try:
        auth = struct.pack(">ii", rawconn.AUTH_XID, rawconn.AUTH) + struct.pack(">i", 0) \
            + rawconn.ustring("bogus") + rawconn.buffer(b"x")
        create = struct.pack(">ii", 1, rawconn.CREATE) + rawconn.create_body(base + "/after-auth")
        c.send_raw(b"".join(struct.pack(">i", len(p)) + p for p in (auth, create)))
        assert outcome(c) == [(rawconn.AUTH_XID, AUTHFAILED), "closed"]
    finally:
        c.close()
    assert zk.exists(base + "/after-auth") is None


# --------------------------------------------------------------------------- before the handshake


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    struct.pack(">i", 10) + b"0123456789",
    struct.pack(">iii", 8, -2, rawconn.PING),  # a ping instead of a ConnectRequest
    struct.pack(">iiqiqi", 44, 0, 0, 10000, 0, 1000) + b"\0" * 16,  # passwd length past the end
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40,  # a TLS ClientHello
], ids=["http", "short-frame", "ping", "bad-passwd-length", "tls"])
def test_garbage_before_handshake_closes_connection(server, garbage):
    with RawConnection(server.port) as c:
        c.send_raw(garbage)
        assert outcome(c) == ["closed"]


def test_four_letter_word_after_handshake_is_a_bad_length(server):
    c = established(server)
    try:
        c.send_raw(b"ruok")
        assert outcome(c) == ["closed"]
    finally:
        c.end()


def test_lenient_connect_requests_are_accepted(server):
    """Java reads the five fields and one optional byte; the rest is not checked."""
    variants = [
        struct.pack(">iqiqi", 0, 0, 10000, 0, -1) + b"\0",                 # null passwd
        struct.pack(">iqiqi", 5, 0, 10000, 0, 16) + b"\0" * 16 + b"\0",     # protocolVersion 5
        struct.pack(">iqiqi", 0, 0, 10000, 0, 16) + b"\0" * 16 + b"\0junk",  # trailing bytes
    ]
    for req in variants:
        with RawConnection(server.port) as c:
            c.send_frame(req)
            resp = c.read_frame()
            proto, timeout, sid = struct.unpack_from(">iiq", resp)
            assert (proto, timeout) == (0, 10000) and sid != 0
            c.session_id, c.passwd = sid, resp[20:36]
            c.ping()
            c.end()


# --------------------------------------------------------------------------- connection limits


def _rejected(port: int) -> bool:
    try:
        c = RawConnection(port)
    except OSError:
        return True
    try:
        try:
            c.send_frame(struct.pack(">iqiqi", 0, 0, 10000, 0, 16) + b"\0" * 17)
        except OSError:
            return True
        return outcome(c) == ["closed"]
    finally:
        c.close()


def _session_once_a_slot_is_free(port: int, timeout: float = 10.0) -> RawConnection:
    """A session on port, retried while the server still closes new connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            c = RawConnection(port)
        except OSError:
            c = None
        try:
            if c is not None:
                c.handshake()
                return c
        except (Closed, OSError):
            c.close()
        assert time.monotonic() < deadline, "no slot became free"
        time.sleep(0.1)


def test_max_client_cnxns_per_ip(server):
    srv = start_server(server.kind, {"maxClientCnxns": "5"})
    conns: list[RawConnection] = []
    try:
        for _ in range(5):
            c = RawConnection(srv.port)
            c.handshake()
            conns.append(c)
        # The sixth is accepted by the kernel, then closed by the server before any reply.
        assert _rejected(srv.port)
        for c in conns:
            c.ping()
        # Freeing a slot lets a new client in.
        conns.pop().end()
        conns.append(_session_once_a_slot_is_free(srv.port))
        conns[-1].ping()
        assert srv.proc.poll() is None
    finally:
        for c in conns:
            c.end()
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)


def test_max_cnxns_limits_connections_in_total(server):
    """maxCnxns=10: of 20 clients (from one address, maxClientCnxns=0) the first 10 get
    sessions; the rest are closed before any reply; freeing one lets one more in."""
    srv = start_server(server.kind, {"maxCnxns": "10"})
    conns: list[RawConnection] = []
    try:
        refused = 0
        for _ in range(20):
            try:
                c = RawConnection(srv.port)
            except OSError:  # closed by the server while connecting
                refused += 1
                continue
            try:
                c.handshake()
                conns.append(c)
            except (Closed, OSError):
                c.close()
                refused += 1
        assert (len(conns), refused) == (10, 10)
        for c in conns:
            c.ping()
        assert _rejected(srv.port)
        conns.pop().end()
        conns.append(_session_once_a_slot_is_free(srv.port))
        conns[-1].ping()
        assert srv.proc is not None and srv.proc.poll() is None
    finally:
        for c in conns:
            c.end()
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)


def test_many_connections_opened_and_dropped(server, zk, base):
    socks = []
    for i in range(50):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        if i % 3 == 0:
            s.sendall(struct.pack(">i", 45) + b"\0" * 3)
        socks.append(s)
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        s.close()
