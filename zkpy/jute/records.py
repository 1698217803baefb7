"""Records of the client protocol: Stat, ACL, handshake, headers and request bodies.

Requests are decoded into small named tuples; replies are encoded straight into bytes
by the functions at the bottom.  Field orders follow zookeeper.jute.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple

from zkpy.jute.codec import MAX_FIELD_LEN, JuteError, Reader, Writer
from zkpy.jute.constants import OpCode

STAT = struct.Struct(">qqqqiiiqiiq")  # 68 bytes
REPLY_HEADER = struct.Struct(">iqi")  # xid, zxid, err
REQUEST_HEADER = struct.Struct(">ii")  # xid, type
# NamedTuple constructors run Python code; on the hot paths build the tuple directly
_tuple = tuple.__new__


class ACL(NamedTuple):
    perms: int
    scheme: str
    id: str


OPEN_ACL_UNSAFE: tuple[ACL, ...] = (ACL(31, "world", "anyone"),)
READ_ACL_UNSAFE: tuple[ACL, ...] = (ACL(1, "world", "anyone"),)


def read_acl_list(r: Reader) -> list[ACL] | None:
    n = r.int()
    if n == -1:
        return None
    if n < 0 or n > 1 << 20:
        raise JuteError(f"ACL vector length {n} out of range")
    out = []
    for _ in range(n):
        perms = r.int()
        # null scheme/id stay None: fixup_acl answers them the way Java does
        scheme = r.ustring()
        ident = r.ustring()
        out.append(_tuple(ACL, (perms, scheme, ident)))  # no type check: None until fixup_acl
    return out


def write_acl_list(w: Writer, acls: list[ACL] | tuple[ACL, ...] | None) -> None:
    if acls is None:
        w.int(-1)
        return
    w.int(len(acls))
    for a in acls:
        w.int(a.perms).ustring(a.scheme).ustring(a.id)


class ConnectRequest(NamedTuple):
    protocol_version: int
    last_zxid_seen: int
    timeout: int
    session_id: int
    passwd: bytes
    read_only: bool | None  # None: old client that did not send the byte

    @classmethod
    def decode(cls, buf: bytes | memoryview) -> ConnectRequest:
        r = Reader(buf)
        pv = r.int()
        zxid = r.long()
        to = r.int()
        sid = r.long()
        pw = r.buffer() or b""
        ro = r.bool() if r.remaining() >= 1 else None
        return cls(pv, zxid, to, sid, pw, ro)


def encode_connect_response(timeout: int, session_id: int, passwd: bytes, read_only: bool | None) -> bytes:
    w = Writer().int(0).int(timeout).long(session_id).buffer(passwd)
    if read_only is not None:
        w.bool(read_only)
    return w.getvalue()


# ---- request bodies -------------------------------------------------------------------


class CreateRequest(NamedTuple):
    path: str
    data: bytes | None
    acl: Sequence[ACL] | None
    flags: int
    ttl: int = -1


class PathVersion(NamedTuple):
    """DeleteRequest and CheckVersionRequest."""

    path: str
    version: int


class PathWatch(NamedTuple):
    """ExistsRequest, GetDataRequest, GetChildrenRequest, GetChildren2Request."""

    path: str
    watch: bool


class SetDataRequest(NamedTuple):
    path: str
    data: bytes | None
    version: int


class SetACLRequest(NamedTuple):
    path: str
    acl: list[ACL] | None
    version: int


class PathOnly(NamedTuple):
    """GetACL, Sync, GetAllChildrenNumber, GetEphemerals, DeleteContainer."""

    path: str


class PathType(NamedTuple):
    """CheckWatches / RemoveWatches (type) and AddWatch (mode)."""

    path: str
    type: int


class SetWatches(NamedTuple):
    relative_zxid: int
    data: list[str]
    exist: list[str]
    child: list[str]
    persistent: list[str]
    persistent_recursive: list[str]


class AuthPacket(NamedTuple):
    type: int
    scheme: str
    auth: bytes


class ReconfigRequest(NamedTuple):
    joining: str | None
    leaving: str | None
    new_members: str | None
    cur_config_id: int


# what _MULTI_OPS decodes: create (all four kinds), delete/check, setData, getData/getChildren
MultiSubRequest = CreateRequest | PathVersion | SetDataRequest | PathWatch


class MultiOp(NamedTuple):
    op: int
    req: MultiSubRequest


class MultiRequest(NamedTuple):
    ops: list[MultiOp]


def _path(r: Reader) -> str:
    p = r.ustring()
    return "" if p is None else p


def _create_ttl(r: Reader) -> CreateRequest:
    return CreateRequest(_path(r), r.buffer(), read_acl_list(r), r.int(), r.long())


# The four decoders below serve almost all traffic: each has an inline fast path for
# well-formed input and falls back to the Reader methods (which raise JuteError) otherwise.
_II = struct.Struct(">i")
_OPEN_ACL_BYTES = (_II.pack(1) + _II.pack(31) + _II.pack(5) + b"world" + _II.pack(6) + b"anyone")
_OPEN_ACL_LEN = len(_OPEN_ACL_BYTES)


def _create(r: Reader) -> CreateRequest:
    # fast path: a well-formed create carrying the usual world:anyone ACL
    buf, p, end = r.buf, r.pos, r.end
    if end - p >= 12:
        n = _II.unpack_from(buf, p)[0]
        q = p + 4 + n
        if n >= 0 and q + 4 <= end:
            dn = _II.unpack_from(buf, q)[0]
            e = q + 4 + max(dn, 0)
            a = e + _OPEN_ACL_LEN
            if -1 <= dn <= MAX_FIELD_LEN and a + 4 <= end and buf[e:a] == _OPEN_ACL_BYTES:
                r.pos = a + 4
                return _tuple(CreateRequest, (str(buf[p + 4 : q], "utf-8", "replace"),
                                              None if dn < 0 else bytes(buf[q + 4 : e]),
                                              OPEN_ACL_UNSAFE, _II.unpack_from(buf, a)[0], -1))
    return CreateRequest(_path(r), r.buffer(), read_acl_list(r), r.int())


def _path_version(r: Reader) -> PathVersion:
    buf, p, end = r.buf, r.pos, r.end
    if end - p >= 8:
        n = _II.unpack_from(buf, p)[0]
        q = p + 4 + n
        if n >= 0 and q + 4 <= end:
            r.pos = q + 4
            return _tuple(PathVersion, (str(buf[p + 4 : q], "utf-8", "replace"),
                                        _II.unpack_from(buf, q)[0]))
    return PathVersion(_path(r), r.int())


def _path_watch(r: Reader) -> PathWatch:
    buf, p, end = r.buf, r.pos, r.end
    if end - p >= 5:
        n = _II.unpack_from(buf, p)[0]
        q = p + 4 + n
        if n >= 0 and q < end:
            r.pos = q + 1
            return _tuple(PathWatch, (str(buf[p + 4 : q], "utf-8", "replace"), buf[q] != 0))
    return PathWatch(_path(r), r.bool())


def _set_data(r: Reader) -> SetDataRequest:
    buf, p, end = r.buf, r.pos, r.end
    if end - p >= 12:
        n = _II.unpack_from(buf, p)[0]
        q = p + 4 + n
        if n >= 0 and q + 8 <= end:
            dn = _II.unpack_from(buf, q)[0]
            e = q + 4 + dn
            if 0 <= dn <= MAX_FIELD_LEN and e + 4 <= end:
                r.pos = e + 4
                return _tuple(SetDataRequest, (str(buf[p + 4 : q], "utf-8", "replace"),
                                               bytes(buf[q + 4 : e]), _II.unpack_from(buf, e)[0]))
    return SetDataRequest(_path(r), r.buffer(), r.int())


def _set_acl(r: Reader) -> SetACLRequest:
    return SetACLRequest(_path(r), read_acl_list(r), r.int())


def _path_only(r: Reader) -> PathOnly:
    return PathOnly(_path(r))


def _path_type(r: Reader) -> PathType:
    return PathType(_path(r), r.int())


def _set_watches(r: Reader, v2: bool) -> SetWatches:
    rel = r.long()
    lists = [r.string_vector() or [] for _ in range(5 if v2 else 3)]
    if not v2:
        lists += [[], []]
    return SetWatches(rel, *lists)


def _auth(r: Reader) -> AuthPacket:
    return AuthPacket(r.int(), r.ustring() or "", r.buffer() or b"")


def _reconfig(r: Reader) -> ReconfigRequest:
    return ReconfigRequest(r.ustring(), r.ustring(), r.ustring(), r.long())


_MULTI_OPS: dict[int, Callable[[Reader], MultiSubRequest]] = {
    OpCode.CREATE: _create,
    OpCode.CREATE2: _create,
    OpCode.CREATE_CONTAINER: _create,
    OpCode.CREATE_TTL: _create_ttl,
    OpCode.DELETE: _path_version,
    OpCode.SET_DATA: _set_data,
    OpCode.CHECK: _path_version,
    OpCode.GET_CHILDREN: _path_watch,
    OpCode.GET_DATA: _path_watch,
}


class UnknownMultiOp(JuteError):
    """A multi carried an op type that is not allowed in a multi."""


MULTI_HEADER = struct.Struct(">i?i")  # type, done, err


def _multi(r: Reader) -> MultiRequest:
    ops: list[MultiOp] = []
    size = MULTI_HEADER.size
    unpack = MULTI_HEADER.unpack_from
    buf = r.buf
    while True:
        if r.end - r.pos < size:
            raise JuteError("multi request truncated")
        op, done, _err = unpack(buf, r.pos)
        r.pos += size
        if done:
            break
        dec = _MULTI_OPS.get(op)
        if dec is None:
            raise UnknownMultiOp(f"op type {op} not allowed in multi")
        ops.append(_tuple(MultiOp, (op, dec(r))))
        if len(ops) > 1 << 20:
            raise JuteError("too many ops in multi")
    return _tuple(MultiRequest, (ops,))


def _empty(r: Reader) -> None:
    return None


# What a request decodes to depends on its op (CreateRequest for CREATE, ...), which the
# callers dispatch on; the table itself can only promise an object.
REQUEST_DECODERS: dict[int, Callable[[Reader], object]] = {
    OpCode.CREATE: _create,
    OpCode.CREATE2: _create,
    OpCode.CREATE_CONTAINER: _create,
    OpCode.CREATE_TTL: _create_ttl,
    OpCode.DELETE: _path_version,
    OpCode.EXISTS: _path_watch,
    OpCode.GET_DATA: _path_watch,
    OpCode.SET_DATA: _set_data,
    OpCode.GET_ACL: _path_only,
    OpCode.SET_ACL: _set_acl,
    OpCode.GET_CHILDREN: _path_watch,
    OpCode.GET_CHILDREN2: _path_watch,
    OpCode.SYNC: _path_only,
    OpCode.PING: _empty,
    OpCode.CHECK: _path_version,
    OpCode.MULTI: _multi,
    OpCode.MULTI_READ: _multi,
    OpCode.RECONFIG: _reconfig,
    OpCode.CHECK_WATCHES: _path_type,
    OpCode.REMOVE_WATCHES: _path_type,
    OpCode.DELETE_CONTAINER: _path_only,
    OpCode.AUTH: _auth,
    OpCode.SASL: lambda r: r.buffer() or b"",  # GetSASLRequest{buffer token}
    OpCode.SET_WATCHES: lambda r: _set_watches(r, False),
    OpCode.SET_WATCHES2: lambda r: _set_watches(r, True),
    OpCode.GET_EPHEMERALS: _path_only,
    OpCode.GET_ALL_CHILDREN_NUMBER: _path_only,
    OpCode.ADD_WATCH: _path_type,
    OpCode.WHO_AM_I: _empty,
    OpCode.CLOSE_SESSION: _empty,
}


# ---- reply bodies ---------------------------------------------------------------------
