"""A client listener whose connections are TLS (`secureClientPort`) or, with
`client.portUnification=true` on the plain port, TLS or plain as each client's first
bytes say (Netty's DualModeSslHandler in Apache ZooKeeper's NettyServerCnxnFactory).

It accepts sockets itself so that (a) it can look at a client's first bytes without
taking them (MSG_PEEK) and hand the untouched socket to `loop.connect_accepted_socket`
with or without TLS, and (b) every TLS connection gets the context current when it was
accepted, which is how a reloaded certificate takes effect.  The protocol object and its
back-pressure (`ClientConnection`) are the same as on the plain port.

Handshakes are bounded as Netty's (NettyServerCnxnFactory): with
`zookeeper.netty.server.outstandingHandshake.limit` > 0, a connection counts from its
accept until its TLS handshake ends (or, on a unified port, until its first bytes say
plain), and a connection accepted while `limit` are counted is closed at once, before
any TLS work (mntr `tls_handshake_exceeded`; `outstanding_tls_handshake` is the
count).  Unlike Java 3.8, whose factory reads its `secure` flag before it is set, the
limit holds on secureClientPort too.  Each counted connection has
nio.sessionlessCnxnTimeout (10 s, as Netty's SslHandler's default handshake timeout) to
finish, so silent clients cannot keep the slots: Java puts no time limit on the first
bytes of a unified port, where a few silent connections hold the slots for good.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable

from zkpy.server.metrics import METRICS

log = logging.getLogger("zkpy.tls")

TLS_HANDSHAKE = 0x16
_RECHECK = 0.01  # seconds between peeks while fewer than 5 bytes have arrived


def looks_like_tls(head: bytes) -> bool | None:
    """Netty's decision on a connection's first bytes: True for a TLS record, False for
    plain text, None when more bytes are needed.  Like DualModeSslHandler: five bytes
    decide (a TLS record header: content type 20-24, major version 3); fewer decide
    plain unless the first byte is a handshake record's (a 4-letter word is 4 bytes)."""
    if not head:
        return None
    if len(head) >= 5:
        return 20 <= head[0] <= 24 and head[1] == 3
    return None if head[0] == TLS_HANDSHAKE else False


class TlsListener:
    """Accepts clients on one address; `unified` serves plain clients too."""

    def __init__(self, protocol_factory: Callable[[], asyncio.Protocol],
                 context: Callable[[], ssl.SSLContext], unified: bool, timeout: float,
                 handshake_limit: int = 0, quorum: bool = False) -> None:
        self._factory = protocol_factory
        # a quorum port: a refused peer is a warning, and the client metrics are not counted
        self._quorum = quorum
        self._context = context
        self.unified = unified
        self._timeout = timeout  # for the first bytes and for the TLS handshake
        self._limit = handshake_limit  # 0: none
        self.handshaking = 0  # connections counted against the limit now
        self.sock: socket.socket | None = None
        self._sniffing: dict[int, tuple[socket.socket, asyncio.TimerHandle]] = {}
        # each task handing an accepted socket to a transport: the socket while the task
        # has not started (None once it has), and whether it counts as a TLS handshake
        self._handing: dict[asyncio.Task[None], tuple[socket.socket | None, bool]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        assert self.sock is not None
        return int(self.sock.getsockname()[1])

    async def open(self, host: str, port: int, backlog: int = 1024) -> None:
        self._loop = loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, type_, proto, _, addr = infos[0]
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        assert self.sock is not None and self._loop is not None
        for _ in range(64):  # a burst at a time; the loop comes back for more
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: log, keep listening
                log.warning("accept failed: %s", e)
                return
            if self._limit:
                if self.handshaking >= self._limit:
                    METRICS.inc("tls_handshake_exceeded")
                    log.debug("%d TLS handshakes in progress: connection closed", self.handshaking)
                    conn.close()
                    continue
                self._counted(1)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.unified:
                timer = self._loop.call_later(self._timeout, self._give_up, conn)
                self._sniffing[conn.fileno()] = (conn, timer)
                self._loop.add_reader(conn.fileno(), self._peek, conn)
            else:
                self._serve(conn, True)

    def _peek(self, conn: socket.socket) -> None:
        assert self._loop is not None
        try:
            head = conn.recv(5, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            head = b""
        fd = conn.fileno()
        self._loop.remove_reader(fd)
        if not head:  # closed (or reset) before saying anything
            self._drop(conn)
            return
        tls = looks_like_tls(head)
        if tls is None:  # a TLS record header has begun: look again shortly
            self._loop.call_later(_RECHECK, self._rearm, conn)
            return
        _, timer = self._sniffing.pop(fd)
        timer.cancel()
        if not tls:
            self._counted(-1)
        self._serve(conn, tls)

    def _counted(self, n: int) -> None:
        if self._limit:
            self.handshaking += n
            METRICS.outstanding_tls_handshake += n

    def _rearm(self, conn: socket.socket) -> None:
        if conn.fileno() in self._sniffing and self._loop is not None:
            self._loop.add_reader(conn.fileno(), self._peek, conn)

    def _give_up(self, conn: socket.socket) -> None:
        if self._loop is not None and conn.fileno() in self._sniffing:
            self._loop.remove_reader(conn.fileno())
        self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        entry = self._sniffing.pop(conn.fileno(), None)
        if entry is not None:
            entry[1].cancel()
            self._counted(-1)
        conn.close()

    def _serve(self, conn: socket.socket, tls: bool) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self._connect(conn, tls))
        self._handing[task] = (conn, tls)

    def _handed(self, task: asyncio.Task[None] | None) -> None:
        """Forget a hand-over (once: `close` may have done it) and end its count."""
        entry = self._handing.pop(task, None) if task is not None else None
        if entry is not None and entry[1]:
            self._counted(-1)

    async def _connect(self, conn: socket.socket, tls: bool) -> None:
        assert self._loop is not None
        task = asyncio.current_task()
        if task in self._handing:
            self._handing[task] = (None, tls)  # the socket is this task's to close now
        try:
            peer = conn.getpeername()
        except OSError:
            peer = ("?", 0)
        try:
            if tls:
                await self._loop.connect_accepted_socket(
                    self._factory, conn, ssl=self._context(), ssl_handshake_timeout=self._timeout)
            else:
                await self._loop.connect_accepted_socket(self._factory, conn)
        except (TimeoutError, OSError) as e:  # ssl.SSLError and ConnectionError are OSErrors
            # a failed handshake (plain text on a TLS port, an untrusted or missing client
            # certificate, a timeout) ends this connection only
            if tls and not self._quorum:
                METRICS.inc("unsuccessful_handshake")
            log.log(logging.WARNING if self._quorum else logging.INFO,
                    "TLS handshake with %s:%s failed: %s", peer[0], peer[1], e)
            conn.close()
        finally:
            self._handed(task)

    def close(self) -> None:
        if self.sock is not None and self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
        for conn, timer in list(self._sniffing.values()):
            timer.cancel()
            if self._loop is not None:
                self._loop.remove_reader(conn.fileno())
            conn.close()
            self._counted(-1)
        self._sniffing.clear()
        for task, (unstarted, _) in list(self._handing.items()):
            # a task cancelled before its first step never runs its body, so the socket
            # and its count are ours to end; a started one is inside
            # connect_accepted_socket, whose cancellation closes the transport and socket
            if unstarted is not None:
                unstarted.close()
            self._handed(task)
            task.cancel()
