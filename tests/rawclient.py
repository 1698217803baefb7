"""A tiny blocking ZooKeeper client that speaks the Jute wire protocol directly.

It exists for the requests kazoo cannot send (or normalises away): bad paths, odd
create flags, createTTL / createContainer, getEphemerals, getAllChildrenNumber,
whoAmI, multiRead, unknown auth schemes, and for seeing the raw ReplyHeader (xid,
zxid, err) of every reply.  It deliberately does not import zkpy, so it checks the
server from the outside exactly as a third-party client would.

Usage::

    with RawClient(port) as c:          # handshake done, session created
        r = c.create("/a", b"x")       # Reply(xid, zxid, err, body)
        assert r.err == 0 and c.parse_path(r) == "/a"

Replies are matched strictly by order (the server answers in request order);
watch notifications (xid -1) that arrive in between are collected in `events`.
On exit the session is closed with closeSession so that it does not linger until
expiry (and later consume a zxid in the middle of somebody else's test).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

# ---- constants -----------------------------------------------------------------------


class Op:
    CREATE = 1
    DELETE = 2
    EXISTS = 3
    GET_DATA = 4
    SET_DATA = 5
    GET_ACL = 6
    SET_ACL = 7
    GET_CHILDREN = 8
    SYNC = 9
    PING = 11
    GET_CHILDREN2 = 12
    CHECK = 13
    MULTI = 14
    CREATE2 = 15
    RECONFIG = 16
    CHECK_WATCHES = 17
    REMOVE_WATCHES = 18
    CREATE_CONTAINER = 19
    DELETE_CONTAINER = 20
    CREATE_TTL = 21
    MULTI_READ = 22
    AUTH = 100
    SET_WATCHES = 101
    GET_EPHEMERALS = 103
    GET_ALL_CHILDREN_NUMBER = 104
    SET_WATCHES2 = 105
    ADD_WATCH = 106
    WHO_AM_I = 107
    CLOSE_SESSION = -11
    ERROR = -1


class Err:
    OK = 0
    RUNTIMEINCONSISTENCY = -2
    MARSHALLINGERROR = -5
    UNIMPLEMENTED = -6
    BADARGUMENTS = -8
    NONODE = -101
    NOAUTH = -102
    BADVERSION = -103
    NOCHILDRENFOREPHEMERALS = -108
    NODEEXISTS = -110
    NOTEMPTY = -111
    SESSIONEXPIRED = -112
    INVALIDACL = -114
    AUTHFAILED = -115


class Perm:
    READ = 1
    WRITE = 2
    CREATE = 4
    DELETE = 8
    ADMIN = 16
    ALL = 31


XID_NOTIFICATION = -1
XID_PING = -2
XID_AUTH = -4
XID_SET_WATCHES = -8

# ---- records -------------------------------------------------------------------------

_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_STAT = struct.Struct(">qqqqiiiqiiq")
_REPLY_HEADER = struct.Struct(">iqi")
_MULTI_HEADER = struct.Struct(">i?i")


class ACL(NamedTuple):
    perms: int
    scheme: str
    id: str | None


OPEN_ACL_UNSAFE = (ACL(Perm.ALL, "world", "anyone"),)
READ_ACL_UNSAFE = (ACL(Perm.READ, "world", "anyone"),)


class Stat(NamedTuple):
    czxid: int
    mzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeralOwner: int
    dataLength: int
    numChildren: int
    pzxid: int


class Reply(NamedTuple):
    xid: int
    zxid: int
    err: int
    body: bytes


class MultiResult(NamedTuple):
    """One sub-result of multi / multiRead: header type and err, and the record bytes."""

    type: int
    err: int
    body: bytes


class ClientInfo(NamedTuple):
    scheme: str
    user: str


class Event(NamedTuple):
    type: int
    state: int
    path: str
    zxid: int


# ---- encoding ------------------------------------------------------------------------


def enc_int(v: int) -> bytes:
    return _INT.pack(v)


def enc_long(v: int) -> bytes:
    return _LONG.pack(v)


def enc_bool(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


def enc_buffer(b: bytes | None) -> bytes:
    if b is None:
        return _INT.pack(-1)
    return _INT.pack(len(b)) + b


def enc_string(s: str | bytes | None) -> bytes:
    """ustring; a `bytes` argument is sent verbatim (for deliberately odd encodings)."""
    if s is None:
        return _INT.pack(-1)
    raw = s if isinstance(s, bytes) else s.encode("utf-8", "surrogatepass")
    return _INT.pack(len(raw)) + raw


def enc_acls(acls: Sequence[ACL] | None) -> bytes:
    if acls is None:
        return _INT.pack(-1)
    out = [_INT.pack(len(acls))]
    for a in acls:
        out.append(_INT.pack(a.perms) + enc_string(a.scheme) + enc_string(a.id))
    return b"".join(out)


def create_body(path: str | bytes, data: bytes | None = b"", acl: Sequence[ACL] | None = OPEN_ACL_UNSAFE,
                flags: int = 0, ttl: int | None = None) -> bytes:
    """CreateRequest, or CreateTTLRequest when ttl is given."""
    b = enc_string(path) + enc_buffer(data) + enc_acls(acl) + enc_int(flags)
    if ttl is not None:
        b += enc_long(ttl)
    return b


def path_version_body(path: str | bytes, version: int) -> bytes:
    return enc_string(path) + enc_int(version)


def path_watch_body(path: str | bytes, watch: bool = False) -> bytes:
    return enc_string(path) + enc_bool(watch)


def set_data_body(path: str | bytes, data: bytes | None, version: int = -1) -> bytes:
    return enc_string(path) + enc_buffer(data) + enc_int(version)


def set_acl_body(path: str | bytes, acl: Sequence[ACL] | None, version: int = -1) -> bytes:
    return enc_string(path) + enc_acls(acl) + enc_int(version)


def multi_body(ops: Iterable[tuple[int, bytes]]) -> bytes:
    """MultiOperationRecord from (opcode, record bytes) pairs."""
    out = [_MULTI_HEADER.pack(op, False, -1) + rec for op, rec in ops]
    out.append(_MULTI_HEADER.pack(-1, True, -1))
    return b"".join(out)


# ---- decoding ------------------------------------------------------------------------


class Reader:
    """Sequential Jute reader over a reply body."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def int(self) -> int:
        v = _INT.unpack_from(self.data, self.pos)[0]
        self.pos += 4
        return v

    def long(self) -> int:
        v = _LONG.unpack_from(self.data, self.pos)[0]
        self.pos += 8
        return v

    def bool(self) -> bool:
        v = self.data[self.pos] != 0
        self.pos += 1
        return v

    def buffer(self) -> bytes | None:
        n = self.int()
        if n < 0:
            return None
        v = self.data[self.pos:self.pos + n]
        self.pos += n
        return bytes(v)

    def string(self) -> str | None:
        b = self.buffer()
        return None if b is None else b.decode("utf-8", "surrogatepass")

    def stat(self) -> Stat:
        v = Stat._make(_STAT.unpack_from(self.data, self.pos))
        self.pos += _STAT.size
        return v

    def acls(self) -> list[ACL] | None:
        n = self.int()
        if n < 0:
            return None
        return [ACL(self.int(), self.string() or "", self.string()) for _ in range(n)]

    def strings(self) -> list[str] | None:
        n = self.int()
        if n < 0:
            return None
        return [self.string() or "" for _ in range(n)]

    def at_end(self) -> bool:
        return self.pos == len(self.data)


def parse_multi(body: bytes) -> list[MultiResult]:
    """Split a MultiResponse into per-op (type, err, record bytes) triples."""
    r = Reader(body)
    out: list[MultiResult] = []
    while True:
        typ, done, err = _MULTI_HEADER.unpack_from(body, r.pos)
        r.pos += _MULTI_HEADER.size
        if done:
            break
        start = r.pos
        if typ == Op.ERROR:
            r.int()
        elif typ == Op.CREATE:
            r.string()
        elif typ in (Op.CREATE2, Op.CREATE_CONTAINER, Op.CREATE_TTL):
            r.string()
            r.stat()
        elif typ == Op.SET_DATA:
            r.stat()
        elif typ == Op.GET_DATA:
            r.buffer()
            r.stat()
        elif typ == Op.GET_CHILDREN:
            r.strings()
        out.append(MultiResult(typ, err, body[start:r.pos]))
    return out


# ---- the client ----------------------------------------------------------------------


class ConnectionClosed(Exception):
    """The server closed the socket."""


class RawClient:
    """One connection + session; every call returns the raw Reply."""

    def __init__(self, port: int, host: str = "127.0.0.1", session_timeout: int = 10000,
                 timeout: float = 10.0, connect: bool = True) -> None:
        self.host = host
        self.port = port
        self.session_timeout = session_timeout
        self.io_timeout = timeout
        self.sock: socket.socket | None = None
        self.xid = 0
        self.session_id = 0
        self.passwd = bytes(16)
        self.negotiated_timeout = 0
        self.last_zxid = 0
        self.events: list[Event] = []
        self.closed_by_server = False
        if connect:
            self.connect()

    # -- socket helpers --
    def _open(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.io_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.closed_by_server = False

    def send_frame(self, payload: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(_INT.pack(len(payload)) + payload)

    def _recv_exact(self, n: int) -> bytes:
        assert self.sock is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                self.closed_by_server = True
                raise ConnectionClosed(f"server closed the connection ({len(buf)}/{n} bytes read)")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        (n,) = _INT.unpack(self._recv_exact(4))
        return self._recv_exact(n)

    def is_closed_by_server(self, wait: float = 5.0) -> bool:
        """True if the server closes the socket (EOF or reset) within `wait` seconds.

        Any frames still arriving before the EOF are read and dropped.
        """
        assert self.sock is not None
        self.sock.settimeout(wait)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    self.closed_by_server = True
                    return True
        except ConnectionResetError:
            self.closed_by_server = True
            return True
        except TimeoutError:
            return False
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.io_timeout)

    # -- handshake --
    def connect(self, session_id: int = 0, passwd: bytes | None = None, read_only: bool | None = False,
                last_zxid_seen: int | None = None) -> tuple[int, int, bytes]:
        """Open the socket and do the handshake; returns (timeout, session id, passwd).

        read_only=None sends the old 44-byte ConnectRequest without the readOnly byte.
        """
        self._open()
        req = (enc_int(0) + enc_long(self.last_zxid if last_zxid_seen is None else last_zxid_seen)
               + enc_int(self.session_timeout) + enc_long(session_id)
               + enc_buffer(passwd if passwd is not None else bytes(16)))
        if read_only is not None:
            req += enc_bool(read_only)
        self.send_frame(req)
        r = Reader(self.recv_frame())
        r.int()  # protocolVersion
        timeout = r.int()
        sid = r.long()
        pw = r.buffer() or b""
        self.negotiated_timeout, self.session_id, self.passwd = timeout, sid, pw
        return timeout, sid, pw

    # -- requests --
    def next_xid(self) -> int:
        self.xid += 1
        return self.xid

    def send(self, op: int, body: bytes = b"", xid: int | None = None) -> int:
        """Send one request without waiting; returns its xid."""
        if xid is None:
            xid = self.next_xid()
        self.send_frame(_INT.pack(xid) + _INT.pack(op) + body)
        return xid

    def read_reply(self) -> Reply:
        """Next non-notification reply (notifications go to `events`)."""
        while True:
            frame = self.recv_frame()
            xid, zxid, err = _REPLY_HEADER.unpack_from(frame, 0)
            body = frame[_REPLY_HEADER.size:]
            if xid == XID_NOTIFICATION:
                r = Reader(body)
                self.events.append(Event(r.int(), r.int(), r.string() or "", zxid))
                continue
            if zxid > 0:
                self.last_zxid = max(self.last_zxid, zxid)
            return Reply(xid, zxid, err, body)

    def call(self, op: int, body: bytes = b"", xid: int | None = None) -> Reply:
        sent = self.send(op, body, xid)
        reply = self.read_reply()
        if reply.xid != sent:
            raise AssertionError(f"reply xid {reply.xid} does not match request xid {sent}")
        return reply

    # -- convenience wrappers (all return Reply) --
    def create(self, path: str | bytes, data: bytes | None = b"", acl: Sequence[ACL] | None = OPEN_ACL_UNSAFE,
               flags: int = 0, op: int = Op.CREATE, ttl: int | None = None) -> Reply:
        if op == Op.CREATE_TTL and ttl is None:
            ttl = 0
        return self.call(op, create_body(path, data, acl, flags, ttl))

    def delete(self, path: str | bytes, version: int = -1) -> Reply:
        return self.call(Op.DELETE, path_version_body(path, version))

    def exists(self, path: str | bytes, watch: bool = False) -> Reply:
        return self.call(Op.EXISTS, path_watch_body(path, watch))

    def get_data(self, path: str | bytes, watch: bool = False) -> Reply:
        return self.call(Op.GET_DATA, path_watch_body(path, watch))

    def set_data(self, path: str | bytes, data: bytes | None, version: int = -1) -> Reply:
        return self.call(Op.SET_DATA, set_data_body(path, data, version))

    def get_acl(self, path: str | bytes) -> Reply:
        return self.call(Op.GET_ACL, enc_string(path))

    def set_acl(self, path: str | bytes, acl: Sequence[ACL] | None, version: int = -1) -> Reply:
        return self.call(Op.SET_ACL, set_acl_body(path, acl, version))

    def get_children(self, path: str | bytes, watch: bool = False, stat: bool = False) -> Reply:
        return self.call(Op.GET_CHILDREN2 if stat else Op.GET_CHILDREN, path_watch_body(path, watch))

    def sync(self, path: str | bytes) -> Reply:
        return self.call(Op.SYNC, enc_string(path))

    def multi(self, ops: Iterable[tuple[int, bytes]], read: bool = False) -> Reply:
        return self.call(Op.MULTI_READ if read else Op.MULTI, multi_body(ops))

    def get_ephemerals(self, prefix: str | None) -> Reply:
        return self.call(Op.GET_EPHEMERALS, enc_string(prefix))

    def get_all_children_number(self, path: str | bytes) -> Reply:
        return self.call(Op.GET_ALL_CHILDREN_NUMBER, enc_string(path))

    def who_am_i(self) -> Reply:
        return self.call(Op.WHO_AM_I)

    def ping(self) -> Reply:
        return self.call(Op.PING, xid=XID_PING)

    def auth(self, scheme: str, auth: bytes | str) -> Reply:
        """Send an AuthPacket (xid -4) and wait for its reply."""
        if isinstance(auth, str):
            auth = auth.encode()
        return self.call(Op.AUTH, enc_int(0) + enc_string(scheme) + enc_buffer(auth), xid=XID_AUTH)

    # -- reply parsing --
    @staticmethod
    def parse_path(reply: Reply) -> str | None:
        return Reader(reply.body).string()

    @staticmethod
    def parse_path_stat(reply: Reply) -> tuple[str | None, Stat]:
        r = Reader(reply.body)
        return r.string(), r.stat()

    @staticmethod
    def parse_stat(reply: Reply) -> Stat:
        return Reader(reply.body).stat()

    @staticmethod
    def parse_data(reply: Reply) -> tuple[bytes | None, Stat]:
        r = Reader(reply.body)
        return r.buffer(), r.stat()

    @staticmethod
    def parse_acl(reply: Reply) -> tuple[list[ACL] | None, Stat]:
        r = Reader(reply.body)
        return r.acls(), r.stat()

    @staticmethod
    def parse_children(reply: Reply) -> list[str] | None:
        return Reader(reply.body).strings()

    @staticmethod
    def parse_int(reply: Reply) -> int:
        return Reader(reply.body).int()

    @staticmethod
    def parse_strings(reply: Reply) -> list[str] | None:
        return Reader(reply.body).strings()

    @staticmethod
    def parse_who_am_i(reply: Reply) -> list[ClientInfo]:
        r = Reader(reply.body)
        n = r.int()
        return [ClientInfo(r.string() or "", r.string() or "") for _ in range(max(n, 0))]

    @staticmethod
    def parse_multi(reply: Reply) -> list[MultiResult]:
        return parse_multi(reply.body)

    # -- teardown --
    def close_session(self) -> Reply | None:
        """closeSession, then close the socket; None if the connection was already gone."""
        if self.sock is None:
            return None
        try:
            r = self.call(Op.CLOSE_SESSION)
        except (ConnectionClosed, OSError):
            r = None
        self.close_socket()
        return r

    def close_socket(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def end_session(self) -> None:
        """Make sure the session is gone, reconnecting first if the server dropped us."""
        if self.session_id == 0:
            self.close_socket()
            return
        if self.sock is not None and not self.closed_by_server:
            if self.close_session() is not None:
                return
        self.close_socket()
        try:
            timeout, _, _ = self.connect(self.session_id, self.passwd, last_zxid_seen=0)
            if timeout > 0:
                self.close_session()
        except (ConnectionClosed, OSError):
            pass
        finally:
            self.close_socket()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end_session()


def end_kazoo_session(port: int, client_id: tuple[int, bytes], host: str = "127.0.0.1") -> None:
    """Close a session that a kazoo client left behind (e.g. after AUTH_FAILED)."""
    sid, passwd = client_id
    c = RawClient(port, host, connect=False)
    try:
        timeout, _, _ = c.connect(sid, passwd, last_zxid_seen=0)
        if timeout > 0:
            c.close_session()
    except (ConnectionClosed, OSError):
        pass
    finally:
        c.close_socket()
