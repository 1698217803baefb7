"""Request preparation: validate a write against the tree plus outstanding changes and
build its txn (Apache ZooKeeper's PrepRequestProcessor, without threads).

Writes that are prepared but not yet applied are kept as `ChangeRecord`s so that a
pipelined write sees the effect of the ones before it (create /a then create /a/b).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from zkpy.datatree.acl import AuthId, fixup_acl, require
from zkpy.datatree.paths import SYSTEM_PATHS, path_error, split_path
from zkpy.datatree.tree import DataTree, owner_ttl, ttl_owner
from zkpy.jute.constants import (
    CONTAINER_EPHEMERAL_OWNER,
    MAX_TTL,
    CreateMode,
    Err,
    KeeperError,
    OpCode,
    Perm,
)
from zkpy.jute.records import (
    ACL,
    OPEN_ACL_UNSAFE,
    CreateRequest,
    MultiRequest,
    PathOnly,
    PathVersion,
    SetACLRequest,
    SetDataRequest,
)
from zkpy.jute.txns import (
    CheckVersionTxn,
    CreateTxn,
    DeleteTxn,
    ErrorTxn,
    MultiTxn,
    SetACLTxn,
    SetDataTxn,
    Txn,
)

# NamedTuple constructors run Python code; on the hot paths build the tuple directly
_tuple = tuple.__new__


class ChangeRecord:
    """A node as it will be once every prepared txn is applied (exists=False: deleted).

    A plain class, not a dataclass: compiled, a dataclass's __init__ stays interpreted."""

    __slots__ = ("zxid", "path", "exists", "version", "cversion", "aversion", "owner",
                 "child_count", "acl")

    def __init__(self, zxid: int, path: str, exists: bool, version: int, cversion: int,
                 aversion: int, owner: int, child_count: int, acl: tuple[ACL, ...]) -> None:
        self.zxid = zxid
        self.path = path
        self.exists = exists
        self.version = version
        self.cversion = cversion
        self.aversion = aversion
        self.owner = owner
        self.child_count = child_count
        self.acl = acl

    def at(self, zxid: int) -> ChangeRecord:
        """A copy stamped with zxid (records are shared with multi checkpoints: never mutate)."""
        return ChangeRecord(zxid, self.path, self.exists, self.version, self.cversion, self.aversion,
                            self.owner, self.child_count, self.acl)


@dataclass(slots=True)
class Settings:
    """The configuration that request preparation depends on."""

    skip_acl: bool = False
    extended_types: bool = False
    sasl_acl: bool = False  # the sasl ACL scheme has a provider (authProvider.N)
    x509_acl: bool = False  # the x509 scheme has a provider (client TLS, authProvider.N)
    enforce_quota: bool = False  # zookeeper.enforceQuota: hard quotas refuse creates/setData


class Preparer:
    """Turns write requests into txns; owns the outstanding-change overlay."""

    def __init__(self, tree: DataTree, settings: Settings) -> None:
        self.tree = tree
        self.settings = settings
        self.outstanding: dict[str, ChangeRecord] = {}
        self._by_zxid: list[tuple[int, str]] = []
        self._undo: list[tuple[str, ChangeRecord | None]] | None = None  # inside a multi

    # ---- overlay ----------------------------------------------------------------
    def record(self, path: str) -> ChangeRecord | None:
        rec = self.outstanding.get(path)
        if rec is not None:
            return rec if rec.exists else None
        n = self.tree.get(path)
        if n is None:
            return None
        return ChangeRecord(-1, path, True, n.version, n.cversion, n.aversion, n.owner,
                            len(n.children), n.acl)

    def updated(self, path: str, zxid: int) -> ChangeRecord | None:
        """A new record of path stamped with zxid, for the caller to change and _add."""
        rec = self.outstanding.get(path)
        if rec is not None:
            return rec.at(zxid) if rec.exists else None
        n = self.tree.nodes.get(path)
        if n is None:
            return None
        return ChangeRecord(zxid, path, True, n.version, n.cversion, n.aversion, n.owner,
                            len(n.children), n.acl)

    def _add(self, rec: ChangeRecord) -> None:
        if self._undo is not None:
            self._undo.append((rec.path, self.outstanding.get(rec.path)))
        self.outstanding[rec.path] = rec
        self._by_zxid.append((rec.zxid, rec.path))

    def applied(self, zxid: int) -> None:
        """Forget overlay records of txns up to zxid (they are in the tree now)."""
        i = 0
        bz = self._by_zxid
        while i < len(bz) and bz[i][0] <= zxid:
            z, p = bz[i]
            rec = self.outstanding.get(p)
            if rec is not None and rec.zxid == z:
                del self.outstanding[p]
            i += 1
        if i:
            del bz[:i]

    def _checkpoint(self) -> int:
        """Start recording what the next _add calls replace (a multi may have to undo them)."""
        self._undo = []
        return len(self._by_zxid)

    def _rollback(self, cp: int) -> None:
        undo, self._undo = self._undo or [], None
        for path, prev in reversed(undo):
            if prev is None:
                del self.outstanding[path]
            else:
                self.outstanding[path] = prev
        del self._by_zxid[cp:]

    # ---- ops ----------------------------------------------------------------------
    def prepare(self, op: int, req: object, zxid: int, sid: int, auth: Sequence[AuthId]) -> Txn:
        """Validate one write and return its txn; raise KeeperError if it fails.

        req is the record REQUEST_DECODERS (or a multi) decoded for op; no type expresses
        that pairing, hence the ignores below.
        """
        if op == OpCode.SET_DATA:
            return self._set_data(req, zxid, auth)  # type: ignore[arg-type]  # op fixes req's type
        if op in _CREATE_OPS:
            return self._create(op, req, zxid, sid, auth)  # type: ignore[arg-type]  # op fixes req's type
        if op == OpCode.DELETE:
            return self._delete(req, zxid, auth)  # type: ignore[arg-type]  # op fixes req's type
        if op == OpCode.SET_ACL:
            return self._set_acl(req, zxid, auth)  # type: ignore[arg-type]  # op fixes req's type
        if op == OpCode.CHECK:
            return self._check(req, auth)  # type: ignore[arg-type]  # op fixes req's type
        if op == OpCode.DELETE_CONTAINER:
            return self._delete_container(req, zxid)  # type: ignore[arg-type]  # op fixes req's type
        raise KeeperError(Err.UNIMPLEMENTED)

    def prepare_multi(
        self, req: MultiRequest, zxid: int, sid: int, auth: Sequence[AuthId]
    ) -> MultiTxn:
        """All ops or none: a failing op turns the whole multi into error sub-txns.

        Raises KeeperError(MARSHALLINGERROR) for a multi Java cannot even deserialize
        (read ops mixed in, a TTL mode in a plain CreateRequest); the caller logs that
        as an error txn, so it still consumes a zxid.
        """
        ops = [_multi_create_op(op, sub) for op, sub in req.ops]  # may raise MARSHALLINGERROR
        cp = self._checkpoint()
        txns: list[tuple[int, Txn]] = []
        for i, (op, sub) in enumerate(ops):
            try:
                txn = self.prepare(op, sub, zxid, sid, auth)
            except KeeperError as e:
                self._rollback(cp)
                out: list[tuple[int, Txn]] = [(OpCode.ERROR, ErrorTxn(0)) for _ in range(i)]
                out.append((OpCode.ERROR, ErrorTxn(e.code)))
                out += [(OpCode.ERROR, ErrorTxn(Err.RUNTIMEINCONSISTENCY))
                        for _ in range(len(req.ops) - i - 1)]
                return MultiTxn(out)
            txns.append((OpCode.CREATE if op == OpCode.CREATE2 else op, txn))
        self._undo = None
        return MultiTxn(txns)

    def _create(
        self, op: int, req: CreateRequest, zxid: int, sid: int, auth: Sequence[AuthId]
    ) -> CreateTxn:
        mode = _MODES.get(req.flags)
        if mode is None:
            raise KeeperError(Err.BADARGUMENTS)
        ephemeral, sequential, with_ttl = mode
        ttl = 0
        if op == OpCode.CREATE_TTL:
            if not self.settings.extended_types:
                raise KeeperError(Err.UNIMPLEMENTED)
            if not with_ttl or not (0 < req.ttl <= MAX_TTL):
                raise KeeperError(Err.BADARGUMENTS)
            ttl = req.ttl
        elif with_ttl:
            raise KeeperError(Err.BADARGUMENTS)
        # Like Java, the opcode decides container-ness: createContainer with flags 0-3 makes a
        # container (sequential honoured), create/create2 with flag 4 a plain persistent node.
        path = req.path
        if "/" not in path or "\0" in path:
            raise KeeperError(Err.BADARGUMENTS)
        acl = fixup_acl(req.acl, auth, self.settings.sasl_acl, self.settings.x509_acl)
        parent_path, _ = split_path(path)
        parent = self.updated(parent_path, zxid)
        if parent is None:
            raise KeeperError(Err.NONODE)
        if parent.acl is not OPEN_ACL_UNSAFE:  # the shared world:anyone ACL grants everything
            require(parent.acl, Perm.CREATE, auth, self.settings.skip_acl)
        if sequential:
            path += f"{parent.cversion:010d}"
        if path_error(path) is not None:
            raise KeeperError(Err.BADARGUMENTS)
        if self.record(path) is not None:
            raise KeeperError(Err.NODEEXISTS)
        owner = parent.owner
        if owner != 0 and owner != CONTAINER_EPHEMERAL_OWNER and owner_ttl(owner) is None:
            raise KeeperError(Err.NOCHILDRENFOREPHEMERALS)
        if self.settings.enforce_quota:
            self.tree.quotas.check(path, len(req.data) if req.data else 0, 1)
        new_cv = parent.cversion + 1
        parent.cversion = new_cv
        parent.child_count += 1
        self._add(parent)
        if op == OpCode.CREATE_CONTAINER:
            owner, kind = CONTAINER_EPHEMERAL_OWNER, OpCode.CREATE_CONTAINER
        elif op == OpCode.CREATE_TTL:
            owner, kind = ttl_owner(ttl), OpCode.CREATE_TTL
        else:
            owner, kind = (sid if ephemeral else 0), OpCode.CREATE
        self._add(ChangeRecord(zxid, path, True, 0, 0, 0, owner, 0, acl))
        return _tuple(CreateTxn, (path, req.data, acl, ephemeral, new_cv, kind, ttl))

    def _delete(self, req: PathVersion, zxid: int, auth: Sequence[AuthId]) -> DeleteTxn:
        path = req.path
        if "/" not in path or "\0" in path or path in SYSTEM_PATHS:
            raise KeeperError(Err.BADARGUMENTS)
        parent_path, _ = split_path(path)
        parent = self.updated(parent_path, zxid)
        if parent is None:
            raise KeeperError(Err.NONODE)
        require(parent.acl, Perm.DELETE, auth, self.settings.skip_acl)
        node = self.updated(path, zxid)
        if node is None:
            raise KeeperError(Err.NONODE)
        if req.version != -1 and req.version != node.version:
            raise KeeperError(Err.BADVERSION)
        if node.child_count > 0:
            raise KeeperError(Err.NOTEMPTY)
        parent.child_count -= 1
        self._add(parent)
        node.exists = False
        self._add(node)
        return DeleteTxn(path)

    def _delete_container(self, req: PathOnly, zxid: int) -> DeleteTxn:
        path = req.path
        if "/" not in path or "\0" in path or path in SYSTEM_PATHS:
            raise KeeperError(Err.BADARGUMENTS)
        node = self.record(path)
        if node is None:
            raise KeeperError(Err.NONODE)
        if node.child_count > 0:
            raise KeeperError(Err.NOTEMPTY)
        if node.owner != CONTAINER_EPHEMERAL_OWNER and owner_ttl(node.owner) is None:
            raise KeeperError(Err.BADVERSION)
        parent = self.record(split_path(path)[0])
        if parent is None:
            raise KeeperError(Err.NONODE)
        new = parent.at(zxid)
        new.child_count = parent.child_count - 1
        self._add(new)
        new = node.at(zxid)
        new.exists = False
        self._add(new)
        return DeleteTxn(path, container=True)

    def _set_data(self, req: SetDataRequest, zxid: int, auth: Sequence[AuthId]) -> SetDataTxn:
        path = req.path
        if path_error(path) is not None:
            raise KeeperError(Err.BADARGUMENTS)
        node = self.updated(path, zxid)
        if node is None:
            raise KeeperError(Err.NONODE)
        if node.acl is not OPEN_ACL_UNSAFE:  # the shared world:anyone ACL grants everything
            require(node.acl, Perm.WRITE, auth, self.settings.skip_acl)
        if self.settings.enforce_quota:
            # Java's lastData is the prepared record's; zkpy's records carry no data, so the
            # applied node's (they differ only while setData's to one node are pipelined)
            old = self.tree.nodes.get(path)
            old_len = len(old.data) if old is not None and old.data else 0
            self.tree.quotas.check(path, (len(req.data) if req.data else 0) - old_len, 0)
        if req.version != -1 and req.version != node.version:
            raise KeeperError(Err.BADVERSION)
        new_version = node.version + 1
        if new_version > 0x7FFFFFFF:  # Java's int wraps
            new_version = -0x80000000
        node.version = new_version
        self._add(node)
        return _tuple(SetDataTxn, (path, req.data, new_version))

    def _set_acl(self, req: SetACLRequest, zxid: int, auth: Sequence[AuthId]) -> SetACLTxn:
        path = req.path
        if path_error(path) is not None:
            raise KeeperError(Err.BADARGUMENTS)
        acl = fixup_acl(req.acl, auth, self.settings.sasl_acl, self.settings.x509_acl)
        node = self.updated(path, zxid)
        if node is None:
            raise KeeperError(Err.NONODE)
        require(node.acl, Perm.ADMIN, auth, self.settings.skip_acl)
        if req.version != -1 and req.version != node.aversion:
            raise KeeperError(Err.BADVERSION)
        node.aversion = new_av = _wrap_int(node.aversion + 1)
        node.acl = acl
        self._add(node)
        return SetACLTxn(path, acl, new_av)

    def _check(self, req: PathVersion, auth: Sequence[AuthId]) -> CheckVersionTxn:
        path = req.path
        if path_error(path) is not None:
            raise KeeperError(Err.BADARGUMENTS)
        node = self.record(path)
        if node is None:
            raise KeeperError(Err.NONODE)
        require(node.acl, Perm.READ, auth, self.settings.skip_acl)
        if req.version != -1 and req.version != node.version:
            raise KeeperError(Err.BADVERSION)
        return CheckVersionTxn(path, req.version)

    def session_ephemerals(self, sid: int) -> list[str]:
        """The session's ephemerals including ones of prepared, unapplied txns."""
        paths = set(self.tree.ephemerals.get(sid, ()))
        for p, rec in self.outstanding.items():
            if rec.owner == sid:
                if rec.exists:
                    paths.add(p)
                else:
                    paths.discard(p)
            elif not rec.exists:
                paths.discard(p)
        return sorted(paths)

    def close_session(self, sid: int, zxid: int) -> list[str]:
        paths = self.session_ephemerals(sid)
        for p in paths:
            rec = self.record(p)
            if rec is None:
                continue
            parent = self.record(split_path(p)[0])
            if parent is not None:
                new = parent.at(zxid)
                new.child_count = parent.child_count - 1
                self._add(new)
            new = rec.at(zxid)
            new.exists = False
            self._add(new)
        return paths


# create flags -> (ephemeral, sequential, ttl); flags not listed are BADARGUMENTS
_MODES = {m.value: (m.ephemeral, m.sequential, m.ttl) for m in CreateMode}
_CREATE_OPS = (OpCode.CREATE, OpCode.CREATE2, OpCode.CREATE_CONTAINER, OpCode.CREATE_TTL)


def _multi_create_op(op: int, sub: object) -> tuple[int, object]:
    """The op a multi sub-request really is, as Java 3.8's MultiOperationRecord builds it.

    Inside a multi the create variant comes from the flags (Op.create), not from the
    record's type: flags 0-3 (and unknown flags, which fail later with BADARGUMENTS) are
    a plain create, 4 a container, 5/6 a TTL node, which needs a CreateTTLRequest record.
    """
    if op in (OpCode.GET_DATA, OpCode.GET_CHILDREN):
        raise KeeperError(Err.MARSHALLINGERROR)  # read ops mixed into a write multi
    if op not in _CREATE_OPS:
        return op, sub
    req = cast(CreateRequest, sub)  # a create op's record (see _MULTI_OPS)
    try:
        mode = CreateMode(req.flags)
    except ValueError:
        mode = CreateMode.PERSISTENT
    if mode.ttl:
        if op != OpCode.CREATE_TTL:
            raise KeeperError(Err.MARSHALLINGERROR)
        return OpCode.CREATE_TTL, req
    if op == OpCode.CREATE_TTL:
        req = req._replace(ttl=-1)
    return (OpCode.CREATE_CONTAINER if mode == CreateMode.CONTAINER else OpCode.CREATE), req


def _wrap_int(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v
