"""The election connection manager (QuorumCnxManager) on asyncio: all of election's I/O.

Rules kept from Apache ZooKeeper 3.8:

* one TCP connection per pair of members, and only the one dialed by the *larger* sid
  survives: a smaller sid dials, writes its initial message and closes; the larger side
  reads it, closes, and dials back (to the address announced, if any);
* after the initial message both directions carry frames `int length` + payload with
  1 <= length <= 512 KiB (anything else drops the connection);
* per peer a send slot of capacity 1 -- the newest unsent message replaces an older one;
* when a connection comes up, the queued message is written, or else the last message
  sent to that peer again (its receiver may have missed it when the old socket died);
* no background reconnects: `send()` and `connect_all()` dial on demand; connect timeout cnxTimeout
  (the link's, default 5 s).

Received payloads go to `on_message(sid, payload)` synchronously, in arrival order, on the
event loop (the reference's 100-slot receive queue is the caller's concern).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from zkpy.election.messages import (
    MAX_FRAME,
    FrameDecoder,
    FrameError,
    InitialMessageError,
    decode_initial_message,
    encode_frame,
    encode_initial_message,
    format_addr,
)
from zkpy.server.config import CNX_TIMEOUT_MS
from zkpy.server.quorum_link import QuorumLink

if TYPE_CHECKING:
    from zkpy.server.quorum_link import QuorumListener

__all__ = ["ElectionTransport"]

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 5.0  # an accepted socket must present its initial message by then
OBSERVER_ID = (1 << 63) - 1  # Long.MAX_VALUE: a legacy observer that has no sid of its own


class _Connection(asyncio.Protocol):
    """One socket.  An accepted one first reads the initial message; then frames."""

    def __init__(self, owner: ElectionTransport, sid: int | None) -> None:
        self.owner = owner
        self.sid = sid  # None until an accepted connection has said who it is
        self.transport: asyncio.Transport | None = None
        self.frames: FrameDecoder | None = FrameDecoder() if sid is not None else None
        self.handshake = bytearray()
        self.paused = False
        self.closed = False
        self.handshake_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop transports are not asyncio.Transport subclasses; do not assert the type
        self.transport = cast(asyncio.Transport, transport)
        if self.sid is None:
            loop = asyncio.get_running_loop()
            self.handshake_timer = loop.call_later(HANDSHAKE_TIMEOUT, self.close)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            if self.frames is None:
                self.handshake += data
                msg = decode_initial_message(self.handshake)
                if msg is None:
                    return
                if self.handshake_timer is not None:
                    self.handshake_timer.cancel()
                rest = bytes(self.handshake[msg.size:])
                self.handshake.clear()
                self.frames = FrameDecoder()
                if not self.owner._accepted(self, msg.sid, msg.addresses):
                    return
                data = rest
            for payload in self.frames.feed(data):
                if self.closed:
                    return
                self.owner._deliver(self, payload)
        except (InitialMessageError, FrameError) as e:
            log.warning("election connection from sid %s dropped: %s", self.sid, e)
            self.close()

    def write(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(encode_frame(payload))

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.owner._flush(self)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self.owner._lost(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
        self.closed = True
        self.owner._lost(self)


class ElectionTransport:
    """Connections to the other members' election ports, and our own listener.

    `peers` maps sid -> (host, port) of each member's election address (ours may be
    included; it is ignored).  `advertised_addr` is what our initial message announces
    (default: `listen_addr`, which should then not be a wildcard).
    """

    def __init__(self, my_id: int, listen_addr: tuple[str, int], peers: dict[int, tuple[str, int]],
                 on_message: Callable[[int, bytes], None],
                 advertised_addr: tuple[str, int] | None = None, link: QuorumLink | None = None) -> None:
        self.my_id = my_id
        self.listen_addr = listen_addr
        self.peers = {sid: addr for sid, addr in peers.items() if sid != my_id}
        self.on_message = on_message
        host, port = advertised_addr or listen_addr
        self._initial = encode_initial_message(my_id, format_addr(host, port))
        # TLS and SASL before a connection reaches _Connection (sslQuorum, quorum.auth.*)
        self._link = link or QuorumLink(None, False, False, None, CNX_TIMEOUT_MS / 1000.0)
        self._server: QuorumListener | None = None
        self._conns: dict[int, _Connection] = {}
        self._pending: dict[int, bytes] = {}  # capacity-1 send slot per peer
        self._last_sent: dict[int, bytes] = {}
        self._dialing: dict[int, asyncio.Task[None]] = {}
        self._accepted_conns: set[_Connection] = set()
        self._closed = False

    @property
    def port(self) -> int:
        """The port actually listened on (useful when constructed with port 0)."""
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        host, port = self.listen_addr
        self._server = await self._link.serve(lambda: self._new_accepted(), host, port, election=True)

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        for task in list(self._dialing.values()):
            task.cancel()
        for conn in [*self._conns.values(), *self._accepted_conns]:
            conn.close()
        for task in list(self._dialing.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
        self._server = None

    def send(self, sid: int, payload: bytes) -> None:
        """Queue `payload` for `sid` (replacing anything unsent) and connect if needed."""
        if len(payload) > MAX_FRAME or not payload:
            raise ValueError(f"election payload must be 1..{MAX_FRAME} bytes")
        if self._closed:
            return
        if sid == self.my_id:
            asyncio.get_running_loop().call_soon(self.on_message, sid, payload)
            return
        self._pending[sid] = payload
        conn = self._conns.get(sid)
        if conn is not None:
            self._flush(conn)
        else:
            self.connect_one(sid)

    def connect_all(self) -> None:
        """Dial every peer we have ever queued a message for and are not connected to."""
        for sid in list(self._pending.keys() | self._last_sent.keys()):
            self.connect_one(sid)

    def connected(self, sid: int) -> bool:
        return sid in self._conns

    def have_delivered(self) -> bool:
        """QuorumCnxManager.haveDelivered: is some peer's send slot empty?"""
        return any(sid not in self._pending for sid in self.peers) or not self.peers

    def connect_one(self, sid: int, addr: tuple[str, int] | None = None) -> None:
        if self._closed or sid in self._conns or sid in self._dialing:
            return
        addr = addr or self.peers.get(sid)
        if addr is None:
            log.warning("election: no address for server %d", sid)
            return
        task = asyncio.get_running_loop().create_task(self._dial(sid, addr))
        self._dialing[sid] = task

    # -- internals ----------------------------------------------------------------------

    async def _dial(self, sid: int, addr: tuple[str, int]) -> None:
        try:
            conn = _Connection(self, sid)
            await asyncio.wait_for(self._link.connect(lambda: conn, addr[0], addr[1], self._initial),
                                   self._link.timeout)
        except OSError as e:  # includes TimeoutError
            log.debug("election: cannot open channel to %d at %s: %s", sid, addr, e)
            return
        finally:
            self._dialing.pop(sid, None)
        if sid > self.my_id:
            # We lose the challenge: the larger sid dials us back.
            conn.close()
            return
        self._install(sid, conn)

    def _new_accepted(self) -> _Connection:
        conn = _Connection(self, None)
        self._accepted_conns.add(conn)
        return conn

    def _accepted(self, conn: _Connection, sid: int, addresses: tuple[tuple[str, int], ...]) -> bool:
        """An accepted socket introduced itself; True if it stays open for frames."""
        self._accepted_conns.discard(conn)
        if sid == OBSERVER_ID:
            log.warning("election: legacy observer without a sid connected; ignoring it")
            conn.close()
            return False
        if sid < self.my_id:
            # Keep only connections from larger sids: drop this one (and whatever we
            # believe is up with that sid) and dial back.
            conn.close()
            old = self._conns.pop(sid, None)
            if old is not None:
                old.close()
            self.connect_one(sid, addresses[0] if addresses else None)
            return False
        if sid == self.my_id:
            log.warning("election: connection request from a server with our own id %d", sid)
            conn.close()
            return False
        conn.sid = sid
        self._install(sid, conn)
        return True

    def _install(self, sid: int, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        old = self._conns.get(sid)
        self._conns[sid] = conn
        if old is not None and old is not conn:
            old.close()
        if sid not in self._pending and sid in self._last_sent:
            conn.write(self._last_sent[sid])  # the peer may have missed it
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        sid = conn.sid
        if sid is None or conn.closed or conn.paused or self._conns.get(sid) is not conn:
            return
        payload = self._pending.pop(sid, None)
        if payload is not None:
            self._last_sent[sid] = payload
            conn.write(payload)

    def _deliver(self, conn: _Connection, payload: bytes) -> None:
        assert conn.sid is not None
        self.on_message(conn.sid, payload)

    def _lost(self, conn: _Connection) -> None:
        self._accepted_conns.discard(conn)
        if conn.sid is not None and self._conns.get(conn.sid) is conn:
            del self._conns[conn.sid]

    def __repr__(self) -> str:
        return f"ElectionTransport(my_id={self.my_id}, connected={sorted(self._conns)})"
