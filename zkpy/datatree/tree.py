"""The in-memory znode tree and the apply step of the write pipeline.

`DataTree.apply(header, txn)` is the only way a write changes the tree.  It returns the
result for the client and the watch events to deliver; it never raises for a replayed
txn that no longer fits (recovery replays from a fuzzy snapshot, so creates of existing
nodes and deletes of missing ones are tolerated as Apache ZooKeeper does).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple

from zkpy.datatree.paths import split_path
from zkpy.datatree.quota import QuotaTracker
from zkpy.datatree.watches import WatchManager
from zkpy.jute.constants import (
    CONTAINER_EPHEMERAL_OWNER,
    Err,
    EventType,
    OpCode,
)
from zkpy.jute.records import ACL, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, STAT
from zkpy.jute.txns import (
    CheckVersionTxn,
    CloseSessionTxn,
    CreateSessionTxn,
    CreateTxn,
    DeleteTxn,
    ErrorTxn,
    MultiTxn,
    SetACLTxn,
    SetDataTxn,
    Txn,
    TxnHeader,
)

TTL_MARKER = 0xFF  # top byte of a TTL node's stored ephemeralOwner

# NamedTuple constructors run Python code; on the hot paths build the tuple directly
_tuple = tuple.__new__


def ttl_owner(ttl: int) -> int:
    """Stored ephemeralOwner of a TTL node (signed long)."""
    return ((TTL_MARKER << 56) | ttl) - (1 << 64)


def owner_ttl(owner: int) -> int | None:
    """The TTL encoded in a stored ephemeralOwner, or None if not a TTL node."""
    u = owner & 0xFFFFFFFFFFFFFFFF
    if owner != CONTAINER_EPHEMERAL_OWNER and (u >> 56) == TTL_MARKER:
        return u & 0x00FFFFFFFFFFFFFF
    return None


NO_CHILDREN: frozenset[str] = frozenset()
# seeded with the shared world:anyone tuple, which request preparation tests by identity
_ACL_CACHE: dict[tuple[ACL, ...], tuple[ACL, ...]] = {OPEN_ACL_UNSAFE: OPEN_ACL_UNSAFE}


def intern_acl(acl: tuple[ACL, ...] | list[ACL]) -> tuple[ACL, ...]:
    """One shared tuple per distinct ACL list (most znodes use one of a handful)."""
    t = tuple(acl)
    return _ACL_CACHE.setdefault(t, t)


class Znode:
    """One znode: data, ACL, stored stat fields and child names."""

    __slots__ = (
        "data", "acl", "czxid", "mzxid", "ctime", "mtime", "version",
        "cversion", "aversion", "owner", "pzxid", "children",
    )

    def __init__(
        self, data: bytes | None, acl: tuple[ACL, ...], zxid: int, time: int, owner: int = 0
    ) -> None:
        self.data = data
        self.acl = acl
        self.czxid = self.mzxid = self.pzxid = zxid
        self.ctime = self.mtime = time
        self.version = self.cversion = self.aversion = 0
        self.owner = owner
        # most znodes are leaves: share one empty frozenset until the first child arrives
        self.children: set[str] | frozenset[str] = NO_CHILDREN

    def add_child(self, name: str) -> None:
        children = self.children
        if isinstance(children, set):
            children.add(name)
        else:  # NO_CHILDREN, the only frozenset a node holds
            self.children = {name}

    @property
    def reported_owner(self) -> int:
        o = self.owner
        if o == 0 or o == CONTAINER_EPHEMERAL_OWNER or owner_ttl(o) is not None:
            return 0
        return o

    def stat_tuple(self) -> tuple[int, ...]:
        n = len(self.children)
        d = self.data
        return (
            self.czxid, self.mzxid, self.ctime, self.mtime, self.version,
            self.cversion * 2 - n, self.aversion, self.reported_owner,
            0 if d is None else len(d), n, self.pzxid,
        )

    def stat_bytes(self) -> bytes:
        # stat_tuple() spelled out: this runs for nearly every reply
        n = len(self.children)
        d = self.data
        o = self.owner
        if o and (o == CONTAINER_EPHEMERAL_OWNER or owner_ttl(o) is not None):
            o = 0
        return STAT.pack(self.czxid, self.mzxid, self.ctime, self.mtime, self.version,
                         self.cversion * 2 - n, self.aversion, o,
                         0 if d is None else len(d), n, self.pzxid)


class Event(NamedTuple):
    """A fired watch: who to tell, and the ACL that decides whether each may be told
    (the node's own; the parent's for NodeChildrenChanged; the deleted node's last)."""

    type: int
    path: str
    watchers: set[Hashable]
    acl: tuple[ACL, ...] = ()


class ApplyResult(NamedTuple):
    """What one applied txn means for the client that sent it."""

    err: int
    path: str | None = None  # created path
    stat: bytes | None = None  # Stat of the affected node after the change
    subs: list[ApplyResult] | None = None  # per-op results of a multi
    op: int = 0  # sub-op type inside a multi


class DataTree:
    """All znodes, the ephemerals of each session, containers, TTL nodes and watches."""

    def __init__(self) -> None:
        self.nodes: dict[str, Znode] = {}
        self.ephemerals: dict[int, set[str]] = {}
        self.containers: set[str] = set()
        self.ttls: set[str] = set()
        self.watches = WatchManager()
        self.last_processed_zxid = 0
        self.sessions: dict[int, int] = {}  # session id -> timeout, as logged
        self.quotas = QuotaTracker(self)
        self.replies = True  # False while replaying a log at recovery: nobody reads the Stats
        root = Znode(b"", OPEN_ACL_UNSAFE, 0, 0)
        self.nodes["/"] = root
        for path, acl in (
            ("/zookeeper", OPEN_ACL_UNSAFE),
            ("/zookeeper/quota", OPEN_ACL_UNSAFE),
            ("/zookeeper/config", READ_ACL_UNSAFE),
        ):
            self._add_system_node(path, acl)
        self.nodes["/zookeeper/config"].aversion = -1

    def _add_system_node(self, path: str, acl: tuple[ACL, ...]) -> None:
        parent, name = split_path(path)
        self.nodes[path] = Znode(b"", acl, 0, 0)
        self.nodes[parent].add_child(name)

    # ---- reads --------------------------------------------------------------------
    def get(self, path: str) -> Znode | None:
        return self.nodes.get(path)

    def node_count(self) -> int:
        """Count as Apache ZooKeeper reports it (the root is counted twice, as "" and "/")."""
        return len(self.nodes) + 1

    def approximate_data_size(self) -> int:
        return sum(len(p) + (len(n.data) if n.data else 0) for p, n in self.nodes.items())

    def count_descendants(self, path: str) -> int:
        node = self.nodes[path]
        total = 0
        stack = [(path, node)]
        while stack:
            p, n = stack.pop()
            base = "" if p == "/" else p
            for c in n.children:
                child = self.nodes.get(f"{base}/{c}")
                if child is not None:
                    total += 1
                    stack.append((f"{base}/{c}", child))
        return total

    # ---- apply ----------------------------------------------------------------------
    def apply(self, hdr: TxnHeader, txn: Txn) -> tuple[ApplyResult, list[Event]]:
        """Apply one committed txn; return the client's result and the watch events."""
        events: list[Event] = []
        if type(txn) is SetDataTxn:  # the most common txn, without the dispatch
            res = self._set_data(txn, hdr, events)
        else:
            res = self._apply(hdr.type, txn, hdr, events)
        if hdr.zxid > self.last_processed_zxid:
            self.last_processed_zxid = hdr.zxid
        return res, events

    def _apply(self, type_: int, txn: Txn, hdr: TxnHeader, events: list[Event]) -> ApplyResult:
        if type(txn) is SetDataTxn:  # the most common txn first
            return self._set_data(txn, hdr, events)
        if isinstance(txn, CreateTxn):
            return self._create(txn, hdr, events)
        if isinstance(txn, DeleteTxn):
            return self._delete(txn.path, hdr.zxid, events)
        if isinstance(txn, SetDataTxn):
            return self._set_data(txn, hdr, events)
        if isinstance(txn, SetACLTxn):
            node = self.nodes.get(txn.path)
            if node is None:
                return ApplyResult(Err.NONODE)
            node.acl = intern_acl(txn.acl)
            node.aversion = txn.version
            return ApplyResult(0, stat=node.stat_bytes() if self.replies else None)
        if isinstance(txn, CheckVersionTxn):
            node = self.nodes.get(txn.path)
            return ApplyResult(0 if node else Err.NONODE)
        if isinstance(txn, ErrorTxn):
            return ApplyResult(txn.err)
        if isinstance(txn, CreateSessionTxn):
            self.sessions[hdr.client_id] = txn.timeout
            return ApplyResult(0)
        if isinstance(txn, CloseSessionTxn) or type_ == OpCode.CLOSE_SESSION:
            return self._close_session(hdr, txn, events)
        if isinstance(txn, MultiTxn):
            return self._multi(txn, hdr, events)
        return ApplyResult(0)

    def _create(self, t: CreateTxn, hdr: TxnHeader, events: list[Event]) -> ApplyResult:
        parent_path, name = split_path(t.path)
        parent = self.nodes.get(parent_path)
        if parent is None:
            return ApplyResult(Err.NONODE)
        zxid = hdr.zxid
        pcv = t.parent_cversion
        if pcv == -1:
            pcv = parent.cversion + 1
        if name in parent.children:
            # replay over a fuzzy snapshot: fix up the parent as the reference does
            if pcv > parent.cversion:
                parent.cversion = pcv
                parent.pzxid = zxid
            return ApplyResult(Err.NODEEXISTS)
        if pcv > parent.cversion:
            parent.cversion = pcv
            parent.pzxid = zxid
        owner = 0
        if t.kind == OpCode.CREATE_CONTAINER:
            owner = CONTAINER_EPHEMERAL_OWNER
        elif t.kind == OpCode.CREATE_TTL:
            owner = ttl_owner(t.ttl)
        elif t.ephemeral:
            owner = hdr.client_id
        node = Znode(t.data, intern_acl(t.acl), zxid, hdr.time, owner)
        self.nodes[t.path] = node
        parent.add_child(name)
        self._index_owner(t.path, owner)
        self.quotas.created(t.path, len(t.data) if t.data else 0)
        w = self.watches
        ws = w.data.trigger(t.path)
        if ws:
            events.append(_tuple(Event, (EventType.NODE_CREATED, t.path, ws, node.acl)))
        ws = w.child.trigger(parent_path)
        if ws:
            events.append(_tuple(Event, (EventType.NODE_CHILDREN_CHANGED, parent_path, ws, parent.acl)))
        return _tuple(ApplyResult, (0, t.path, node.stat_bytes() if self.replies else None, None, 0))

    def _index_owner(self, path: str, owner: int) -> None:
        if owner == 0:
            return
        if owner == CONTAINER_EPHEMERAL_OWNER:
            self.containers.add(path)
        elif owner_ttl(owner) is not None:
            self.ttls.add(path)
        else:
            self.ephemerals.setdefault(owner, set()).add(path)

    def _delete(self, path: str, zxid: int, events: list[Event]) -> ApplyResult:
        if path == "/":
            return ApplyResult(Err.NONODE)
        parent_path, name = split_path(path)
        parent = self.nodes.get(parent_path)
        node = self.nodes.get(path)
        if node is None:
            # a delete replayed over a fuzzy snapshot: the reference still moves the
            # parent's pzxid forward before it finds the child missing
            if parent is not None and zxid > parent.pzxid:
                parent.pzxid = zxid
            return ApplyResult(Err.NONODE)
        del self.nodes[path]
        owner = node.owner
        if owner:
            if owner == CONTAINER_EPHEMERAL_OWNER:
                self.containers.discard(path)
            elif owner_ttl(owner) is not None:
                self.ttls.discard(path)
            else:
                s = self.ephemerals.get(owner)
                if s is not None:
                    s.discard(path)
                    if not s:
                        del self.ephemerals[owner]
        if parent is not None:
            children = parent.children
            if isinstance(children, set):  # else NO_CHILDREN: nothing to discard
                children.discard(name)
            if zxid > parent.pzxid:
                parent.pzxid = zxid
        self.quotas.deleted(path, len(node.data) if node.data else 0)
        w = self.watches
        first = w.data.trigger(path)
        acl = node.acl
        events.append(Event(EventType.NODE_DELETED, path, first, acl))
        events.append(Event(EventType.NODE_DELETED, path, w.child.trigger(path, first), acl))
        events.append(Event(EventType.NODE_CHILDREN_CHANGED, parent_path, w.child.trigger(parent_path),
                            parent.acl if parent is not None else ()))
        return ApplyResult(0)

    def _set_data(self, t: SetDataTxn, hdr: TxnHeader, events: list[Event]) -> ApplyResult:
        node = self.nodes.get(t.path)
        if node is None:
            return ApplyResult(Err.NONODE)
        quotas = self.quotas
        if quotas.paths:
            quotas.data_changed(t.path, (len(t.data) if t.data else 0)
                                - (len(node.data) if node.data else 0))
        node.data = t.data
        node.version = t.version
        node.mzxid = hdr.zxid
        node.mtime = hdr.time
        ws = self.watches.data.trigger(t.path)
        if ws:
            events.append(_tuple(Event, (EventType.NODE_DATA_CHANGED, t.path, ws, node.acl)))
        return _tuple(ApplyResult, (0, None, node.stat_bytes() if self.replies else None, None, 0))

    def _close_session(self, hdr: TxnHeader, txn: Txn, events: list[Event]) -> ApplyResult:
        sid = hdr.client_id
        paths = list(txn.paths) if isinstance(txn, CloseSessionTxn) else []
        # older logs carry no path list: the tree's own index is the truth then
        paths += [p for p in sorted(self.ephemerals.get(sid, ())) if p not in paths]
        # one DELETE result per path, NONODE for one not deleted (the audit log's lines)
        subs = []
        for p in paths:
            node = self.nodes.get(p)
            if node is None or node.owner == sid:  # missing: still moves the parent's pzxid
                err = self._delete(p, hdr.zxid, events).err
            else:
                err = Err.NONODE
            subs.append(ApplyResult(err, p, op=OpCode.DELETE))
        self.ephemerals.pop(sid, None)
        self.sessions.pop(sid, None)
        return ApplyResult(0, subs=subs)

    def _multi(self, t: MultiTxn, hdr: TxnHeader, events: list[Event]) -> ApplyResult:
        failed = any(isinstance(sub, ErrorTxn) for _, sub in t.txns)
        subs: list[ApplyResult] = []
        if failed:
            for _, sub in t.txns:
                err = sub.err if isinstance(sub, ErrorTxn) else 0
                subs.append(ApplyResult(err, op=OpCode.ERROR))
            return ApplyResult(0, subs=subs)
        for op, sub in t.txns:
            r = self._apply(op, sub, hdr, events)
            subs.append(_tuple(ApplyResult, (r[0], r[1], r[2], r[3], op)))
        return ApplyResult(0, subs=subs)

    # ---- misc -----------------------------------------------------------------------
    def set_config_data(self, data: bytes, version: int = -1, mzxid: int | None = None,
                        mtime: int | None = None) -> None:
        """/zookeeper/config's data; an ensemble member also sets mzxid to the config's
        version and mtime to now (ZKDatabase.initConfigInZKDatabase)."""
        node = self.nodes["/zookeeper/config"]
        node.data = data
        node.version = version
        if mzxid is not None:
            node.mzxid = mzxid
        if mtime is not None:
            node.mtime = mtime


__all__ = ["ApplyResult", "DataTree", "Event", "Znode", "owner_ttl", "ttl_owner"]
