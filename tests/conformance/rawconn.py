"""A minimal synchronous ZooKeeper connection for tests that need control over single frames.

It encodes with plain `struct` (independent of zkpy's own codec), keeps notifications that
arrive while waiting for a reply in `events`, and never pings unless told to, so a test can
let a session expire simply by going quiet.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import NamedTuple

NOTIFICATION_XID = -1
PING_XID = -2
AUTH_XID = -4
SET_WATCHES_XID = -8

# opcodes
CREATE, DELETE, EXISTS, GET_DATA, SET_DATA, GET_CHILDREN = 1, 2, 3, 4, 5, 8
PING, GET_CHILDREN2, CHECK, MULTI, CREATE2 = 11, 12, 13, 14, 15
CHECK_WATCHES, REMOVE_WATCHES, CREATE_CONTAINER, CREATE_TTL = 17, 18, 19, 21
AUTH, SET_WATCHES, SET_WATCHES2, ADD_WATCH, CLOSE_SESSION = 100, 101, 105, 106, -11

# event types
NODE_CREATED, NODE_DELETED, NODE_DATA_CHANGED, NODE_CHILDREN_CHANGED = 1, 2, 3, 4
# WatcherType for checkWatches/removeWatches
W_CHILDREN, W_DATA, W_ANY, W_PERSISTENT, W_RECURSIVE = 1, 2, 3, 4, 5

OPEN_ACL = struct.pack(">ii", 1, 31) + struct.pack(">i5s", 5, b"world") + struct.pack(">i6s", 6, b"anyone")


def ustring(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">i", -1)
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def buffer(b: bytes | None) -> bytes:
    if b is None:
        return struct.pack(">i", -1)
    return struct.pack(">i", len(b)) + b


def strings(items: list[str]) -> bytes:
    return struct.pack(">i", len(items)) + b"".join(ustring(s) for s in items)


def create_body(path: str, data: bytes | None = b"", flags: int = 0, acl: bytes = OPEN_ACL) -> bytes:
    return ustring(path) + buffer(data) + acl + struct.pack(">i", flags)


def path_watch(path: str, watch: bool) -> bytes:
    return ustring(path) + (b"\x01" if watch else b"\x00")


class Event(NamedTuple):
    type: int
    state: int
    path: str
    zxid: int


class Reply(NamedTuple):
    xid: int
    zxid: int
    err: int
    body: bytes


class Closed(Exception):
    """The server closed the connection."""


def stat_fields(body: bytes, offset: int = 0) -> tuple[int, ...]:
    """czxid, mzxid, ctime, mtime, version, cversion, aversion, ephemeralOwner, dataLength,
    numChildren, pzxid."""
    return struct.unpack_from(">qqqqiiiqiiq", body, offset)


class RawConnection:
    """One TCP connection; `handshake()` makes it a session."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.events: list[Event] = []
        self.xid = 0
        self.session_id = 0
        self.passwd = b""
        self.negotiated = 0
        self.last_zxid = 0

    # ---------------------------------------------------------------- framing
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)

    def _fill(self, n: int, deadline: float) -> None:
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete frame in time (have {len(self.buf)} bytes)")
            self.sock.settimeout(remaining)
            try:
                d = self.sock.recv(65536)
            except ConnectionResetError as e:
                raise Closed("reset") from e
            if not d:
                raise Closed("eof")
            self.buf += d

    def read_frame(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        self._fill(4, deadline)
        (n,) = struct.unpack_from(">i", self.buf)
        self._fill(4 + n, deadline)
        frame, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return frame

    def wait_closed(self, timeout: float = 10.0) -> bytes:
        """Read until EOF; return whatever bytes arrived first. TimeoutError if still open."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("connection still open")
            self.sock.settimeout(remaining)
            try:
                d = self.sock.recv(65536)
            except ConnectionResetError:
                return self.buf
            if not d:
                return self.buf
            self.buf += d

    # -------------------------------------------------------------- handshake
    def handshake(self, timeout_ms: int = 10000, session_id: int = 0, passwd: bytes = b"\0" * 16,
                  last_zxid: int = 0, read_only: bool | None = False) -> tuple[int, int, bytes]:
        req = struct.pack(">iqiq", 0, last_zxid, timeout_ms, session_id) + buffer(passwd)
        if read_only is not None:
            req += b"\x01" if read_only else b"\x00"
        self.send_frame(req)
        resp = self.read_frame()
        _proto, negotiated, sid, plen = struct.unpack_from(">iiqi", resp)
        pw = resp[20:20 + plen]
        self.negotiated, self.session_id, self.passwd = negotiated, sid, pw
        self.handshake_response = resp
        return negotiated, sid, pw

    # --------------------------------------------------------------- requests
    def send(self, op: int, body: bytes = b"", xid: int | None = None) -> int:
        if xid is None:
            self.xid += 1
            xid = self.xid
        self.send_frame(struct.pack(">ii", xid, op) + body)
        return xid

    def _parse(self, frame: bytes) -> Reply:
        xid, zxid, err = struct.unpack_from(">iqi", frame)
        return Reply(xid, zxid, err, frame[16:])

    def read_reply(self, xid: int, timeout: float = 10.0) -> Reply:
        """Next non-notification frame, which must carry `xid`; notifications are kept."""
        deadline = time.monotonic() + timeout
        while True:
            r = self._parse(self.read_frame(max(0.0, deadline - time.monotonic())))
            if r.xid == NOTIFICATION_XID:
                self.events.append(self._event(r))
                continue
            assert r.xid == xid, f"reply xid {r.xid}, expected {xid}"
            if r.zxid > 0:
                self.last_zxid = max(self.last_zxid, r.zxid)
            return r

    def read_any(self, timeout: float = 10.0) -> Reply:
        return self._parse(self.read_frame(timeout))

    @staticmethod
    def _event(r: Reply) -> Event:
        etype, state, plen = struct.unpack_from(">iii", r.body)
        return Event(etype, state, r.body[12:12 + plen].decode(), r.zxid)

    def call(self, op: int, body: bytes = b"", timeout: float = 10.0) -> Reply:
        return self.read_reply(self.send(op, body), timeout)

    def ping(self) -> None:
        self.send(PING, xid=PING_XID)
        self.read_reply(PING_XID)

    def take_events(self) -> list[Event]:
        """Events received so far; a ping round trip first flushes anything already queued."""
        self.ping()
        out, self.events = self.events, []
        return out

    def wait_events(self, n: int, timeout: float = 10.0) -> list[Event]:
        """Block until at least n events arrived (pinging to keep the session alive)."""
        deadline = time.monotonic() + timeout
        while len(self.events) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.events)} of {n} events: {self.events}")
            try:
                r = self._parse(self.read_frame(0.2))
            except TimeoutError:
                continue
            if r.xid == NOTIFICATION_XID:
                self.events.append(self._event(r))
        out, self.events = self.events, []
        return out

    # ------------------------------------------------------------ operations
    def create(self, path: str, data: bytes | None = b"", flags: int = 0) -> Reply:
        return self.call(CREATE, create_body(path, data, flags))

    def set_data(self, path: str, data: bytes, version: int = -1) -> Reply:
        return self.call(SET_DATA, ustring(path) + buffer(data) + struct.pack(">i", version))

    def delete(self, path: str, version: int = -1) -> Reply:
        return self.call(DELETE, ustring(path) + struct.pack(">i", version))

    def get_data(self, path: str, watch: bool = False) -> Reply:
        return self.call(GET_DATA, path_watch(path, watch))

    def exists(self, path: str, watch: bool = False) -> Reply:
        return self.call(EXISTS, path_watch(path, watch))

    def get_children(self, path: str, watch: bool = False) -> Reply:
        return self.call(GET_CHILDREN, path_watch(path, watch))

    def add_watch(self, path: str, recursive: bool = False) -> Reply:
        return self.call(ADD_WATCH, ustring(path) + struct.pack(">i", 1 if recursive else 0))

    def remove_watches(self, path: str, wtype: int) -> Reply:
        return self.call(REMOVE_WATCHES, ustring(path) + struct.pack(">i", wtype))

    def check_watches(self, path: str, wtype: int) -> Reply:
        return self.call(CHECK_WATCHES, ustring(path) + struct.pack(">i", wtype))

    def set_watches(self, rel_zxid: int, data: list[str] = (), exist: list[str] = (),  # type: ignore[assignment]
                    child: list[str] = (), persistent: list[str] | None = None,  # type: ignore[assignment]
                    recursive: list[str] | None = None) -> Reply:
        body = struct.pack(">q", rel_zxid) + strings(list(data)) + strings(list(exist)) + strings(list(child))
        op = SET_WATCHES
        if persistent is not None or recursive is not None:
            body += strings(list(persistent or [])) + strings(list(recursive or []))
            op = SET_WATCHES2
        self.send(op, body, xid=SET_WATCHES_XID)
        return self.read_reply(SET_WATCHES_XID)

    def close_session(self) -> Reply:
        return self.call(CLOSE_SESSION)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def end(self, fresh: bool = False) -> None:
        """Close the session for good (so that it does not expire later, in another test,
        consuming a zxid there), reconnecting first if the connection is gone (or, with
        fresh=True, unusable because of what the test sent on it)."""
        if not self.session_id:
            self.close()
            return
        if not fresh:
            try:
                self.close_session()
                self.close()
                return
            except (OSError, Closed, TimeoutError, AssertionError):
                pass
        self.close()
        try:
            again = RawConnection(self.port)
            try:
                if again.handshake(session_id=self.session_id, passwd=self.passwd)[0] > 0:
                    again.close_session()
            finally:
                again.close()
        except (OSError, Closed, TimeoutError, AssertionError):
            pass

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def session(port: int, timeout_ms: int = 10000) -> RawConnection:
    c = RawConnection(port)
    c.handshake(timeout_ms)
    return c
