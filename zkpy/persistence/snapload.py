"""Loading snapshots (see :mod:`zkpy.persistence.snapshot` for the layout).

Verifies every seal; accepts Java 3.5-3.9 trailers (none, ZxidDigest, lastProcessedZxid)
and gzip-compressed ``snapshot.<zxid>.gz`` files.  A million znodes load in about a
second: the file is memory-mapped, its checksum is computed in a thread meanwhile, runs
of same-sized records are unpacked by one struct each, and child sets are built after
all nodes are read.
"""

from __future__ import annotations

import gc
import gzip
import mmap
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from itertools import groupby
from operator import itemgetter, methodcaller
from pathlib import Path
from typing import Any

from zkpy.datatree.tree import NO_CHILDREN, DataTree, Znode, intern_acl
from zkpy.jute.codec import JuteError, Reader
from zkpy.jute.records import ACL, OPEN_ACL_UNSAFE, read_acl_list
from zkpy.persistence.files import SNAP_PREFIX, SNAP_TAIL, zxid_from_name

SNAP_MAGIC = 0x5A4B534E
SNAP_VERSION = 2
SNAP_DBID = -1
DIGEST_VERSION = 2

FILE_HEADER = struct.Struct(">iiq")
_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_SESSION = struct.Struct(">qi")
NODE_TAIL = struct.Struct(">qqqqqiiiqq")  # aclRef + StatPersisted (czxid .. pzxid)
_ZXID_DIGEST = struct.Struct(">qiq")
_NULL = _INT.pack(-1)
MAX_TRAILER = 13 + 33 + 21  # after the nodes: seal, ZxidDigest + seal, lastProcessedZxid + seal
BACKGROUND_CRC_SIZE = 8 << 20  # checksum smaller snapshots inline

# progress(offset, file size, znodes read so far), called about every tenth of the file
Progress = Callable[[int, int, int], None]

NODE_FIELDS = ("data", "acl", "czxid", "mzxid", "ctime", "mtime", "version",
               "cversion", "aversion", "owner", "pzxid")


class SnapshotError(ValueError):
    """A snapshot file is truncated, corrupt, or not a snapshot."""


# ---- writing ---------------------------------------------------------------------------
@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic GC: bulk allocation of a million objects otherwise triggers
    repeated full collections that cost more than the work itself."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def read_snapshot_bytes(path: Path) -> bytes:
    """The decompressed bytes of a snapshot file."""
    path = Path(path)
    if path.name.endswith(".snappy"):
        raise SnapshotError(f"{path}: snappy-compressed snapshots are not supported")
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise SnapshotError(f"{path}: bad gzip stream: {e}") from e
    return raw


def read_head(raw: bytes | mmap.mmap) -> tuple[dict[int, int], dict[int, tuple[ACL, ...]], int]:
    """Check the file header; return (sessions, ACL map incl. -1, offset of the first node)."""
    if len(raw) < FILE_HEADER.size:
        raise SnapshotError(f"file of {len(raw)} bytes is too short for a snapshot")
    magic = FILE_HEADER.unpack_from(raw, 0)[0]
    if magic != SNAP_MAGIC:
        raise SnapshotError(f"bad magic 0x{magic & 0xFFFFFFFF:08x} (not a snapshot)")
    r = Reader(raw, FILE_HEADER.size)
    try:
        n = r.int()
        if n < 0 or n * 12 > r.remaining():
            raise SnapshotError(f"impossible session count {n}")
        sessions: dict[int, int] = {}
        unpack = _SESSION.unpack_from
        for _ in range(n):
            sid, timeout = unpack(raw, r.pos)
            r.pos += 12
            sessions[sid] = timeout
        acls: dict[int, tuple[ACL, ...]] = {-1: OPEN_ACL_UNSAFE}
        n = r.int()
        if n < 0 or n * 12 > r.remaining():
            raise SnapshotError(f"impossible ACL cache size {n}")
        for _ in range(n):
            ref = r.long()
            lst = read_acl_list(r)
            if lst is None:
                raise SnapshotError(f"ACL cache entry {ref} has a null ACL vector")
            acls[ref] = intern_acl(lst)
    except (JuteError, struct.error, UnicodeDecodeError) as e:
        raise SnapshotError(f"truncated or corrupt snapshot header: {e}") from e
    return sessions, acls, r.pos


def check_seals(raw: bytes | mmap.mmap, pos: int, crc: int | None = None) -> dict[str, int]:
    """Verify the seal(s) after the end-of-nodes marker ending at pos; return trailer values.

    crc, if known, is the adler32 of the bytes before pos.
    """
    mv = memoryview(raw)
    size = len(raw)

    def sealed(at: int, crc: int) -> bool:
        if at + 13 > size or raw[at + 8 : at + 13] != SNAP_TAIL:
            return False
        sealed_crc: int = _LONG.unpack_from(raw, at)[0]
        return sealed_crc == crc

    if crc is None:
        crc = zlib.adler32(mv[:pos])
    if not sealed(pos, crc):
        raise SnapshotError(f"checksum (seal) mismatch or missing seal at offset {pos}")
    out: dict[str, int] = {"seal_offset": pos}
    pos += 13
    crc = zlib.adler32(mv[out["seal_offset"] : pos], crc)
    if size - pos >= 33:  # ZxidDigest + seal
        c2 = zlib.adler32(mv[pos : pos + 20], crc)
        if sealed(pos + 20, c2):
            out["digest_zxid"], out["digest_version"], out["digest"] = _ZXID_DIGEST.unpack_from(raw, pos)
            crc = zlib.adler32(mv[pos + 20 : pos + 33], c2)
            pos += 33
    if size - pos >= 21:  # 3.9 lastProcessedZxid + seal
        c2 = zlib.adler32(mv[pos : pos + 8], crc)
        if sealed(pos + 8, c2):
            out["last_processed_zxid"] = _LONG.unpack_from(raw, pos)[0]
            pos += 21
    if pos != size:
        raise SnapshotError(f"{size - pos} unexpected bytes (or a bad seal) at offset {pos}")
    return out


def load_snapshot(path: Path, zxid: int | None = None, progress: Progress | None = None) -> DataTree:
    """Load a snapshot file into a new DataTree (CRC verified).

    The tree's last_processed_zxid is the zxid in the file name (as in Java), or
    ``zxid`` if given.  progress, if given, is told how far the node records are read
    about every tenth of the file.
    """
    path = Path(path)
    if zxid is None:
        zxid = zxid_from_name(path.name, SNAP_PREFIX) or 0
    try:
        return parse_snapshot(map_snapshot(path), zxid, progress)
    except SnapshotError as e:
        raise SnapshotError(f"{path}: {e}") from None


def map_snapshot(path: Path) -> bytes | mmap.mmap:
    """The bytes of a snapshot file: memory-mapped (no copy) unless compressed or empty."""
    if path.name.endswith((".gz", ".snappy")):
        return read_snapshot_bytes(path)
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def parse_snapshot(raw: bytes | mmap.mmap, zxid: int = 0, progress: Progress | None = None) -> DataTree:
    with no_gc():
        return _parse(raw, zxid, progress)


@lru_cache(maxsize=1024)
def _node_record(path_len: int, data_len: int) -> struct.Struct:
    """A whole node record: path, data (none if null), aclRef and StatPersisted."""
    return struct.Struct(f">i{path_len}si{max(data_len, 0)}s{NODE_TAIL.format[1:]}")


class _PrefixChecksum:
    """adler32 of a big buffer's head, computed in a thread (zlib releases the GIL) while
    the main thread parses the nodes; :meth:`upto` completes it to any end offset."""

    def __init__(self, buf: bytes | mmap.mmap, head: int) -> None:
        self.buf = buf
        self.head = head
        self.value = 1
        self.thread = threading.Thread(target=self._run, name="zkpy-snapshot-crc", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with memoryview(self.buf) as mv:
            self.value = zlib.adler32(mv[: self.head])

    def upto(self, end: int) -> int:
        self.thread.join()
        with memoryview(self.buf) as mv:
            if end < self.head:
                return zlib.adler32(mv[:end])
            return zlib.adler32(mv[self.head : end], self.value)


def _parse(raw: bytes | mmap.mmap, zxid: int, progress: Progress | None = None) -> DataTree:
    size = len(raw)
    checksum = _PrefixChecksum(raw, size - MAX_TRAILER) if size >= BACKGROUND_CRC_SIZE else None
    sessions, acls, pos = read_head(raw)
    nodes, owners, pos = _read_nodes(raw, pos, acls, progress)
    _link_children(nodes)
    check_seals(raw, pos, checksum.upto(pos) if checksum else None)
    tree = DataTree()
    tree.nodes = nodes
    tree.ephemerals.clear()
    tree.containers.clear()
    tree.ttls.clear()
    for p, owner in owners:
        tree._index_owner(p, owner)
    tree.sessions = sessions
    tree.last_processed_zxid = zxid
    tree.quotas.rebuild()
    return tree


def _read_nodes(raw: bytes | mmap.mmap, pos: int, acls: dict[int, tuple[ACL, ...]],
                progress: Progress | None = None,
                ) -> tuple[dict[str, Znode], list[tuple[str, int]], int]:
    """The node records up to the "/" marker: (nodes by path, ephemeral/container/TTL
    owners, offset after the marker).  Children are not linked yet.

    Every record is unpacked by one struct of its path and data lengths.  When a record
    has the same lengths as the one before (sibling names of one length and data of one
    size are common), the records that follow are unpacked lazily with ``iter_unpack``
    until one differs: per node, only the Znode is built in Python.  With progress, a run
    of records is cut at every tenth of the file to report there: no cost per node.
    """
    nodes: dict[str, Znode] = {}
    owners: list[tuple[str, int]] = []
    size = len(raw)
    view = memoryview(raw)
    unpack_int = _INT.unpack_from
    last_shape = (-1, -1)
    path = ""
    tenth = max(size // 10, 1)
    report_at = pos + tenth if progress is not None else size + 1  # never, without progress
    try:
        while True:
            if pos >= report_at:
                assert progress is not None
                progress(pos, size, len(nodes))
                report_at = pos + tenth
            n = unpack_int(raw, pos)[0]
            if n == 1 and raw[pos + 4 : pos + 5] == b"/":
                return nodes, owners, pos + 5
            if n < 0:
                raise SnapshotError(f"null path at offset {pos}")
            dn = unpack_int(raw, pos + 4 + n)[0]
            record = _node_record(n, dn)
            step = record.size
            if (n, dn) == last_shape and size - pos >= 2 * step:
                end = min(size, max(report_at, pos + 2 * step))
                records: Iterable[tuple[Any, ...]] = record.iter_unpack(
                    view[pos : pos + (end - pos) // step * step])
            else:
                records = (record.unpack_from(raw, pos),)
                last_shape = (n, dn)
            null = dn < 0
            for (pn, pb, pdn, data, ref, czxid, mzxid, ctime, mtime, version, cversion, aversion,
                 owner, pzxid) in records:
                if pn != n or pdn != dn:
                    break
                path = pb.decode("utf-8", "surrogatepass")
                # the constructor sets the stat as a create does; only what differs is set
                # after it (equal values then share one int object, as in a live tree)
                node = Znode(None if null else data, acls[ref], czxid, ctime, owner)
                if mzxid != czxid:
                    node.mzxid = mzxid
                if pzxid != czxid:
                    node.pzxid = pzxid
                if mtime != ctime:
                    node.mtime = mtime
                if version:
                    node.version = version
                if cversion:
                    node.cversion = cversion
                if aversion:
                    node.aversion = aversion
                nodes[path or "/"] = node
                if owner:
                    owners.append((path, owner))
                pos += step
    except KeyError as e:
        raise SnapshotError(f"unknown ACL reference {e.args[0]!r} for node {path!r} (offset {pos})",
                            ) from None
    except (struct.error, UnicodeDecodeError) as e:
        raise SnapshotError(f"truncated or corrupt node list at offset {pos}: {e}") from None


def _link_children(nodes: dict[str, Znode]) -> None:
    """Fill every node's child names, one set per run of siblings (C-level grouping).

    Unlike Java, a child listed before its parent is accepted; a missing parent is not.
    """
    if "/" not in nodes:
        raise SnapshotError("snapshot has no root node")
    paths = list(nodes)
    paths.remove("/")
    split = map(methodcaller("rpartition", "/"), paths)
    for parent_path, siblings in groupby(split, itemgetter(0)):
        names = set(map(itemgetter(2), siblings))
        parent = nodes.get(parent_path or "/")
        if parent is None:
            raise SnapshotError(f"unknown parent {parent_path or '/'!r} of {min(names)!r}")
        if parent.children is NO_CHILDREN:
            parent.children = names
        else:
            parent.children |= names
