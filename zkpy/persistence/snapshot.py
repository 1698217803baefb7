"""Snapshots in Apache ZooKeeper's format (FileSnap, version 2), written and loaded fast.

Layout::

    FileHeader { int magic = 0x5A4B534E, int version = 2, long dbid = -1 }
    int sessionCount, { long sessionId, int timeoutMs } * sessionCount
    int aclCount, { long aclRef, vector<ACL> } * aclCount
    { ustring path, buffer data, long aclRef, StatPersisted } ...   parents first, root as ""
    ustring "/"                                                     end of nodes
    SEAL = long adler32(every byte so far), ustring "/"
    ZxidDigest { long zxid = 0 ("no digest"), int version = 2, long digest = 0 }, SEAL

This is exactly what Java 3.8.0 writes for a tree without a digest; 3.8 and 3.9 load it.
The loader also accepts snapshots without the digest and 3.9's extra lastProcessedZxid
section, and gzip-compressed ``snapshot.<zxid>.gz`` files.

Exact snapshots (:func:`write_snapshot`, from a forked child or at shutdown) and the
leader's SNAP stream (:func:`serialize_tree_body`) are serialised straight from a tree
that does not change meanwhile.  Fuzzy snapshots:
:func:`snapshot_items` copies the node fields on the event loop (one C-level pass,
~0.4 s per million znodes) or :func:`iter_snapshot_items` does it in chunks between
txns; :func:`write_snapshot_items` serialises the copy in a worker thread while the
tree keeps changing.  Reading lives in :mod:`.snapload`.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

from zkpy.datatree.tree import NO_CHILDREN, DataTree
from zkpy.jute.records import OPEN_ACL_UNSAFE
from zkpy.persistence.files import SNAP_TAIL, fsync_dir
from zkpy.persistence.snapload import (
    _INT,
    _LONG,
    _NULL,
    _SESSION,
    _ZXID_DIGEST,
    DIGEST_VERSION,
    FILE_HEADER,
    NODE_FIELDS,
    NODE_TAIL,
    SNAP_DBID,
    SNAP_MAGIC,
    SNAP_VERSION,
    SnapshotError,
    _node_record,
    check_seals,
    load_snapshot,
    no_gc,
    parse_snapshot,
    read_head,
    read_snapshot_bytes,
)

__all__ = [  # writing here; reading re-exported from snapload
    "Item", "NODE_FIELDS", "NODE_TAIL", "FILE_HEADER", "SNAP_MAGIC", "SNAP_VERSION", "SNAP_DBID",
    "DIGEST_VERSION", "SnapshotError", "check_seals", "iter_snapshot_items", "load_snapshot", "no_gc",
    "parse_snapshot", "read_head", "read_snapshot_bytes", "serialize_snapshot", "serialize_tree",
    "serialize_tree_body", "snapshot_items", "write_snapshot", "write_snapshot_items",
]

_node_fields = attrgetter(*NODE_FIELDS)
Item = tuple[str, tuple[Any, ...]]


def snapshot_items(tree: DataTree) -> list[Item]:
    """(path, node fields) for every node, in the tree's insertion order.

    Cheap enough for the event loop (one C-level pass): the fields are immutable
    values, so the copy is a consistent point-in-time view that a worker thread can
    serialise at leisure.
    """
    nodes = tree.nodes
    with no_gc():
        return list(zip(nodes.keys(), map(_node_fields, nodes.values()), strict=True))


def iter_snapshot_items(tree: DataTree, chunk_size: int = 50_000) -> Iterator[list[Item]]:
    """A fuzzy copy in chunks, for an event loop that must not pause for a big tree.

    Call ``next()`` once per loop iteration (txns may be applied in between) and
    concatenate the chunks.  The result mixes states from different moments, exactly
    like Java's fuzzy snapshots; it is correct as a snapshot named by the zxid that
    was last applied *before the first chunk*, because replaying every later txn
    converges (the tree's apply tolerates replays).  Copy sessions before the first
    chunk too.
    """
    keys = list(tree.nodes)  # the order (parents first) as of now
    nodes = tree.nodes
    # The cyclic GC stays off until the copy is complete (or the generator is closed):
    # a million freshly tracked tuples would otherwise trigger repeated full
    # collections, each far longer than a chunk.
    with no_gc():
        for i in range(0, len(keys), chunk_size):
            part = keys[i : i + chunk_size]
            vals = list(map(nodes.get, part))
            yield [(k, _node_fields(n)) for k, n in zip(part, vals, strict=True) if n is not None]


class _OutOfOrder(Exception):
    pass


def serialize_snapshot(items: list[Item], sessions: dict[int, int]) -> bytearray:
    """The complete snapshot file contents.

    Nodes are written in the given order when every parent precedes its children
    (true of the tree's dict, which only ever inserts under an existing parent);
    otherwise -- possible after replaying deletes over a fuzzy snapshot -- in sorted
    path order, which is a pre-order because a prefix sorts before its extensions.
    A node whose parent is not among the items at all (a chunked fuzzy copy can catch
    a re-created parent's child but not the parent) is left out: both creations come
    after the snapshot's zxid and are replayed from the log.
    """
    out = bytearray(FILE_HEADER.pack(SNAP_MAGIC, SNAP_VERSION, SNAP_DBID))
    _append_body(out, *_items_nodes(items), sessions)
    return _append_trailer(out)


def serialize_tree(tree: DataTree) -> bytearray:
    """:func:`serialize_snapshot` of the whole tree, read straight from its nodes: the
    tree must not change meanwhile (a forked child's image, or a stopped server)."""
    out = bytearray(FILE_HEADER.pack(SNAP_MAGIC, SNAP_VERSION, SNAP_DBID))
    serialize_tree_body(tree, out)
    return _append_trailer(out)


def serialize_tree_body(tree: DataTree, out: bytearray | None = None) -> bytearray:
    """The part of :func:`serialize_tree` after the file header and before the first seal
    (sessions, ACL cache, nodes, the "/" end-of-nodes marker), appended to `out`.  It is
    also what a leader's SNAP stream carries.  The tree must not change meanwhile."""
    out = bytearray() if out is None else out
    try:
        acl_lists, body = _serialize_tree_nodes(tree.nodes)
    except _OutOfOrder:  # an odd tree (not parents first, a list ACL): the general way
        acl_lists, body = _items_nodes(snapshot_items(tree))
    _append_body(out, acl_lists, body, dict(tree.sessions))
    return out


def _items_nodes(items: list[Item]) -> tuple[list[tuple[int, Any]], bytearray]:
    try:
        return _serialize_nodes(items, strict=True)
    except _OutOfOrder:
        return _serialize_nodes(sorted(items, key=itemgetter(0)), strict=False)


def _append_body(out: bytearray, acl_lists: list[tuple[int, Any]], body: bytearray,
                 sessions: dict[int, int]) -> None:
    pack_int = _INT.pack
    out += pack_int(len(sessions))
    for sid, timeout in sessions.items():
        out += _SESSION.pack(sid, timeout)
    out += pack_int(len(acl_lists))
    for ref, acl in acl_lists:
        out += _LONG.pack(ref)
        out += pack_int(len(acl))
        for a in acl:
            s = a[1].encode("utf-8", "surrogatepass")
            i = a[2].encode("utf-8", "surrogatepass")
            out += pack_int(a[0])
            out += pack_int(len(s))
            out += s
            out += pack_int(len(i))
            out += i
    out += body
    del body
    out += SNAP_TAIL  # end-of-nodes marker


def _append_trailer(out: bytearray) -> bytearray:
    _seal(out)
    out += _ZXID_DIGEST.pack(0, DIGEST_VERSION, 0)  # "no digest"
    _seal(out)
    return out


def _serialize_nodes(items: list[Item], strict: bool) -> tuple[list[tuple[int, Any]], bytearray]:
    pack_int = _INT.pack
    pack_tail = NODE_TAIL.pack
    refs: dict[Any, int] = {OPEN_ACL_UNSAFE: -1}
    acl_lists: list[tuple[int, Any]] = []
    body = bytearray()
    seen = {""}  # parent paths as sliced from children ("" is the root)
    add = seen.add
    last_parent = ""
    root_done = False
    for path, (data, acl, czxid, mzxid, ctime, mtime, version, cversion, aversion, owner,
               pzxid) in items:
        try:
            ref = refs[acl]
        except KeyError:
            ref = len(acl_lists) + 1
            refs[acl] = ref
            acl_lists.append((ref, acl))
        except TypeError:  # an unhashable (list) ACL: normalise
            acl = tuple(acl)
            known = refs.get(acl)
            if known is None:
                ref = refs[acl] = len(acl_lists) + 1
                acl_lists.append((ref, acl))
            else:
                ref = known
        if path == "/":
            if root_done:
                continue
            root_done = True
            body += b"\x00\x00\x00\x00"
        else:
            parent = path[: path.rfind("/")]
            if parent != last_parent:
                if parent not in seen or not root_done:
                    if strict:
                        raise _OutOfOrder(path)
                    continue  # orphan in a fuzzy copy (items are sorted here)
                last_parent = parent
            add(path)
            pb = path.encode("utf-8", "surrogatepass")
            body += pack_int(len(pb))
            body += pb
        if data is None:
            body += _NULL
        else:
            body += pack_int(len(data))
            body += data
        body += pack_tail(ref, czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, pzxid)
    if not root_done:
        raise ValueError("snapshot items have no root node")
    return acl_lists, body


def _serialize_tree_nodes(nodes: dict[str, Any]) -> tuple[list[tuple[int, Any]], bytearray]:
    """_serialize_nodes(strict=True) for a tree's own nodes, without copying their fields
    first: only nodes that can have children are remembered for the parents-first check,
    and each record is packed by one struct of its path and data lengths."""
    refs: dict[Any, int] = {OPEN_ACL_UNSAFE: -1}
    acl_lists: list[tuple[int, Any]] = []
    records: dict[tuple[int, int], struct.Struct] = {}
    body = bytearray()
    parents: set[str] = set()  # paths as sliced from their children ("" is the root)
    add = parents.add
    last_parent = None
    last_acl: Any = OPEN_ACL_UNSAFE
    ref = -1
    for path, node in nodes.items():
        acl = node.acl
        if acl is not last_acl:  # nodes mostly share one interned ACL tuple
            try:
                ref = refs[acl]
            except KeyError:
                ref = refs[acl] = len(acl_lists) + 1
                acl_lists.append((ref, acl))
            except TypeError:  # an unhashable (list) ACL
                raise _OutOfOrder(path) from None  # the general way normalises it
            last_acl = acl
        if path == "/":
            if body:
                raise _OutOfOrder(path)  # the root comes first
            pb = b""
            add("")
        else:
            parent = path[: path.rfind("/")]
            if parent != last_parent:
                if parent not in parents:
                    raise _OutOfOrder(path)
                last_parent = parent
            pb = path.encode("utf-8", "surrogatepass")
            if node.children is not NO_CHILDREN:
                add(path)
        data = node.data
        n = len(pb)
        dn = -1 if data is None else len(data)
        rec = records.get((n, dn))
        if rec is None:
            rec = records[n, dn] = _node_record(n, dn)
        body += rec.pack(n, pb, dn, data or b"", ref, node.czxid, node.mzxid, node.ctime, node.mtime,
                         node.version, node.cversion, node.aversion, node.owner, node.pzxid)
    if not body:
        raise ValueError("snapshot items have no root node")
    return acl_lists, body


def _seal(out: bytearray) -> None:
    out += _LONG.pack(zlib.adler32(out))
    out += SNAP_TAIL


def write_snapshot_items(items: list[Item], sessions: dict[int, int], path: Path, fsync: bool) -> int:
    """Serialise items (from :func:`snapshot_items`) to path via a temp file + rename.

    Safe to run in a worker thread.  Returns the file size.
    """
    return _write_file(serialize_snapshot(items, sessions), Path(path), fsync)


def _write_file(data: bytearray, path: Path, fsync: bool) -> int:
    tmp = path.with_name(f"tmp-{path.name}")  # never "snapshot.*": Java would parse it
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    if fsync:
        fsync_dir(path.parent)
    return len(data)


def write_snapshot(tree: DataTree, path: Path, fsync: bool) -> int:
    """Write the whole tree (and its sessions) as a snapshot file; returns its size.

    The tree must not change until this returns (see :func:`serialize_tree`).
    """
    return _write_file(serialize_tree(tree), Path(path), fsync)


# ---- reading ---------------------------------------------------------------------------
