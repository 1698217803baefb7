"""Encoding of reply frames: headers, notifications, write results, multi results."""

from __future__ import annotations

import struct

from zkpy.datatree.tree import ApplyResult
from zkpy.jute.codec import INT
from zkpy.jute.constants import XID_NOTIFICATION, KeeperState, OpCode
from zkpy.jute.records import MULTI_HEADER, REPLY_HEADER

_FRAME_HEADER = struct.Struct(">i" + REPLY_HEADER.format.lstrip(">"))  # length + ReplyHeader


def frame(xid: int, zxid: int, err: int, body: bytes = b"") -> bytes:
    """One length-prefixed reply frame."""
    return _FRAME_HEADER.pack(16 + len(body), xid, zxid, err) + body


def notification(event_type: int, path: str, zxid: int = -1) -> bytes:
    p = path.encode("utf-8", "surrogatepass")
    body = INT.pack(event_type) + INT.pack(KeeperState.SYNC_CONNECTED) + INT.pack(len(p)) + p
    return frame(XID_NOTIFICATION, zxid, 0, body)


def ustring(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return INT.pack(len(b)) + b


def write_result_body(op: int, res: ApplyResult) -> bytes:
    """Body of a successful write reply for the request opcode op."""
    if op == OpCode.CREATE:
        return ustring(res.path or "")
    if op in (OpCode.CREATE2, OpCode.CREATE_CONTAINER, OpCode.CREATE_TTL):
        return ustring(res.path or "") + (res.stat or b"")
    if op in (OpCode.SET_DATA, OpCode.SET_ACL):
        return res.stat or b""
    if op == OpCode.MULTI:
        return multi_body(res.subs or [])
    return b""


_MH = MULTI_HEADER.pack
_MULTI_END = _MH(-1, True, -1)


def multi_body(subs: list[ApplyResult]) -> bytes:
    out: list[bytes] = []
    add = out.append
    for r in subs:
        op = r.op
        if r.err != 0 or op == OpCode.ERROR:
            add(_MH(OpCode.ERROR, False, r.err) + INT.pack(r.err))
        elif op == OpCode.SET_DATA:
            add(_MH(OpCode.SET_DATA, False, 0) + (r.stat or b""))
        elif op == OpCode.CREATE:
            add(_MH(OpCode.CREATE, False, 0) + ustring(r.path or ""))
        elif op in (OpCode.CREATE_CONTAINER, OpCode.CREATE_TTL):
            add(_MH(OpCode.CREATE2, False, 0) + ustring(r.path or "") + (r.stat or b""))
        else:  # delete, check
            add(_MH(op, False, 0))
    add(_MULTI_END)
    return b"".join(out)
