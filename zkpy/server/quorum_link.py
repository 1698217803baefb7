"""Opening quorum connections (election port 3888, quorum port 2888) with TLS, the
peer's host-name check and SASL, before the connection is handed to the protocol that
reads it (election's `_Connection`, ZAB's `QuorumStream`), which never sees any of it.

`QuorumLink.connect` is Java's dialing side (QuorumCnxManager.initiateConnection +
startConnection, Learner.connectToLeader): TCP, the TLS handshake with this member's
certificate, the host-name check, the election initial message if there is one, then
SaslQuorumAuthLearner.authenticate.  `QuorumLink.serve` is the accepting side
(UnifiedServerSocket, QuorumCnxManager.receiveConnection, LearnerHandler): TLS (with
`portUnification`, TLS or plain as the first five bytes say), the host-name check,
on the election port the initial message, then SaslQuorumAuthServer.authenticate.

The host-name check (ssl.quorum.hostnameVerification, default true, both directions,
as ZKTrustManager with QuorumX509Util): the peer's certificate must name the peer's IP
address (an IP subject alternative name); failing that, the peer's host name: the name
in server.N when dialing one given by name, else the IP address's reverse DNS name.
`quorum_security.host_matches` says what "name" means.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, TypeVar, cast

from zkpy.election.messages import InitialMessageError, decode_initial_message
from zkpy.server.config import Config
from zkpy.server.quorum_security import (
    ERROR,
    IN_PROGRESS,
    PROTOCOL,
    SERVER_NAME,
    STATUS_NAMES,
    SUCCESS,
    QuorumAuthError,
    QuorumSaslSettings,
    decode_auth_packet,
    encode_auth_packet,
    host_matches,
    is_auth_packet,
)
from zkpy.server.sasl import DigestMD5Server, SaslError, SaslSettings
from zkpy.server.sasl_client import DigestMD5Client
from zkpy.server.tls import TlsContext
from zkpy.server.tls_listener import TlsListener

log = logging.getLogger("zkpy.quorum.security")
P = TypeVar("P", bound=asyncio.Protocol)

MAX_PREAMBLE = 16384  # bytes a peer may send before it is authenticated
MAX_SASL_ROUNDS = 5  # SaslQuorumAuthServer.MAX_RETRIES


class _Gate(asyncio.Protocol):
    """Holds a connection until its preamble is done, then hands the transport and what
    was read past the preamble to the real protocol."""

    def __init__(self, on_made: Callable[[_Gate], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.lost = False  # the peer sent EOF or the connection is gone: nothing more comes
        self.closed = False  # connection_lost has been called (on us, not yet on the protocol)
        self._waiter: asyncio.Future[None] | None = None
        self._on_made = on_made
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > MAX_PREAMBLE and self.transport is not None:
            self.transport.close()  # a peer flooding us before authenticating
        self._wake()

    def eof_received(self) -> bool:
        self.lost = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def fill(self, n: int) -> bool:
        """Wait until n bytes are buffered; False if the connection ended first."""
        while len(self.buf) < n:
            if self.lost:
                return False
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return True

    async def read_auth_packet(self, offset: int = 0) -> tuple[int, bytes]:
        while True:
            got = decode_auth_packet(self.buf[offset:])
            if got is not None:
                status, token, size = got
                del self.buf[offset:offset + size]
                return status, token
            if not await self.fill(len(self.buf) + 1):
                raise QuorumAuthError("connection closed during SASL authentication")

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def hand_over(self, protocol: asyncio.BaseProtocol) -> None:
        assert self.transport is not None
        transport = self.transport
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.buf:
            data, self.buf = bytes(self.buf), bytearray()
            cast(asyncio.Protocol, protocol).data_received(data)
        if self.closed:  # the peer said its piece and left (an election loser): let it be read
            protocol.connection_lost(None)  # (after a mere EOF the transport tells it itself)


class QuorumLink:
    """Connects and listens on the quorum ports with what zoo.cfg asks for."""

    def __init__(self, tls: TlsContext | None, dial_tls: bool, unified: bool,
                 sasl: QuorumSaslSettings | None, timeout: float, reverse_dns: bool = True) -> None:
        self.tls = tls  # set with sslQuorum or portUnification (which needs the stores too)
        self.dial_tls = dial_tls  # sslQuorum: dial with TLS, accept only TLS unless unified
        self.unified = unified  # portUnification: accept TLS and plain
        self.sasl = sasl
        self.timeout = timeout  # cnxTimeout: the dial, TLS handshake, preamble and SASL
        self.reverse_dns = reverse_dns  # ssl.quorum.allowReverseDnsLookup
        self._reload: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> QuorumLink:
        tls = TlsContext(cfg.quorum_tls, with_client=True) if cfg.quorum_tls is not None else None
        return cls(tls, cfg.ssl_quorum, cfg.port_unification, cfg.quorum_sasl, cfg.cnx_timeout_ms / 1000.0,
                   cfg.quorum_reverse_dns)

    @property
    def plain(self) -> bool:
        return self.tls is None and self.sasl is None

    def start(self) -> None:
        """sslQuorumReloadCertFiles: look at the store files every second (TlsContext.check
        keeps the old certificates when the new files cannot be loaded)."""
        if self.tls is not None and self.tls.settings.cert_reload:
            self._reload = asyncio.get_running_loop().create_task(self._reloader(self.tls))

    @staticmethod
    async def _reloader(tls: TlsContext) -> None:
        while True:
            await asyncio.sleep(1.0)
            tls.check()

    def close(self) -> None:
        if self._reload is not None:
            self._reload.cancel()

    # ---- dialing ----------------------------------------------------------------------
    async def connect(self, factory: Callable[[], P], host: str, port: int,
                      first: bytes = b"") -> tuple[asyncio.Transport, P]:
        """Like loop.create_connection, then writes `first` and authenticates; raises
        OSError (a QuorumAuthError or ssl.SSLError among them) when any step fails."""
        loop = asyncio.get_running_loop()
        if self.plain:
            transport, protocol = await loop.create_connection(factory, host, port)
            if first:
                transport.write(first)
            return transport, protocol
        ctx = self.tls.client_context if self.tls is not None and self.dial_tls else None
        gate = _Gate()
        kw: dict[str, Any] = {}
        if ctx is not None:
            kw = {"ssl": ctx, "server_hostname": host, "ssl_handshake_timeout": self.timeout}
        try:
            await loop.create_connection(lambda: gate, host, port, **kw)
        except ssl.SSLError as e:
            log.warning("quorum TLS handshake with %s:%s failed: %s", host, port, e)
            raise
        assert gate.transport is not None
        try:
            async with asyncio.timeout(self.timeout):
                if ctx is not None:
                    await self._check_host(gate.transport, host)
                if first:
                    gate.write(first)
                if self.sasl is not None and self.sasl.learner_require:
                    await self._learner_auth(gate)
        except (QuorumAuthError, TimeoutError) as e:
            log.warning("quorum connection to %s:%s refused: %s", host, port, e)
            gate.transport.close()
            raise
        except BaseException:
            gate.transport.close()
            raise
        protocol = factory()
        gate.hand_over(protocol)
        return gate.transport, protocol

    async def _learner_auth(self, gate: _Gate) -> None:
        """SaslQuorumAuthLearner.authenticate."""
        assert self.sasl is not None
        client = DigestMD5Client(self.sasl.learner_user, self.sasl.learner_password, PROTOCOL, SERVER_NAME)
        gate.write(encode_auth_packet(IN_PROGRESS, b""))  # DIGEST-MD5 has no initial response
        status, token = await gate.read_auth_packet()
        try:
            while not client.complete:
                if status == SUCCESS:
                    if client.evaluate(token) is not None:
                        raise QuorumAuthError("protocol error: a response after completion")
                elif status == IN_PROGRESS:
                    gate.write(encode_auth_packet(IN_PROGRESS, client.evaluate(token)))
                    status, token = await gate.read_auth_packet()
                else:
                    raise QuorumAuthError(f"the server refused our credentials (user "
                                          f"{self.sasl.learner_user!r}): status {STATUS_NAMES[status]}")
        except SaslError as e:
            raise QuorumAuthError(str(e)) from None
        if status != SUCCESS:
            raise QuorumAuthError(f"authentication ended with status {STATUS_NAMES[status]}")

    # ---- accepting --------------------------------------------------------------------
    async def serve(self, factory: Callable[[], asyncio.Protocol], host: str, port: int,
                    election: bool = False) -> QuorumListener:
        """A listener whose connections reach `factory`'s protocol once accepted."""
        loop = asyncio.get_running_loop()
        if self.plain:
            return QuorumListener(await loop.create_server(factory, host, port, reuse_address=True), set())

        pending: set[_Gate] = set()  # closed with the listener: a role that ended takes no one

        def gate() -> _Gate:
            return _Gate(lambda g: self._start(g, factory, election, pending))

        if self.tls is None:
            return QuorumListener(await loop.create_server(gate, host, port, reuse_address=True), pending)
        tls = self.tls
        listener = TlsListener(gate, lambda: tls.context, self.unified, self.timeout, quorum=True)
        await listener.open(host, port, backlog=128)
        return QuorumListener(listener, pending)

    def _start(self, gate: _Gate, factory: Callable[[], asyncio.Protocol], election: bool,
               pending: set[_Gate]) -> None:
        pending.add(gate)
        gate.task = asyncio.get_running_loop().create_task(self._admit(gate, factory, election))
        gate.task.add_done_callback(lambda _: pending.discard(gate))

    async def _admit(self, gate: _Gate, factory: Callable[[], asyncio.Protocol], election: bool) -> None:
        assert gate.transport is not None
        transport = gate.transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        try:
            async with asyncio.timeout(self.timeout):
                if transport.get_extra_info("ssl_object") is not None:
                    await self._check_host(transport, None)
                offset = 0
                if election:
                    while True:
                        msg = decode_initial_message(gate.buf)
                        if msg is not None:
                            offset = msg.size
                            break
                        if not await gate.fill(len(gate.buf) + 1):
                            transport.close()
                            return
                if self.sasl is not None:
                    await self._server_auth(gate, offset, peer)
        except (OSError, TimeoutError, InitialMessageError) as e:
            log.warning("quorum connection from %s:%s refused: %s", peer[0], peer[1], e)
            transport.close()
            return
        except Exception as e:  # whatever a peer sends must not take the listener down
            log.warning("quorum connection from %s:%s dropped: %r", peer[0], peer[1], e)
            transport.close()
            return
        gate.hand_over(factory())

    async def _server_auth(self, gate: _Gate, offset: int, peer: tuple[Any, ...]) -> None:
        """SaslQuorumAuthServer.authenticate: a peer that does not start with an auth
        packet is let through unless serverRequireSasl; so is one whose authentication
        fails (after it is told ERROR)."""
        assert self.sasl is not None
        require = self.sasl.server_require
        if not await gate.fill(offset + 8) or not is_auth_packet(gate.buf[offset:offset + 8]):
            if require:
                raise QuorumAuthError("the peer does not authenticate and "
                                      "quorum.auth.serverRequireSasl=true")
            return
        server = DigestMD5Server(SaslSettings(credentials=self.sasl.credentials),
                                 realm=SERVER_NAME, protocol=PROTOCOL)
        try:
            _, token = await gate.read_auth_packet(offset)
            rounds = 0
            while True:
                challenge = server.evaluate(token)
                if server.complete:
                    if server.authzid and server.authzid != server.user:
                        raise SaslError(f"user {server.user!r} may not act as {server.authzid!r}")
                    gate.write(encode_auth_packet(SUCCESS, challenge))
                    log.info("quorum peer %s:%s authenticated as %r", peer[0], peer[1], server.user)
                    return
                rounds += 1
                if rounds > MAX_SASL_ROUNDS:
                    raise SaslError("too many SASL rounds")
                gate.write(encode_auth_packet(IN_PROGRESS, challenge))
                _, token = await gate.read_auth_packet(offset)
        except (SaslError, QuorumAuthError) as e:
            if not gate.lost:
                gate.write(encode_auth_packet(ERROR, b""))
            if require:
                raise QuorumAuthError(f"SASL authentication failed: {e}") from None
            log.warning("quorum peer %s:%s failed SASL authentication (%s); let through as "
                        "quorum.auth.serverRequireSasl=false", peer[0], peer[1], e)

    # ---- the host-name check ----------------------------------------------------------
    async def _check_host(self, transport: asyncio.Transport, host: str | None) -> None:
        """ZKTrustManager.performHostVerification for the peer at the other end."""
        assert self.tls is not None
        if not self.tls.settings.hostname_verification:
            return
        sslobj = transport.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        if der is None:
            if host is None:  # ssl.quorum.clientAuth none or want: nothing to check, as Java
                return
            raise QuorumAuthError("the peer presented no certificate")
        address = str(transport.get_extra_info("peername")[0])
        try:
            if host_matches(address, der):
                return
        except ValueError as e:
            raise QuorumAuthError(f"the peer's certificate cannot be read: {e}") from None
        if host is not None and not _is_ip(host):
            name: str | None = host
        else:
            name = await _reverse_dns(address) if self.reverse_dns else None
        if name is None or not host_matches(name, der):
            raise QuorumAuthError(f"the peer's certificate names neither its address {address} nor "
                                  f"its host name {name or '(no reverse DNS name)'} "
                                  "(ssl.quorum.hostnameVerification)")


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.strip("[]"))
        return True
    except OSError:
        return False


async def _reverse_dns(address: str) -> str | None:
    loop = asyncio.get_running_loop()
    try:
        name, _ = await loop.getnameinfo((address, 0), socket.NI_NAMEREQD)
        return str(name)
    except OSError:
        return None


class QuorumListener:
    """What `serve` returns: an asyncio.Server or a TlsListener behind one face."""

    def __init__(self, inner: asyncio.Server | TlsListener, pending: set[_Gate]) -> None:
        self._inner = inner
        self._pending = pending

    @property
    def sockets(self) -> list[socket.socket]:
        if isinstance(self._inner, TlsListener):
            return [self._inner.sock] if self._inner.sock is not None else []
        return list(self._inner.sockets)

    def close(self) -> None:
        self._inner.close()
        for gate in list(self._pending):
            if gate.task is not None:
                gate.task.cancel()
            if gate.transport is not None:
                gate.transport.close()
        self._pending.clear()

    async def wait_closed(self) -> None:
        if not isinstance(self._inner, TlsListener):
            await self._inner.wait_closed()
