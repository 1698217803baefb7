"""Transaction records: what the write pipeline logs, replicates and applies.

The layouts are Apache ZooKeeper's (TxnHeader + per-type record), so the same bytes go
into the txn log, into ZAB PROPOSAL packets and into a Java server's files.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, NamedTuple

from zkpy.jute.codec import MAX_FIELD_LEN, Reader, Writer
from zkpy.jute.constants import OpCode
from zkpy.jute.records import ACL, read_acl_list, write_acl_list

if TYPE_CHECKING:
    from zkpy.jute.codec import ReadBuffer

TXN_HEADER = struct.Struct(">qiqqi")  # clientId, cxid, zxid, time, type


class TxnHeader(NamedTuple):
    client_id: int
    cxid: int
    zxid: int
    time: int
    type: int

    def encode(self) -> bytes:
        return TXN_HEADER.pack(*self)


class CreateTxn(NamedTuple):
    """create/create2 (ephemeral flag), createContainer and createTTL (ttl > 0)."""

    path: str
    data: bytes | None
    acl: list[ACL] | tuple[ACL, ...]
    ephemeral: bool
    parent_cversion: int
    kind: int = OpCode.CREATE  # CREATE, CREATE_CONTAINER or CREATE_TTL
    ttl: int = 0


class DeleteTxn(NamedTuple):
    path: str
    container: bool = False


class SetDataTxn(NamedTuple):
    path: str
    data: bytes | None
    version: int


class SetACLTxn(NamedTuple):
    path: str
    acl: list[ACL] | tuple[ACL, ...]  # a tuple from fixup_acl, a list when decoded
    version: int


class CheckVersionTxn(NamedTuple):
    path: str
    version: int


class CreateSessionTxn(NamedTuple):
    timeout: int


class CloseSessionTxn(NamedTuple):
    paths: list[str]


class ErrorTxn(NamedTuple):
    err: int


class MultiTxn(NamedTuple):
    """Sub-txns with their types; a failed multi holds ErrorTxn entries."""

    txns: list[tuple[int, Txn]]


Txn = (
    CreateTxn | DeleteTxn | SetDataTxn | SetACLTxn | CheckVersionTxn
    | CreateSessionTxn | CloseSessionTxn | ErrorTxn | MultiTxn | None
)


_I = struct.Struct(">i")
_NULL = _I.pack(-1)
_SUB_TXN = struct.Struct(">ii")  # a multi's sub-txn: type, record length
_CREATE_TAIL = struct.Struct(">?i")  # ephemeral, parentCVersion


def _ustr(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return _I.pack(len(b)) + b


_ACL_BYTES: dict[tuple[ACL, ...], bytes] = {}


def _acl_bytes(acl: list[ACL] | tuple[ACL, ...]) -> bytes:
    """The encoded ACL vector; cached for the few ACL tuples nearly every znode shares."""
    if type(acl) is tuple:
        b = _ACL_BYTES.get(acl)
        if b is None:
            w = Writer()
            write_acl_list(w, acl)
            b = w.getvalue()
            if len(_ACL_BYTES) < 1024:
                _ACL_BYTES[acl] = b
        return b
    w = Writer()
    write_acl_list(w, acl)
    return w.getvalue()


_SET_DATA_HEAD = struct.Struct(">qiqqii")  # TxnHeader + the path's length


def encode_entry(client_id: int, cxid: int, zxid: int, time: int, type_: int, txn: Txn) -> bytes:
    """TxnHeader + record, as the txn log and PROPOSAL packets carry them."""
    if type(txn) is SetDataTxn:  # the most common txn: packed in one go
        p = txn.path.encode("utf-8", "surrogatepass")
        d = txn.data
        return (_SET_DATA_HEAD.pack(client_id, cxid, zxid, time, type_, len(p)) + p
                + (_NULL if d is None else _I.pack(len(d)) + d) + _I.pack(txn.version))
    return TXN_HEADER.pack(client_id, cxid, zxid, time, type_) + encode_txn(txn)


def encode_txn(txn: Txn) -> bytes:
    """Serialize the record part of a txn (without the header)."""
    # exact-type tests (no subclasses exist): the hot cases, packed directly
    if type(txn) is SetDataTxn:
        d = txn.data
        return (_ustr(txn.path) + (_NULL if d is None else _I.pack(len(d)) + d)
                + _I.pack(txn.version))
    if type(txn) is CreateTxn and txn.kind == OpCode.CREATE:
        d = txn.data
        return (_ustr(txn.path) + (_NULL if d is None else _I.pack(len(d)) + d)
                + _acl_bytes(txn.acl)
                + _CREATE_TAIL.pack(txn.ephemeral, txn.parent_cversion))
    if type(txn) is DeleteTxn:
        return _ustr(txn.path)
    if type(txn) is MultiTxn:
        parts = [_I.pack(len(txn.txns))]
        for t, sub in txn.txns:
            rec = encode_txn(sub)
            parts.append(_SUB_TXN.pack(t, len(rec)))
            parts.append(rec)
        return b"".join(parts)
    w = Writer()
    _write(w, txn)
    return w.getvalue()


def _write(w: Writer, txn: Txn) -> None:
    if isinstance(txn, CreateTxn):
        w.ustring(txn.path).buffer(txn.data)
        write_acl_list(w, txn.acl)
        if txn.kind == OpCode.CREATE:
            w.bool(txn.ephemeral).int(txn.parent_cversion)
        elif txn.kind == OpCode.CREATE_CONTAINER:
            w.int(txn.parent_cversion)
        else:
            w.int(txn.parent_cversion).long(txn.ttl)
    elif isinstance(txn, DeleteTxn):
        w.ustring(txn.path)
    elif isinstance(txn, SetDataTxn):
        w.ustring(txn.path).buffer(txn.data).int(txn.version)
    elif isinstance(txn, SetACLTxn):
        w.ustring(txn.path)
        write_acl_list(w, txn.acl)
        w.int(txn.version)
    elif isinstance(txn, CheckVersionTxn):
        w.ustring(txn.path).int(txn.version)
    elif isinstance(txn, CreateSessionTxn):
        w.int(txn.timeout)
    elif isinstance(txn, CloseSessionTxn):
        w.string_vector(txn.paths)
    elif isinstance(txn, ErrorTxn):
        w.int(txn.err)
    elif isinstance(txn, MultiTxn):
        w.int(len(txn.txns))
        for t, sub in txn.txns:
            w.int(t).buffer(encode_txn(sub))
    elif txn is not None:
        raise TypeError(f"not a txn: {txn!r}")


def decode_txn(type_: int, buf: bytes | memoryview) -> Txn:
    """Decode a txn record of the given header type."""
    if type_ == OpCode.SET_DATA:  # what a follower logs most
        fast = _fast_set_data(buf)
        if fast is not None:
            return fast
    r = Reader(buf)
    return _read(type_, r)


def _fast_set_data(buf: ReadBuffer) -> SetDataTxn | None:
    """A well-formed SetDataTxn with non-null data, decoded by slicing; None when the
    record is anything else, for the general decoder (which also checks the limits)."""
    end = len(buf)
    if end < 12:
        return None
    n = _I.unpack_from(buf, 0)[0]
    q = 4 + n
    if not 0 <= n <= MAX_FIELD_LEN or q + 8 > end:
        return None
    dn = _I.unpack_from(buf, q)[0]
    e = q + 4 + dn
    if not 0 <= dn <= MAX_FIELD_LEN or e + 4 != end:
        return None
    return SetDataTxn(str(buf[4:q], "utf-8", "replace"), bytes(buf[q + 4 : e]), _I.unpack_from(buf, e)[0])


_ACL_CACHE: dict[bytes, list[ACL]] = {}


def _fast_create(buf: ReadBuffer) -> CreateTxn | None:
    """CreateTxn with a non-null path and data and at most one ACL entry, decoded with
    slicing and a cache of ACL encodings (almost every txn replayed at recovery); None
    when the record is anything else, for the general decoder."""
    end = len(buf)
    if end < 17:
        return None
    n = _I.unpack_from(buf, 0)[0]
    q = 4 + n
    if n < 0 or q + 8 > end:
        return None
    dn = _I.unpack_from(buf, q)[0]
    a = q + 4 + dn
    if dn < 0 or a + 4 > end:
        return None
    count = _I.unpack_from(buf, a)[0]
    if count != 1 or a + 16 > end:
        return None
    sl = _I.unpack_from(buf, a + 8)[0]
    if sl < 0 or a + 16 + sl > end:
        return None
    il = _I.unpack_from(buf, a + 12 + sl)[0]
    e = a + 16 + sl + il
    if il < 0 or e + 5 != end:
        return None
    key = bytes(buf[a:e])
    acl = _ACL_CACHE.get(key)
    if acl is None:
        acl = read_acl_list(Reader(key)) or []
        if len(_ACL_CACHE) < 1024:
            _ACL_CACHE[key] = acl
    eph, pcv = _CREATE_TAIL.unpack_from(buf, e)
    return CreateTxn(bytes(buf[4:q]).decode("utf-8", "replace"), bytes(buf[q + 4 : a]), list(acl), eph, pcv)


def _read(t: int, r: Reader) -> Txn:
    if t in (OpCode.CREATE, OpCode.CREATE2):
        if r.pos == 0:
            fast = _fast_create(r.buf)
            if fast is not None:
                return fast
        path, data, acl = r.ustring() or "", r.buffer(), read_acl_list(r) or []
        eph = r.bool()
        pcv = r.int() if r.remaining() >= 4 else -1
        return CreateTxn(path, data, acl, eph, pcv)
    if t == OpCode.CREATE_CONTAINER:
        path, data, acl = r.ustring() or "", r.buffer(), read_acl_list(r) or []
        return CreateTxn(path, data, acl, False, r.int(), OpCode.CREATE_CONTAINER)
    if t == OpCode.CREATE_TTL:
        path, data, acl = r.ustring() or "", r.buffer(), read_acl_list(r) or []
        pcv = r.int()
        return CreateTxn(path, data, acl, False, pcv, OpCode.CREATE_TTL, r.long())
    if t in (OpCode.DELETE, OpCode.DELETE_CONTAINER):
        return DeleteTxn(r.ustring() or "", t == OpCode.DELETE_CONTAINER)
    if t in (OpCode.SET_DATA, OpCode.RECONFIG):
        return SetDataTxn(r.ustring() or "", r.buffer(), r.int())
    if t == OpCode.SET_ACL:
        return SetACLTxn(r.ustring() or "", read_acl_list(r) or [], r.int())
    if t == OpCode.CHECK:
        return CheckVersionTxn(r.ustring() or "", r.int())
    if t == OpCode.CREATE_SESSION:
        return CreateSessionTxn(r.int())
    if t == OpCode.CLOSE_SESSION:
        return CloseSessionTxn(r.string_vector() or [] if r.remaining() >= 4 else [])
    if t == OpCode.ERROR:
        return ErrorTxn(r.int())
    if t == OpCode.MULTI:
        n = r.int()
        subs: list[tuple[int, Txn]] = []
        for _ in range(max(n, 0)):
            st = r.int()
            sb = r.buffer() or b""
            subs.append((st, decode_txn(st, sb)))
        return MultiTxn(subs)
    return None
