"""Loading snapshots (see :mod:`zkpy.persistence.snapshot` for the layout).

Verifies every seal; accepts Java 3.5-3.9 trailers (none, ZxidDigest, lastProcessedZxid)
and gzip-compressed ``snapshot.<zxid>.gz`` files.
"""

from __future__ import annotations

import gc
import gzip
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def read_head(raw: bytes) -> tuple[dict[int, int], dict[int, tuple[ACL, ...]], int]:
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


def check_seals(raw: bytes, pos: int) -> dict[str, int]:
    """Verify the seal(s) after the end-of-nodes marker ending at pos; return trailer values."""
    mv = memoryview(raw)
    size = len(raw)

    def sealed(at: int, crc: int) -> bool:
        if at + 13 > size or raw[at + 8 : at + 13] != SNAP_TAIL:
            return False
        return _LONG.unpack_from(raw, at)[0] == crc

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


def load_snapshot(path: Path, zxid: int | None = None) -> DataTree:
    """Load a snapshot file into a new DataTree (CRC verified).

    The tree's last_processed_zxid is the zxid in the file name (as in Java), or
    ``zxid`` if given.
    """
    path = Path(path)
    if zxid is None:
        zxid = zxid_from_name(path.name, SNAP_PREFIX) or 0
    try:
        raw = read_snapshot_bytes(path)
        return parse_snapshot(raw, zxid)
    except SnapshotError as e:
        raise SnapshotError(f"{path}: {e}") from None


def parse_snapshot(raw: bytes, zxid: int = 0) -> DataTree:
    with no_gc():
        return _parse(raw, zxid)


def _parse(raw: bytes, zxid: int) -> DataTree:
    sessions, acls, pos = read_head(raw)
    nodes: dict[str, Znode] = {}
    owners: list[tuple[str, int]] = []
    unpack_int = _INT.unpack_from
    unpack_tail = NODE_TAIL.unpack_from
    tail_size = NODE_TAIL.size
    new = Znode.__new__
    path = ""
    try:
        while True:
            n = unpack_int(raw, pos)[0]
            pos += 4
            if n < 0:
                raise SnapshotError(f"null path at offset {pos - 4}")
            path = raw[pos : pos + n].decode("utf-8", "surrogatepass")
            pos += n
            if path == "/":
                break
            dn = unpack_int(raw, pos)[0]
            pos += 4
            if dn < 0:
                data = None
            else:
                data = raw[pos : pos + dn]
                pos += dn
            (ref, czxid, mzxid, ctime, mtime, version, cversion, aversion, owner,
             pzxid) = unpack_tail(raw, pos)
            pos += tail_size
            node = new(Znode)
            node.data = data
            node.acl = acls[ref]
            node.czxid = czxid
            node.mzxid = mzxid
            node.ctime = ctime
            node.mtime = mtime
            node.version = version
            node.cversion = cversion
            node.aversion = aversion
            node.owner = owner
            node.pzxid = pzxid
            node.children = NO_CHILDREN
            if path:
                i = path.rfind("/")
                parent = nodes[path[:i] or "/"]
                if parent.children is NO_CHILDREN:  # Znode.add_child, inlined for a million calls
                    parent.children = {path[i + 1 :]}
                else:
                    parent.children.add(path[i + 1 :])  # type: ignore[union-attr]
                nodes[path] = node
            else:
                nodes["/"] = node
            if owner:
                owners.append((path, owner))
    except KeyError as e:
        what = "ACL reference" if isinstance(e.args[0], int) else "parent of"
        raise SnapshotError(f"unknown {what} {e.args[0]!r} for node {path!r} (offset {pos})") from None
    except (struct.error, UnicodeDecodeError) as e:
        raise SnapshotError(f"truncated or corrupt node list at offset {pos}: {e}") from None
    if "/" not in nodes:
        raise SnapshotError("snapshot has no root node")
    check_seals(raw, pos)
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
