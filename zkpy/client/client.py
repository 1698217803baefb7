"""An asyncio ZooKeeper client: connect strings with several hosts and a chroot,
session resume on another host, pipelined requests, watches and auth.

Used by zkpy-cli, the tests and the benchmark.  Replies are matched to requests in
FIFO order, as the protocol guarantees.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from zkpy.client import requests as rq
from zkpy.client.requests import MultiResult, Stat
from zkpy.jute.codec import INT, Reader, Writer
from zkpy.jute.constants import (
    XID_AUTH,
    XID_NOTIFICATION,
    XID_PING,
    XID_SET_WATCHES,
    Err,
    EventType,
    KeeperError,
    OpCode,
)
from zkpy.jute.records import ACL, OPEN_ACL_UNSAFE, REPLY_HEADER, REQUEST_HEADER

log = logging.getLogger("zkpy.client")

CONNECTING, CONNECTED, CONNECTED_RO, CLOSED, EXPIRED, AUTH_FAILED = (
    "CONNECTING", "CONNECTED", "CONNECTEDREADONLY", "CLOSED", "EXPIRED", "AUTH_FAILED",
)


@dataclass(frozen=True, slots=True)
class WatchedEvent:
    type: int
    path: str

    @property
    def type_name(self) -> str:
        return {1: "NodeCreated", 2: "NodeDeleted", 3: "NodeDataChanged",
                4: "NodeChildrenChanged"}.get(self.type, str(self.type))


Watcher = Callable[[WatchedEvent], Any]


def parse_hosts(connect: str) -> tuple[list[tuple[str, int]], str]:
    """'h1:2181,h2:2182/chroot' -> ([(h1, 2181), (h2, 2182)], '/chroot')."""
    chroot = ""
    if "/" in connect:
        connect, chroot = connect.split("/", 1)
        chroot = "/" + chroot.rstrip("/") if chroot.strip("/") else ""
    hosts = []
    for part in connect.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 2181
        elif ":" in part:
            host, p = part.rsplit(":", 1)
            port = int(p)
        else:
            host, port = part, 2181
        hosts.append((host, port))
    if not hosts:
        raise ValueError(f"no host in connect string {connect!r}")
    return hosts, chroot


class _Wire(asyncio.Protocol):
    """Frames in, frames out; hands complete frames to the client."""

    def __init__(self, client: ZooKeeperClient) -> None:
        self.client = client
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # create_connection hands a stream protocol an asyncio.Transport; the base
        # signature only says BaseTransport
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        n_buf = len(buf)
        while n_buf - pos >= 4:
            n = INT.unpack_from(buf, pos)[0]
            if n < 0 or n_buf - pos - 4 < n:
                break
            body = bytes(buf[pos + 4 : pos + 4 + n])
            pos += 4 + n
            if not self.handshake.done():
                self.handshake.set_result(body)
            else:
                self.client._frame(self, body)
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("connection closed during handshake"))
        self.client._wire_lost(self)


@dataclass
class _Watches:
    data: dict[str, list[Watcher]] = field(default_factory=dict)
    exist: dict[str, list[Watcher]] = field(default_factory=dict)
    child: dict[str, list[Watcher]] = field(default_factory=dict)
    persistent: dict[str, list[Watcher]] = field(default_factory=dict)
    recursive: dict[str, list[Watcher]] = field(default_factory=dict)


class ZooKeeperClient:
    """One ZooKeeper session over a connection to one of `hosts` at a time."""

    def __init__(self, hosts: str, timeout_ms: int = 30000, read_only: bool = False,
                 session: tuple[int, bytes] | None = None) -> None:
        self.hosts, self.chroot = parse_hosts(hosts)
        self.requested_timeout = timeout_ms
        self.read_only = read_only
        self.session_id, self.passwd = session or (0, bytes(16))
        self.timeout = 0
        self.last_zxid = 0
        self.state = CLOSED
        self.state_listeners: list[Callable[[str], Any]] = []
        self.auth: list[tuple[str, bytes]] = []
        self.watches = _Watches()
        self._wire: _Wire | None = None
        self._pending: deque[tuple[int, asyncio.Future[tuple[int, int, Reader]]]] = deque()
        self._auth_waiters: deque[asyncio.Future[int]] = deque()
        self._xid = 0
        self._host_index = random.randrange(len(self.hosts))
        self._ping_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._closing = False
        self.connected_host: tuple[str, int] | None = None

    # ---- connection lifecycle -----------------------------------------------------
    async def start(self, timeout: float = 15.0) -> None:
        """Connect (trying each host in turn) until a session is established."""
        self._closing = False
        await asyncio.wait_for(self._connect_any(), timeout)
        if self._ping_task is not None:
            self._ping_task.cancel()
        self._ping_task = asyncio.get_running_loop().create_task(self._ping_loop())

    async def _connect_any(self) -> None:
        last: Exception | None = None
        for attempt in range(len(self.hosts) * 50):
            host, port = self.hosts[self._host_index % len(self.hosts)]
            self._host_index += 1
            try:
                await self._connect(host, port)
                return
            except KeeperError:
                raise
            except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError) as e:
                last = e
                await asyncio.sleep(min(0.05 * (attempt + 1), 1.0))
        raise ConnectionError(f"could not connect to any of {self.hosts}: {last}")

    async def _connect(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._set_state(CONNECTING)
        transport, wire = await asyncio.wait_for(
            loop.create_connection(lambda: _Wire(self), host, port), 5.0)
        req = (Writer().int(0).long(self.last_zxid).int(self.requested_timeout)
               .long(self.session_id).buffer(self.passwd).bool(self.read_only).getvalue())
        transport.write(INT.pack(len(req)) + req)
        try:
            body = await asyncio.wait_for(wire.handshake, 5.0)
        except BaseException:
            transport.close()
            raise
        r = Reader(body)
        r.int()
        timeout, sid, passwd = r.int(), r.long(), r.buffer() or bytes(16)
        ro = r.bool() if r.remaining() else False
        if timeout <= 0:
            transport.close()
            self._set_state(EXPIRED)
            raise KeeperError(Err.SESSIONEXPIRED)
        self.timeout, self.session_id, self.passwd = timeout, sid, passwd
        self._wire = wire
        self.connected_host = (host, port)
        for scheme, cred in self.auth:
            self._send(XID_AUTH, *rq.auth(scheme, cred))
        self._resend_watches()
        self._set_state(CONNECTED_RO if ro else CONNECTED)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            for cb in list(self.state_listeners):
                cb(state)

    async def close(self) -> None:
        """Close the session (ephemerals go away) and the connection."""
        self._closing = True
        if self._wire is not None and self.state in (CONNECTED, CONNECTED_RO):
            try:
                await asyncio.wait_for(self._call(OpCode.CLOSE_SESSION, b""), 5.0)
            except (TimeoutError, KeeperError, ConnectionError):
                pass
        for t in (self._ping_task, self._reconnect_task):
            if t is not None:
                t.cancel()
        if self._wire is not None and self._wire.transport is not None:
            self._wire.transport.close()
        self._wire = None
        self._set_state(CLOSED)

    def _wire_lost(self, wire: _Wire) -> None:
        if wire is not self._wire:
            return
        self._wire = None
        self._fail_pending()
        if self._closing or self.state in (EXPIRED, CLOSED, AUTH_FAILED):
            return
        self._set_state(CONNECTING)
        self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            await self._connect_any()
        except KeeperError:
            self._set_state(EXPIRED)
        except ConnectionError as e:
            log.warning("%s", e)
            self._set_state(CLOSED)

    def _fail_pending(self) -> None:
        while self._pending:
            _, fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(KeeperError(Err.CONNECTIONLOSS))
        while self._auth_waiters:
            fut2 = self._auth_waiters.popleft()
            if not fut2.done():
                fut2.set_exception(KeeperError(Err.CONNECTIONLOSS))

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.timeout / 3000.0, 0.2))
            if self._wire is not None and self.state in (CONNECTED, CONNECTED_RO):
                self._send(XID_PING, OpCode.PING, b"")

    # ---- frames ---------------------------------------------------------------------
    def _send(self, xid: int, op: int, body: bytes) -> None:
        wire = self._wire
        if wire is None or wire.transport is None:
            raise KeeperError(Err.CONNECTIONLOSS)
        wire.transport.write(INT.pack(8 + len(body)) + REQUEST_HEADER.pack(xid, op) + body)

    def _frame(self, wire: _Wire, frame: bytes) -> None:
        xid, zxid, err = REPLY_HEADER.unpack_from(frame, 0)
        if zxid > 0:
            self.last_zxid = zxid
        if xid == XID_NOTIFICATION:
            r = Reader(frame, 16)
            etype, _state, path = r.int(), r.int(), r.ustring() or ""
            self._dispatch(etype, self._strip(path))
            return
        if xid == XID_PING or xid == XID_SET_WATCHES:
            return
        if xid == XID_AUTH:
            if self._auth_waiters:
                f = self._auth_waiters.popleft()
                if not f.done():
                    f.set_result(err)
            if err == Err.AUTHFAILED:
                self._set_state(AUTH_FAILED)
            return
        if not self._pending:
            return
        want, fut = self._pending.popleft()
        if not fut.done():
            if want != xid:
                fut.set_exception(KeeperError(Err.CONNECTIONLOSS))
            else:
                fut.set_result((zxid, err, Reader(frame, 16)))

    async def _call(self, op: int, body: bytes) -> Reader:
        zxid, err, r = await self.submit(op, body)
        if err:
            raise KeeperError(Err(err))
        return r

    def submit(self, op: int, body: bytes) -> asyncio.Future[tuple[int, int, Reader]]:
        """Send a request; the future gives (zxid, err, body reader). Never raises on err."""
        self._xid = self._xid + 1 if self._xid < 0x7FFFFFFF else 1
        fut: asyncio.Future[tuple[int, int, Reader]] = asyncio.get_running_loop().create_future()
        self._send(self._xid, op, body)
        self._pending.append((self._xid, fut))
        return fut

    # ---- paths and watches ------------------------------------------------------------
    def _full(self, path: str) -> str:
        if not self.chroot:
            return path
        return self.chroot if path == "/" else self.chroot + path

    def _strip(self, path: str) -> str:
        c = self.chroot
        if c and path.startswith(c):
            return path[len(c):] or "/"
        return path

    def _dispatch(self, etype: int, path: str) -> None:
        w = self.watches
        fire: list[Watcher] = []
        if etype in (EventType.NODE_CREATED, EventType.NODE_DATA_CHANGED):
            fire += w.data.pop(path, []) + w.exist.pop(path, [])
        elif etype == EventType.NODE_CHILDREN_CHANGED:
            fire += w.child.pop(path, [])
        elif etype == EventType.NODE_DELETED:
            fire += w.data.pop(path, []) + w.exist.pop(path, []) + w.child.pop(path, [])
        fire += w.persistent.get(path, [])
        if etype != EventType.NODE_CHILDREN_CHANGED:
            p = path
            while True:
                fire += w.recursive.get(p, [])
                if p == "/":
                    break
                p = p[: p.rfind("/")] or "/"
        ev = WatchedEvent(etype, path)
        for cb in dict.fromkeys(fire):  # a watcher set several ways hears each event once
            cb(ev)

    def _resend_watches(self) -> None:
        w = self.watches
        if not any((w.data, w.exist, w.child, w.persistent, w.recursive)):
            return
        full = self._full
        self._send(XID_SET_WATCHES, *rq.set_watches(
            self.last_zxid, [full(p) for p in w.data], [full(p) for p in w.exist],
            [full(p) for p in w.child], [full(p) for p in w.persistent],
            [full(p) for p in w.recursive]))

    @staticmethod
    def _add(table: dict[str, list[Watcher]], path: str, cb: Watcher | None) -> None:
        if cb is not None and cb not in table.setdefault(path, []):
            table[path].append(cb)

    # ---- the API ----------------------------------------------------------------------
    async def add_auth(self, scheme: str, credential: str | bytes) -> None:
        cred = credential.encode() if isinstance(credential, str) else credential
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._auth_waiters.append(fut)
        self._send(XID_AUTH, *rq.auth(scheme, cred))
        err = await fut
        if err:
            raise KeeperError(Err(err))
        self.auth.append((scheme, cred))

    async def create(self, path: str, data: bytes | None = b"", acl: Sequence[ACL] = OPEN_ACL_UNSAFE,
                     ephemeral: bool = False, sequential: bool = False, container: bool = False,
                     ttl: int | None = None) -> tuple[str, Stat]:
        flags = (1 if ephemeral else 0) | (2 if sequential else 0)
        if container:
            flags = 4
        elif ttl is not None:
            flags = 6 if sequential else 5
        r = await self._call(*rq.create(self._full(path), data, acl, flags, ttl, container))
        created = r.ustring() or ""
        return self._strip(created), rq.read_stat(r)

    async def get(self, path: str, watch: Watcher | None = None) -> tuple[bytes | None, Stat]:
        r = await self._call(*rq.path_watch(OpCode.GET_DATA, self._full(path), watch is not None))
        self._add(self.watches.data, path, watch)
        return r.buffer(), rq.read_stat(r)

    async def exists(self, path: str, watch: Watcher | None = None) -> Stat | None:
        zxid, err, r = await self.submit(*rq.path_watch(OpCode.EXISTS, self._full(path), watch is not None))
        if err == Err.NONODE:
            self._add(self.watches.exist, path, watch)
            return None
        if err:
            raise KeeperError(Err(err))
        self._add(self.watches.data, path, watch)
        return rq.read_stat(r)

    async def get_children(self, path: str, watch: Watcher | None = None) -> tuple[list[str], Stat]:
        r = await self._call(*rq.path_watch(OpCode.GET_CHILDREN2, self._full(path), watch is not None))
        self._add(self.watches.child, path, watch)
        return r.string_vector() or [], rq.read_stat(r)

    async def set(self, path: str, data: bytes | None, version: int = -1) -> Stat:
        return rq.read_stat(await self._call(*rq.set_data(self._full(path), data, version)))

    async def delete(self, path: str, version: int = -1) -> None:
        await self._call(*rq.path_version(OpCode.DELETE, self._full(path), version))

    async def get_acl(self, path: str) -> tuple[list[ACL], Stat]:
        return rq.read_acls(await self._call(*rq.path_only(OpCode.GET_ACL, self._full(path))))

    async def set_acl(self, path: str, acl: Sequence[ACL], version: int = -1) -> Stat:
        return rq.read_stat(await self._call(*rq.set_acl(self._full(path), acl, version)))

    async def sync(self, path: str) -> str:
        r = await self._call(*rq.path_only(OpCode.SYNC, self._full(path)))
        return self._strip(r.ustring() or "")

    async def get_all_children_number(self, path: str) -> int:
        return (await self._call(*rq.path_only(OpCode.GET_ALL_CHILDREN_NUMBER, self._full(path)))).int()

    async def get_ephemerals(self, prefix: str = "/", sort: bool = True) -> list[str]:
        r = await self._call(*rq.path_only(OpCode.GET_EPHEMERALS, self._full(prefix)))
        paths = [self._strip(p) for p in r.string_vector() or []]
        return sorted(paths) if sort else paths

    async def whoami(self) -> list[tuple[str, str]]:
        r = await self._call(OpCode.WHO_AM_I, b"")
        return [(r.ustring() or "", r.ustring() or "") for _ in range(r.int())]

    async def add_watch(self, path: str, watcher: Watcher, recursive: bool = False) -> None:
        await self._call(*rq.path_int(OpCode.ADD_WATCH, self._full(path), 1 if recursive else 0))
        self._add(self.watches.recursive if recursive else self.watches.persistent, path, watcher)

    async def remove_watches(self, path: str, watcher_type: int = 3) -> list[str]:
        """Remove watches on the server, then here; returns the kinds dropped here."""
        await self._call(*rq.path_int(OpCode.REMOVE_WATCHES, self._full(path), watcher_type))
        return self.drop_watches(path, watcher_type)

    def drop_watches(self, path: str, watcher_type: int = 3) -> list[str]:
        """Forget this client's watches of `watcher_type` on `path` (without telling the
        server); returns the kinds dropped, of 'data', 'child' and 'persistent'."""
        w = self.watches
        every = {"data": [w.data, w.exist], "child": [w.child], "persistent": [w.persistent, w.recursive]}
        tables = {1: {"child": [w.child]}, 2: {"data": [w.data, w.exist]}, 4: {"persistent": [w.persistent]},
                  5: {"persistent": [w.recursive]}}.get(watcher_type, every)
        return [kind for kind, ts in tables.items() if any([t.pop(path, None) is not None for t in ts])]

    def delete_op(self, path: str, version: int = -1) -> tuple[int, bytes]:
        """A delete for multi(), with the chroot applied."""
        return rq.path_version(OpCode.DELETE, self._full(path), version)

    async def multi(self, ops: Sequence[tuple[int, bytes]]) -> list[MultiResult]:
        return rq.read_multi(await self._call(*rq.multi(ops)))

    async def get_config(self, watch: Watcher | None = None) -> tuple[bytes | None, Stat]:
        r = await self._call(*rq.path_watch(OpCode.GET_DATA, "/zookeeper/config", watch is not None))
        self._add(self.watches.data, "/zookeeper/config", watch)
        return r.buffer(), rq.read_stat(r)

    async def reconfig(self, joining: str | None, leaving: str | None, members: str | None,
                       from_config: int = -1) -> tuple[bytes | None, Stat]:
        body = Writer().ustring(joining).ustring(leaving).ustring(members).long(from_config).getvalue()
        r = await self._call(OpCode.RECONFIG, body)
        return r.buffer(), rq.read_stat(r)
