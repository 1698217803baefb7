"""One client TCP connection: framing, the handshake, 4-letter words, batched writes.

The protocol object is the only place that touches the socket.  Every complete frame
of a read is decoded in one pass; replies accumulate in `out` and go to the transport
in one `writelines` per batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from zkpy.jute.codec import INT, JuteError, Reader
from zkpy.jute.constants import Err, OpCode
from zkpy.jute.records import (
    REQUEST_DECODERS,
    REQUEST_HEADER,
    ConnectRequest,
    MultiRequest,
    UnknownMultiOp,
)
from zkpy.server.core import MALFORMED, WRITE_OPS
from zkpy.server.fourletter import FOUR_LETTER_CODES, run_four_letter_word
from zkpy.server.identity import ConnectionIdentity
from zkpy.server.metrics import METRICS
from zkpy.server.replies import frame
from zkpy.server.tls import client_id

if TYPE_CHECKING:
    from zkpy.server.core import ZooKeeperServer

log = logging.getLogger("zkpy.connection")

NEW, CONNECTING, ESTABLISHED, CLOSING = range(4)
FORWARDED = WRITE_OPS | {OpCode.SYNC, OpCode.RECONFIG}

# Why a connection is not read (bits of ClientConnection.held).  Frames already read
# stay in `buf` until every reason is gone.
HOLD_THROTTLE = 1  # globalOutstandingLimit: the server has too many requests outstanding
HOLD_OUTPUT = 2  # the transport's write buffer is above its high-water mark
HOLD_CONNECTING = 4  # the session is being created or revalidated
HOLD_CLOSING = 8  # the connection closes once its replies are out (e.g. failed auth)


class ClientConnection(asyncio.Protocol):
    """asyncio protocol for one client; hashable, used as the watcher identity."""

    def __init__(self, server: ZooKeeperServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.out_size = 0  # bytes in `out`
        self.held = 0  # HOLD_* bits: while any is set, nothing more is read or processed
        self._continue_scheduled = False
        self.state = NEW
        self.session_id = 0
        self.pending_timeout = 0
        self.timeout = 0
        self.read_only_byte: bool | None = None
        self.identity = ConnectionIdentity()
        self.auth_ids = self.identity.ids  # in ZooKeeper's order (see identity.py)
        self.watched: set[str] = set()
        self.pending: deque[tuple[Any, ...]] = deque()  # requests waiting, in order
        self.closed = False
        self.peer = "?"
        self.peer_ip = ""
        self.peer_port = 0
        # per-connection statistics (cons)
        self.established_at = time.time()
        self.received = 0
        self.sent = 0
        self.last_op_code: int | None = None
        self.last_cxid = -1
        self.last_zxid = -1
        self.last_response = 0.0
        self._close_when_flushed = False
        self._handshake_timer: asyncio.TimerHandle | None = None
        # True while _process runs: a session resumed synchronously from inside it must not
        # re-enter (it would decode frames twice); the running loop goes on.
        self._processing = False
        self._reader = Reader(b"")

    # ---- asyncio callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # create_server hands a stream protocol an asyncio.Transport; the base signature
        # only says BaseTransport
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.peer_ip, self.peer_port = str(peer[0]), int(peer[1])
        self.peer = f"{self.peer_ip}:{self.peer_port}"
        server = self.server
        config = server.config
        limit = config.max_client_cnxns
        METRICS.inc("connection_request_count")
        if config.max_cnxns > 0 and len(server.connections) >= config.max_cnxns:
            log.warning("too many connections (maxCnxns=%d); closing %s", config.max_cnxns, self.peer)
            METRICS.inc("connection_rejected")
            self.closed = True
            transport.close()
            return
        if limit > 0 and sum(1 for c in server.connections if c.peer_ip == self.peer_ip) >= limit:
            log.warning("too many connections from %s (maxClientCnxns=%d); closing", self.peer_ip, limit)
            METRICS.inc("connection_rejected")
            self.closed = True
            transport.close()
            return
        self.identity.add("ip", self.peer_ip)
        if config.tls is not None:
            self._tls_identity(transport)
        server.connections.add(self)
        high = config.client_write_high_water
        transport.set_write_buffer_limits(high, high // 4)
        if server.throttled:
            self.hold(HOLD_THROTTLE)
        loop = asyncio.get_running_loop()
        self._handshake_timer = loop.call_later(
            server.config.sessionless_cnxn_timeout_ms / 1000.0, self._handshake_timeout
        )

    def _tls_identity(self, transport: asyncio.Transport) -> None:
        """The client certificate of a TLS connection: its subject DN is the `x509` identity
        (and `super` when it is X509AuthenticationProvider.superUser), as ZooKeeper's
        X509AuthenticationProvider gives it after a handshake that asked for a certificate.
        The handshake has already checked it against the trust store."""
        tls = self.server.config.tls
        ssl_object = transport.get_extra_info("ssl_object")
        if tls is None or ssl_object is None or tls.client_auth == "none":
            return
        der = ssl_object.getpeercert(binary_form=True)
        if not der:  # ssl.clientAuth=want and no certificate: no identity
            return
        dn = client_id(der)
        if dn == tls.super_user:
            self.add_auth("super", dn)
        self.add_auth("x509", dn)

    def _handshake_timeout(self) -> None:
        if self.state in (NEW, CONNECTING) and not self.closed:
            METRICS.inc("sessionless_connections_expired")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:  # the client went away (ZooKeeper: a failed read)
            METRICS.inc("connection_drop_count")
        self.closed = True
        server = self.server
        server.connections.discard(self)
        if self.pending:
            server.forget_pending(self)
        if self.watched:
            server.tree.watches.remove_watcher(self, self.watched)
            self.watched.clear()
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        METRICS.bytes_received.value += len(data)
        self.buf += data
        self._process()
        self.server.flush_dirty()

    def pause_writing(self) -> None:
        """The transport's write buffer passed its high-water mark: read no more requests
        (and process none already read) until the client has taken its replies."""
        self.hold(HOLD_OUTPUT)

    def resume_writing(self) -> None:
        self.release(HOLD_OUTPUT)

    # ---- back-pressure ----------------------------------------------------------------
    def hold(self, why: int) -> None:
        """Stop reading from this client's socket (for reason `why`, a HOLD_* bit)."""
        if not self.held and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.held |= why

    def release(self, why: int) -> None:
        """Reason `why` is gone; once none is left, read again and, soon, process the
        frames that were read but not processed."""
        if not self.held & why:
            return
        self.held &= ~why
        if self.held or self.transport is None or self.closed:
            return
        self.transport.resume_reading()
        if self.buf and not self._continue_scheduled:
            self._continue_scheduled = True
            asyncio.get_running_loop().call_soon(self._continue)

    def _continue(self) -> None:
        self._continue_scheduled = False
        if self.buf and not self.held and not self.closed:
            self._process()
            self.server.flush_dirty()

    # ---- framing --------------------------------------------------------------------
    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        buf = self.buf
        pos = 0
        end = len(buf)
        max_len = self.server.config.max_buffer
        server = self.server
        high = server.config.client_write_high_water
        # one immutable copy of what was read, made at the first complete frame: the
        # decoders slice it (one object per field, not a view and then a copy)
        data: bytes | None = None
        if self.state == ESTABLISHED:
            server.touch(self)
        try:
            while end - pos >= 4 and not self.held and not self.closed:
                if self.out_size > high:
                    # replies beyond the high-water mark go out now; if the transport cannot
                    # send them it calls pause_writing, and the rest waits in `buf`
                    self.flush()
                    continue
                if self.state == CONNECTING:
                    break
                n = INT.unpack_from(buf, pos)[0]
                if self.state == NEW and pos == 0 and n in FOUR_LETTER_CODES:
                    self._four_letter(n)
                    return
                if n < 0 or n > max_len:
                    log.info("closing %s: frame length %d out of range (jute.maxbuffer=%d)",
                             self.peer, n, max_len)
                    self.close()
                    return
                if end - pos - 4 < n:
                    break
                start = pos + 4
                pos = start + n
                server.stats.received += 1
                self.received += 1
                if data is None:
                    data = bytes(buf)
                if self.state == NEW:
                    self._handshake(data[start:pos])
                else:
                    self._request(data, start, pos)
        finally:
            if pos:
                del buf[:pos]
            self._reader.buf = b""  # holds no batch while the connection idles
            self._processing = False

    def _handshake(self, body: bytes) -> None:
        try:
            req = ConnectRequest.decode(body)
        except JuteError as e:
            log.info("closing %s: malformed ConnectRequest (%s)", self.peer, e)
            self.close()
            return
        self.read_only_byte = req.read_only
        self.state = CONNECTING
        self.server.connect(self, req)
        if self.state == CONNECTING and not self.closed:
            # like Java's disableRecv until the session is settled: what the client
            # pipelines behind its ConnectRequest waits in the socket, not in `buf`
            self.hold(HOLD_CONNECTING)

    def _request(self, data: bytes, start: int, end: int) -> None:
        if end - start < 8:
            log.info("closing %s: request frame of %d bytes is too short", self.peer, end - start)
            self.close()
            return
        xid, op = REQUEST_HEADER.unpack_from(data, start)
        decoder = REQUEST_DECODERS.get(op)
        if decoder is None or op == OpCode.CHECK:
            # zxid -1: the request never got one (Java's UnimplementedRequestProcessor).
            self.send(frame(xid, -1, Err.UNIMPLEMENTED))
            self.close_after_flush()
            return
        r = self._reader  # reused: no decoder keeps its Reader
        r.buf, r.pos, r.end = data, start + 8, end
        try:
            req = decoder(r)
        except UnknownMultiOp:
            self.send(frame(xid, self.server.tree.last_processed_zxid, Err.MARSHALLINGERROR))
            return
        except (JuteError, UnicodeDecodeError) as e:  # the codec decodes strings strictly
            if op in (OpCode.AUTH, OpCode.SASL):
                log.info("closing %s: undecodable auth packet: %s", self.peer, e)
                self.close()
                return
            log.info("%s: undecodable request (op %d): %s", self.peer, op, e)
            req = MALFORMED
        # a MULTI_READ decodes to a MultiRequest or is MALFORMED
        if op == OpCode.MULTI_READ and isinstance(req, MultiRequest) and any(
            o.op not in (OpCode.GET_DATA, OpCode.GET_CHILDREN) for o in req.ops
        ):
            self.send(frame(xid, self.server.tree.last_processed_zxid, Err.MARSHALLINGERROR))
            return
        self.last_cxid = xid
        # only a learner forwards requests, and only writes and syncs: keep their raw bytes
        body = data[start + 8 : end] if self.server.zab is not None and op in FORWARDED else b""
        self.server.request(self, xid, op, req, body)

    def _four_letter(self, code: int) -> None:
        self.state = CLOSING
        text = run_four_letter_word(self.server, code)
        if self.transport is not None:
            self.transport.write(text.encode("utf-8"))
        self.close()

    # ---- called by the server core ----------------------------------------------------
    def session_established(self, sid: int, timeout: int, passwd: bytes) -> None:
        from zkpy.jute.records import encode_connect_response

        if self.closed:
            return
        self.session_id = sid
        self.timeout = timeout
        self.state = ESTABLISHED
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        ro = self.server.read_only if self.read_only_byte is not None else None
        body = encode_connect_response(timeout, sid, passwd, ro)
        self.send(INT.pack(len(body)) + body)
        if self.held & HOLD_CONNECTING:
            self.release(HOLD_CONNECTING)  # the frames read meanwhile follow, soon
        elif self.buf:
            self._process()
        self.flush()

    def connect_failed(self) -> None:
        """Wrong password, unknown or expired session: the 'invalid' response, then close."""
        from zkpy.jute.records import encode_connect_response

        ro = self.server.read_only if self.read_only_byte is not None else None
        body = encode_connect_response(0, 0, bytes(16), ro)
        self.send(INT.pack(len(body)) + body)
        self.close_after_flush()
        self.flush()

    def send(self, data: bytes) -> None:
        if not self.out:
            self.server.dirty.append(self)
        self.out.append(data)
        self.out_size += len(data)
        self.sent += 1

    def notify(self, data: bytes) -> None:
        if not self.closed:
            self.send(data)

    def flush(self) -> None:
        out = self.out
        if out:
            self.server.stats.sent += len(out)
            self.out = []
            self.out_size = 0
            if self.transport is not None and not self.closed:
                self.transport.writelines(out)
            self.last_response = time.time()
        if self._close_when_flushed:
            self.close()

    def close_after_flush(self) -> None:
        """Close once the replies so far are out; no later frame is processed."""
        self._close_when_flushed = True
        self.hold(HOLD_CLOSING)

    def close(self) -> None:
        if self.closed:
            return
        if self.out and self.transport is not None:
            out, self.out, self.out_size = self.out, [], 0
            self.transport.writelines(out)
        self.closed = True
        self.state = CLOSING
        if self.transport is not None:
            self.transport.close()
        self.connection_lost(None)

    def last_op(self, op: int, zxid: int) -> None:
        self.last_op_code = op  # named for `cons` only when asked (last_opcode)
        self.last_zxid = zxid

    @property
    def last_opcode(self) -> str:
        """The last operation as `cons` shows it."""
        if self.last_op_code is None:
            return "NA"
        return _OP_ABBREV.get(self.last_op_code, "UNKNOWN")

    # ---- watches (ReadContext) ------------------------------------------------------
    def watch_data(self, path: str) -> None:
        self.server.tree.watches.add_data_watch(path, self)
        self.watched.add(path)

    def watch_child(self, path: str) -> None:
        self.server.tree.watches.add_child_watch(path, self)
        self.watched.add(path)

    def watch_persistent(self, path: str, recursive: bool) -> None:
        self.server.tree.watches.add_persistent(path, self, recursive)
        self.watched.add(path)

    def add_auth(self, scheme: str, ident: str) -> None:
        self.identity.add(scheme, ident)

    def pause(self, on: bool) -> None:
        """globalOutstandingLimit: stop (or resume) reading from this client's socket."""
        if on:
            self.hold(HOLD_THROTTLE)
        else:
            self.release(HOLD_THROTTLE)

    @property
    def queued(self) -> int:
        return len(self.pending)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


_OP_ABBREV = {
    OpCode.NOTIFICATION: "NOTF", OpCode.CREATE: "CREA", OpCode.DELETE: "DELE",
    OpCode.EXISTS: "EXIS", OpCode.GET_DATA: "GETD", OpCode.SET_DATA: "SETD",
    OpCode.GET_ACL: "GETA", OpCode.SET_ACL: "SETA", OpCode.GET_CHILDREN: "GETC",
    OpCode.SYNC: "SYNC", OpCode.PING: "PING", OpCode.GET_CHILDREN2: "GETC",
    OpCode.CHECK: "CHEC", OpCode.MULTI: "MULT", OpCode.CREATE2: "CREA",
    OpCode.RECONFIG: "RECO", OpCode.CHECK_WATCHES: "CHKW", OpCode.REMOVE_WATCHES: "REMW",
    OpCode.CREATE_CONTAINER: "CCON", OpCode.DELETE_CONTAINER: "DCON", OpCode.CREATE_TTL: "CTTL",
    OpCode.MULTI_READ: "MLTR", OpCode.AUTH: "AUTH", OpCode.SET_WATCHES: "SETW",
    OpCode.SASL: "SASL", OpCode.GET_EPHEMERALS: "GETE", OpCode.GET_ALL_CHILDREN_NUMBER: "GTAR",
    OpCode.SET_WATCHES2: "STW2", OpCode.ADD_WATCH: "ADDW", OpCode.WHO_AM_I: "HOMI",
    OpCode.CREATE_SESSION: "SESS", OpCode.CLOSE_SESSION: "CLOS",
}
