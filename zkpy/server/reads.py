"""Read requests answered from the local tree: getData, exists, getChildren, getACL, ...

Each function takes the tree, the connection (watcher + identities) and the decoded
request, and returns the reply body or raises KeeperError.  Watches are registered
here, as the reference registers them while answering.
"""

from __future__ import annotations

from typing import Protocol

from zkpy.datatree.acl import AuthId, check_acl, mask_digests, require
from zkpy.datatree.tree import DataTree, Znode
from zkpy.jute.codec import INT, Writer
from zkpy.jute.constants import Err, KeeperError, OpCode, Perm
from zkpy.jute.records import MultiRequest, PathOnly, PathWatch, write_acl_list


class ReadContext(Protocol):
    """What a read needs from the connection that sent it."""

    auth_ids: list[AuthId]
    session_id: int

    def watch_data(self, path: str) -> None: ...

    def watch_child(self, path: str) -> None: ...


def _lookup(tree: DataTree, path: str) -> Znode | None:
    """Reads look paths up unvalidated; Java's tree also keys the root under ""."""
    return tree.nodes.get(path or "/")


def get_data(tree: DataTree, ctx: ReadContext, req: PathWatch, skip_acl: bool) -> bytes:
    node = _lookup(tree, req.path)
    if node is None:
        raise KeeperError(Err.NONODE)
    require(node.acl, Perm.READ, ctx.auth_ids, skip_acl)
    if req.watch:
        ctx.watch_data(req.path)
    d = node.data
    if d is None:
        return b"\xff\xff\xff\xff" + node.stat_bytes()
    return INT.pack(len(d)) + d + node.stat_bytes()


def exists(tree: DataTree, ctx: ReadContext, req: PathWatch, skip_acl: bool) -> bytes:
    if "\0" in req.path:
        raise KeeperError(Err.BADARGUMENTS)
    node = _lookup(tree, req.path)
    if req.watch:
        ctx.watch_data(req.path)
    if node is None:
        raise KeeperError(Err.NONODE)
    return node.stat_bytes()


def get_children(tree: DataTree, ctx: ReadContext, req: PathWatch, skip_acl: bool, with_stat: bool) -> bytes:
    node = _lookup(tree, req.path)
    if node is None:
        raise KeeperError(Err.NONODE)
    require(node.acl, Perm.READ, ctx.auth_ids, skip_acl)
    if req.watch:
        ctx.watch_child(req.path)
    w = Writer().string_vector(list(node.children))
    if with_stat:
        w.raw(node.stat_bytes())
    return w.getvalue()


def get_acl(tree: DataTree, ctx: ReadContext, req: PathOnly, skip_acl: bool) -> bytes:
    node = _lookup(tree, req.path)
    if node is None:
        raise KeeperError(Err.NONODE)
    require(node.acl, Perm.READ | Perm.ADMIN, ctx.auth_ids, skip_acl)
    acl = list(node.acl)
    if not check_acl(node.acl, Perm.ADMIN, ctx.auth_ids, skip_acl):
        acl = mask_digests(acl)
    w = Writer()
    write_acl_list(w, acl)
    w.raw(node.stat_bytes())
    return w.getvalue()


def get_all_children_number(tree: DataTree, ctx: ReadContext, req: PathOnly, skip_acl: bool) -> bytes:
    node = _lookup(tree, req.path)
    if node is None:
        raise KeeperError(Err.NONODE)
    require(node.acl, Perm.READ, ctx.auth_ids, skip_acl)
    # Java counts the keys that start with path + "/"; for "" that includes "/" itself
    return INT.pack(tree.count_descendants(req.path or "/") + (0 if req.path else 1))


def get_ephemerals(tree: DataTree, ctx: ReadContext, req: PathOnly) -> bytes:
    prefix = req.path
    paths = tree.ephemerals.get(ctx.session_id, set())
    if prefix and prefix.strip() and prefix != "/":
        paths = {p for p in paths if p.startswith(prefix)}
    return Writer().string_vector(sorted(paths)).getvalue()


def multi_read(tree: DataTree, ctx: ReadContext, req: MultiRequest, skip_acl: bool) -> bytes:
    w = Writer()
    for op, sub in req.ops:
        try:
            if op == OpCode.GET_DATA:
                body = get_data(tree, ctx, PathWatch(sub.path, False), skip_acl)
            elif op == OpCode.GET_CHILDREN:
                body = get_children(tree, ctx, PathWatch(sub.path, False), skip_acl, False)
            else:
                raise KeeperError(Err.MARSHALLINGERROR)
            w.int(op).bool(False).int(0).raw(body)
        except KeeperError as e:
            w.int(OpCode.ERROR).bool(False).int(e.code).int(e.code)
    w.int(-1).bool(True).int(-1)
    return w.getvalue()
