"""Client-side encoding of requests and decoding of replies (the other half of records.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from zkpy.jute.codec import Reader, Writer
from zkpy.jute.constants import OpCode
from zkpy.jute.records import ACL, OPEN_ACL_UNSAFE, STAT, read_acl_list, write_acl_list


class Stat(NamedTuple):
    czxid: int
    mzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeralOwner: int
    dataLength: int
    numChildren: int
    pzxid: int


def read_stat(r: Reader) -> Stat:
    p = r._need(STAT.size)
    return Stat(*STAT.unpack_from(r.buf, p))


def create(path: str, data: bytes | None, acl: Sequence[ACL] = OPEN_ACL_UNSAFE, flags: int = 0,
           ttl: int | None = None, container: bool = False, with_stat: bool = True) -> tuple[int, bytes]:
    w = Writer().ustring(path).buffer(data)
    write_acl_list(w, list(acl))
    w.int(flags)
    if ttl is not None:
        w.long(ttl)
        return OpCode.CREATE_TTL, w.getvalue()
    if container:
        return OpCode.CREATE_CONTAINER, w.getvalue()
    return (OpCode.CREATE2 if with_stat else OpCode.CREATE), w.getvalue()


def path_watch(op: int, path: str, watch: bool) -> tuple[int, bytes]:
    return op, Writer().ustring(path).bool(watch).getvalue()


def path_version(op: int, path: str, version: int) -> tuple[int, bytes]:
    return op, Writer().ustring(path).int(version).getvalue()


def path_only(op: int, path: str) -> tuple[int, bytes]:
    return op, Writer().ustring(path).getvalue()


def path_int(op: int, path: str, value: int) -> tuple[int, bytes]:
    return op, Writer().ustring(path).int(value).getvalue()


def set_data(path: str, data: bytes | None, version: int = -1) -> tuple[int, bytes]:
    return OpCode.SET_DATA, Writer().ustring(path).buffer(data).int(version).getvalue()


def set_acl(path: str, acl: Sequence[ACL], version: int = -1) -> tuple[int, bytes]:
    w = Writer().ustring(path)
    write_acl_list(w, list(acl))
    return OpCode.SET_ACL, w.int(version).getvalue()


def auth(scheme: str, credential: bytes) -> tuple[int, bytes]:
    return OpCode.AUTH, Writer().int(0).ustring(scheme).buffer(credential).getvalue()


def multi(ops: Sequence[tuple[int, bytes]], read: bool = False) -> tuple[int, bytes]:
    w = Writer()
    for op, body in ops:
        w.int(op).bool(False).int(-1).raw(body)
    w.int(-1).bool(True).int(-1)
    return (OpCode.MULTI_READ if read else OpCode.MULTI), w.getvalue()


def set_watches(rel_zxid: int, data: list[str], exist: list[str], child: list[str],
                persistent: list[str], recursive: list[str]) -> tuple[int, bytes]:
    w = Writer().long(rel_zxid).string_vector(data).string_vector(exist).string_vector(child)
    if persistent or recursive:
        w.string_vector(persistent).string_vector(recursive)
        return OpCode.SET_WATCHES2, w.getvalue()
    return OpCode.SET_WATCHES, w.getvalue()


class MultiResult(NamedTuple):
    op: int
    err: int
    path: str | None = None
    stat: Stat | None = None
    data: bytes | None = None
    children: list[str] | None = None


def read_multi(r: Reader) -> list[MultiResult]:
    out: list[MultiResult] = []
    while True:
        op, done, err = r.int(), r.bool(), r.int()
        if done:
            return out
        if op == OpCode.ERROR:
            out.append(MultiResult(op, r.int()))
        elif op == OpCode.CREATE:
            out.append(MultiResult(op, 0, path=r.ustring()))
        elif op == OpCode.CREATE2:
            out.append(MultiResult(op, 0, path=r.ustring(), stat=read_stat(r)))
        elif op == OpCode.SET_DATA:
            out.append(MultiResult(op, 0, stat=read_stat(r)))
        elif op == OpCode.GET_DATA:
            d = r.buffer()
            out.append(MultiResult(op, 0, data=d, stat=read_stat(r)))
        elif op == OpCode.GET_CHILDREN:
            out.append(MultiResult(op, 0, children=r.string_vector()))
        else:
            out.append(MultiResult(op, err))


def read_acls(r: Reader) -> tuple[list[ACL], Stat]:
    acl = read_acl_list(r) or []
    return acl, read_stat(r)
