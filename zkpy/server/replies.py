"""Encoding of reply frames: headers, notifications, write results, multi results."""

from __future__ import annotations

from zkpy.datatree.tree import ApplyResult
from zkpy.jute.codec import INT, Writer
from zkpy.jute.constants import XID_NOTIFICATION, KeeperState, OpCode
from zkpy.jute.records import REPLY_HEADER

_FRAME_HEADER = INT


def frame(xid: int, zxid: int, err: int, body: bytes = b"") -> bytes:
    """One length-prefixed reply frame."""
    return _FRAME_HEADER.pack(16 + len(body)) + REPLY_HEADER.pack(xid, zxid, err) + body


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


def multi_body(subs: list[ApplyResult]) -> bytes:
    w = Writer()
    for r in subs:
        if r.err != 0 or r.op == OpCode.ERROR:
            w.int(OpCode.ERROR).bool(False).int(r.err).int(r.err)
            continue
        op = r.op
        if op == OpCode.CREATE:
            w.int(OpCode.CREATE).bool(False).int(0).ustring(r.path)
        elif op in (OpCode.CREATE_CONTAINER, OpCode.CREATE_TTL):
            w.int(OpCode.CREATE2).bool(False).int(0).ustring(r.path).raw(r.stat or b"")
        elif op == OpCode.SET_DATA:
            w.int(OpCode.SET_DATA).bool(False).int(0).raw(r.stat or b"")
        else:  # delete, check
            w.int(op).bool(False).int(0)
    w.int(-1).bool(True).int(-1)
    return w.getvalue()
