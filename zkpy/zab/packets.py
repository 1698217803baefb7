"""QuorumPacket: the records learners and the leader exchange on the quorum port.

The stream carries jute records back to back with no length prefix:
`int type, long zxid, buffer data, vector<Id> authinfo`.  `PacketReader` splits a byte
stream into packets incrementally; it also hands out the raw snapshot stream that
follows a SNAP packet.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

from zkpy.jute.codec import JuteError, Reader, Writer

_HDR = struct.Struct(">iqi")  # type, zxid, data length
_COUNT = struct.Struct(">i")  # authinfo: entries, -1 for null
_NO_AUTH = b"\xff\xff\xff\xff"  # authinfo: null
_EMPTY_AUTH = bytes(4)  # authinfo: an empty vector
MAX_PACKET_DATA = 64 * 1024 * 1024


class PacketType(IntEnum):
    REQUEST = 1
    PROPOSAL = 2
    ACK = 3
    COMMIT = 4
    PING = 5
    REVALIDATE = 6
    SYNC = 7
    INFORM = 8
    COMMITANDACTIVATE = 9
    NEWLEADER = 10
    FOLLOWERINFO = 11
    UPTODATE = 12
    DIFF = 13
    TRUNC = 14
    SNAP = 15
    OBSERVERINFO = 16
    LEADERINFO = 17
    ACKEPOCH = 18
    INFORMANDACTIVATE = 19


PROTOCOL_VERSION = 0x10000
_SNAP = int(PacketType.SNAP)
_tuple = tuple.__new__  # a NamedTuple without its __new__ wrapper (packets are hot)


class QuorumPacket(NamedTuple):
    type: int
    zxid: int
    data: bytes | None = None
    auth: tuple[tuple[str, str], ...] | None = None

    def encode(self) -> bytes:
        data, auth = self.data, self.auth
        if not auth:  # every broadcast packet, and requests of unauthenticated sessions
            tail = _NO_AUTH if auth is None else _EMPTY_AUTH
            if data is None:
                return _HDR.pack(self.type, self.zxid, -1) + tail
            return b"".join((_HDR.pack(self.type, self.zxid, len(data)), data, tail))
        w = Writer().int(self.type).long(self.zxid).buffer(data).int(len(auth))
        for scheme, ident in auth:
            w.ustring(scheme).ustring(ident)
        return w.getvalue()


def learner_info(sid: int, config_version: int = 0) -> bytes:
    return Writer().long(sid).int(PROTOCOL_VERSION).long(config_version).getvalue()


def parse_learner_info(data: bytes) -> tuple[int, int, int]:
    r = Reader(data)
    sid = r.long()
    version = r.int() if r.remaining() >= 4 else 0
    cfg = r.long() if r.remaining() >= 8 else 0
    return sid, version, cfg


def request_data(session_id: int, cxid: int, op: int, body: bytes) -> bytes:
    return struct.pack(">qii", session_id, cxid, op) + body


def parse_request_data(data: bytes) -> tuple[int, int, int, bytes]:
    if len(data) < 16:
        raise JuteError("REQUEST packet too short")
    sid, cxid, op = struct.unpack_from(">qii", data)
    return sid, cxid, op, data[16:]


class PacketReader:
    """Incremental decoder of a QuorumPacket stream."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next(self) -> QuorumPacket | None:
        """The next complete packet, or None if more bytes are needed."""
        buf = self.buf
        if len(buf) < 16:
            return None
        type_, zxid, n = _HDR.unpack_from(buf, 0)
        if n < -1 or n > MAX_PACKET_DATA:
            raise JuteError(f"quorum packet data length {n} out of range")
        pos = 16 + max(n, 0)
        if len(buf) < pos + 4:
            return None
        data = None if n == -1 else bytes(buf[16:pos])
        tail = buf[pos:pos + 4]
        if tail == _NO_AUTH or tail == _EMPTY_AUTH:  # the common cases, without a Reader
            del buf[: pos + 4]
            return _tuple(QuorumPacket, (type_, zxid, data, None if tail == _NO_AUTH else ()))
        r = Reader(buf, pos)
        try:
            count = r.int()
            auth: list[tuple[str, str]] | None = None
            if count >= 0:
                if count > 1024:
                    raise JuteError(f"authinfo count {count} out of range")
                auth = []
                for _ in range(count):
                    auth.append((r.ustring() or "", r.ustring() or ""))
        except JuteError as e:
            if "truncated" in str(e):
                return None
            raise
        del buf[: r.pos]
        return QuorumPacket(type_, zxid, data, tuple(auth) if auth is not None else None)

    def drain(self) -> list[QuorumPacket]:
        """Every complete packet buffered, up to and including a SNAP (whose raw stream
        follows and is not a packet)."""
        out = self._drain_bare()
        if out and out[-1].type == _SNAP:
            return out
        while (pkt := self.next()) is not None:
            out.append(pkt)
            if pkt.type == _SNAP:
                break
        return out

    def _drain_bare(self) -> list[QuorumPacket]:
        """The leading run of complete packets without authinfo entries (every broadcast
        packet), read by position and cut from the buffer at once; `next` reads the rest
        (and raises for what it refuses)."""
        out: list[QuorumPacket] = []
        buf = self.buf
        end = len(buf)
        pos = 0
        with memoryview(buf) as mv:  # released before the packets read are cut off
            while end - pos >= 20:
                type_, zxid, n = _HDR.unpack_from(buf, pos)
                d = pos + 16 + (n if n > 0 else 0)
                if not -1 <= n <= MAX_PACKET_DATA or d + 4 > end:
                    break
                count = _COUNT.unpack_from(buf, d)[0]
                if count != -1 and count != 0:
                    break
                out.append(_tuple(QuorumPacket, (type_, zxid, None if n == -1 else bytes(mv[pos + 16 : d]),
                                                 None if count == -1 else ())))
                pos = d + 4
                if type_ == _SNAP:
                    break
        if pos:
            del buf[:pos]
        return out

    def take_raw(self, n: int) -> bytes | None:
        """n raw bytes (the snapshot stream after SNAP), or None if not all arrived."""
        if len(self.buf) < n:
            return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out
