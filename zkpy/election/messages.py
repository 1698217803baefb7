"""Wire formats of leader election (port 3888): notifications, the initial message, frames.

Everything here is pure byte handling, shared by the FLE core (`fle.py`) and the
connection manager (`transport.py`).  Layouts follow Apache ZooKeeper 3.8
(`FastLeaderElection.buildMsg`, `WorkerReceiver.run`, `QuorumCnxManager.InitialMessage`);
all integers are big-endian and signed.

Errors: bytes from a peer that do not parse are a *remote* protocol error.
`Notification.decode` answers None (the reference silently skips such a message);
`decode_initial_message` raises `InitialMessageError` (the reference closes the socket).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "MAX_ADDR_LEN", "MAX_FRAME", "PROTOCOL_VERSION_V1", "PROTOCOL_VERSION_V2",
    "FrameDecoder", "FrameError", "InitialMessage", "InitialMessageError",
    "Notification", "ServerState", "decode_initial_message", "encode_frame",
    "encode_initial_message", "format_addr",
]

PROTOCOL_VERSION_V1 = -65536  # single election address; what 3.8 sends unless multiAddress.enabled
PROTOCOL_VERSION_V2 = -65535  # 'h1:p1|h2:p2' address list
MAX_ADDR_LEN = 2048  # QuorumCnxManager.maxBuffer
MAX_FRAME = 512 * 1024  # QuorumCnxManager.PACKETMAXSIZE

_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_HEADER28 = struct.Struct(">iqqq")  # state, leader, zxid, electionEpoch
_HEADER40 = struct.Struct(">iqqqqi")  # + peerEpoch, version
_HEADER44 = struct.Struct(">iqqqqii")  # + configLength
_INITIAL_HEAD = struct.Struct(">qqi")  # protocol version, sid, address length
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "0:0:0:0:0:0:0:0"})


class ServerState(IntEnum):
    """QuorumPeer.ServerState; the ordinal is what goes on the wire."""

    LOOKING = 0
    FOLLOWING = 1
    LEADING = 2
    OBSERVING = 3


@dataclass(frozen=True, slots=True)
class Notification:
    """One FLE message: the sender's state and the vote it proposes or follows.

    `config` is the sender's quorum config text (the format of /zookeeper/config); zkpy
    carries it but never acts on it (no reconfig).  A Java peer parses it and *restarts
    its election* if its `version=` is higher than its own, so send b"" or a config
    whose version is not newer than the ensemble's.
    """

    state: ServerState
    leader: int
    zxid: int
    election_epoch: int
    peer_epoch: int
    version: int = 2
    config: bytes = b""

    def encode(self) -> bytes:
        """The payload (without the outer frame length).

        version > 1: the current 44-byte header plus config; otherwise the 40-byte form
        (which any receiver reads as version 0, without config).
        """
        if self.version > 1:
            head = _HEADER44.pack(int(self.state), self.leader, self.zxid, self.election_epoch,
                                  self.peer_epoch, self.version, len(self.config))
            return head + self.config
        return _HEADER40.pack(int(self.state), self.leader, self.zxid, self.election_epoch,
                              self.peer_epoch, self.version)

    @classmethod
    def decode(cls, payload: bytes) -> Notification | None:
        """Parse a payload the way WorkerReceiver does; None where it would skip the message.

        28 bytes: pre-ZK-107 (peerEpoch = epoch of zxid); 40 bytes: no usable version
        (version 0); otherwise version at offset 36 and, when > 1, the config.  Lengths
        that would underflow, a bad configLength and an unknown state all give None.
        """
        size = len(payload)
        if size < 28:
            return None
        state, leader, zxid, election_epoch = _HEADER28.unpack_from(payload, 0)
        version = 0
        config = b""
        if size == 28:
            peer_epoch = zxid >> 32
        elif size < 40:
            return None  # peerEpoch (and the version int after it) would underflow
        else:
            (peer_epoch,) = _LONG.unpack_from(payload, 28)
            if size > 40:
                (version,) = _INT.unpack_from(payload, 36)
                if version > 1:
                    if size < 44:
                        return None
                    (length,) = _INT.unpack_from(payload, 40)
                    if length < 0 or length > size or 44 + length > size:
                        return None
                    config = bytes(payload[44:44 + length])
        if state not in _STATES:
            return None
        return cls(_STATES[state], leader, zxid, election_epoch, peer_epoch, version, config)


_STATES = {s.value: s for s in ServerState}


# ----------------------------------------------------------------------------------------
# Initial message: written once, raw (no frame length), by whoever dials.


class InitialMessageError(ValueError):
    """The dialer's initial message is malformed; the connection must be closed."""


@dataclass(frozen=True, slots=True)
class InitialMessage:
    """What a dialer said about itself.

    `addresses` holds the non-wildcard election addresses it announced (empty for the
    pre-3.5 form, which is just the sid); `size` is how many bytes of the stream it
    occupied -- whatever follows is already framed traffic.
    """

    sid: int
    addresses: tuple[tuple[str, int], ...]
    size: int


def format_addr(host: str, port: int) -> str:
    """`host:port`, with an IPv6 literal in brackets (NetUtils.formatInetAddr)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def encode_initial_message(sid: int, election_addr: str) -> bytes:
    """Protocol version V1, our sid, and our election address as `host:port`."""
    addr = election_addr.encode()
    if not 0 < len(addr) <= MAX_ADDR_LEN:
        raise ValueError(f"election address must be 1..{MAX_ADDR_LEN} bytes, got {len(addr)}")
    return _INITIAL_HEAD.pack(PROTOCOL_VERSION_V1, sid, len(addr)) + addr


def decode_initial_message(buf: bytes | bytearray | memoryview) -> InitialMessage | None:
    """Parse the start of an accepted connection's stream; None while more bytes are needed.

    Feed it everything received so far (it is cheap to call again).  A first long >= 0
    is a pre-3.5 peer: that long is the sid and nothing else follows.  Raises
    `InitialMessageError` for an unknown protocol version, an address length outside
    1..2048, or an address that is not `host:port`.
    """
    if len(buf) < 8:
        return None
    (version,) = _LONG.unpack_from(buf, 0)
    if version >= 0:
        return InitialMessage(version, (), 8)
    if version not in (PROTOCOL_VERSION_V1, PROTOCOL_VERSION_V2):
        raise InitialMessageError(f"unrecognized protocol version {version}")
    if len(buf) < _INITIAL_HEAD.size:
        return None
    _, sid, length = _INITIAL_HEAD.unpack_from(buf, 0)
    if length <= 0 or length > MAX_ADDR_LEN:
        raise InitialMessageError(f"unreasonable address length {length}")
    end = _INITIAL_HEAD.size + length
    if len(buf) < end:
        return None
    try:
        text = bytes(buf[_INITIAL_HEAD.size:end]).decode()
    except UnicodeDecodeError as e:
        raise InitialMessageError("election address is not UTF-8") from e
    addresses = tuple(a for a in map(_parse_host_port, text.split("|")) if a[0] not in _WILDCARD_HOSTS)
    return InitialMessage(sid, addresses, end)


def _parse_host_port(addr: str) -> tuple[str, int]:
    if addr.startswith("["):
        close = addr.find("]")
        if close < 0 or addr[close + 1:close + 2] != ":":
            raise InitialMessageError(f"badly formed address: {addr!r}")
        host, port_text = addr[1:close], addr[close + 2:]
    else:
        parts = addr.split(":")
        if len(parts) != 2:
            raise InitialMessageError(f"badly formed address: {addr!r}")
        host, port_text = parts
    try:
        port = int(port_text)
    except ValueError as e:
        raise InitialMessageError(f"bad port number in {addr!r}") from e
    return host, port


# ----------------------------------------------------------------------------------------
# Frames: after the initial message both directions carry `int length` + payload.


class FrameError(ValueError):
    """A frame length outside 1..512 KiB; the connection must be dropped."""


def encode_frame(payload: bytes) -> bytes:
    if not 0 < len(payload) <= MAX_FRAME:
        raise ValueError(f"election frame must be 1..{MAX_FRAME} bytes, got {len(payload)}")
    return _INT.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental splitter: `feed(data)` returns the complete payloads received so far."""

    __slots__ = ("_buf",)

    def __init__(self, initial: bytes = b"") -> None:
        self._buf = bytearray(initial)

    def feed(self, data: bytes = b"") -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        while len(buf) - pos >= 4:
            (length,) = _INT.unpack_from(buf, pos)
            if length <= 0 or length > MAX_FRAME:
                raise FrameError(f"invalid election frame length {length}")
            if len(buf) - pos - 4 < length:
                break
            out.append(bytes(buf[pos + 4:pos + 4 + length]))
            pos += 4 + length
        if pos:
            del buf[:pos]
        return out
