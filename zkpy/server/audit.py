"""The audit log: ZooKeeper's audit lines (AuditHelper, ZKAuditProvider, Slf4jAuditLogger).

With `audit.enable=true` (-Dzookeeper.audit.enable=true) the server writes one line per
audited event to the logging logger "zkpy.audit": successes at INFO, failures at ERROR,
as Slf4jAuditLogger.  The line is ZooKeeper's AuditEvent: tab-separated `key=value`
pairs in the order session, user, ip, operation, znode, znode_type, acl (absent
values left out), then `result=success|failure|invoked`:

    session=0x100...\tuser=bob,127.0.0.1\tip=127.0.0.1\toperation=create\tznode=/a\tznode_type=persistent\tresult=success

Audited: serverStart and serverStop; create, create2 and createContainer (not createTTL,
as in 3.8), delete, setData, setAcl (with the ACL as ZKUtil.aclToString writes it),
reconfig, and multi (one line per create/delete/setData when it succeeds, one
multiOperation failure line when it fails), each logged by the server that holds the
client's connection, failures included (a write refused because its session moved, a
write carried out after its client left: then, as in Java, with an empty ip; an
undecodable write other than a multi is not logged, Java cannot read it back).  The
ephemeral nodes a closeSession deletes (the client's close or an expiry) get one
`ephemeralZNodeDeletionOnSessionCloseOrExpire` line each, as the server's user with no
ip, from every member that applies the txn, as Java's DataTree does; unlike Java, not
again when a server replays its txn log at start-up (the deletion happened once).
`zkpy.audit.file=PATH` sends the lines to PATH (appended, `%(asctime)s %(levelname)s
audit: message`); without it they go wherever the "zkpy.audit" logger propagates (the
server log).
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zkpy.jute.constants import OpCode

if TYPE_CHECKING:
    from zkpy.datatree.tree import ApplyResult
    from zkpy.jute.records import ACL
    from zkpy.server.connection import ClientConnection

LOGGER = "zkpy.audit"

_CREATE_MODES = {0: "persistent", 1: "ephemeral", 2: "persistent_sequential",
                 3: "ephemeral_sequential", 4: "container", 5: "persistent_with_ttl",
                 6: "persistent_sequential_with_ttl"}
_CREATES = (OpCode.CREATE, OpCode.CREATE2, OpCode.CREATE_CONTAINER)
_SUB_CREATES = (*_CREATES, OpCode.CREATE_TTL)
_DELETES = (OpCode.DELETE, OpCode.DELETE_CONTAINER)
_EPHEMERAL_DELETION = "ephemeralZNodeDeletionOnSessionCloseOrExpire"


def perm_string(perms: int) -> str:
    """ZKUtil.getPermString: c d r w a."""
    return "".join(ch for bit, ch in ((4, "c"), (8, "d"), (1, "r"), (2, "w"), (16, "a"))
                   if perms & bit)


def acl_string(acls: Sequence[ACL]) -> str:
    """ZKUtil.aclToString: scheme:id:perms for each entry, with no separator (as Java)."""
    return "".join(f"{a.scheme}:{a.id}:{perm_string(a.perms)}" for a in acls)


def users(auth_ids: Sequence[tuple[str, str]]) -> str | None:
    """AuthUtil.getUsers: each id's user name by its provider (digest: the name before
    ':'; super has no provider), comma-joined in the connection's id order."""
    names = []
    for scheme, ident in auth_ids:
        if scheme == "super":
            continue
        name = ident.split(":", 1)[0] if scheme == "digest" else ident
        if name and name.strip():
            names.append(name)
    return ",".join(names) or None


def event_line(result: str, session: str | None = None, user: str | None = None,
               ip: str | None = None, operation: str | None = None, znode: str | None = None,
               znode_type: str | None = None, acl: str | None = None) -> str:
    pairs = (("session", session), ("user", user), ("ip", ip), ("operation", operation),
             ("znode", znode), ("znode_type", znode_type), ("acl", acl))
    return "\t".join([f"{k}={v}" for k, v in pairs if v is not None] + [f"result={result}"])


def _session_hex(session_id: int) -> str:
    """Long.toHexString: the two's-complement bits, no padding."""
    return f"0x{session_id & 0xFFFFFFFFFFFFFFFF:x}"


def _client(conn: ClientConnection) -> dict[str, str | None]:
    # a closed connection has no remote address in Java: ServerCnxn.getHostAddress is ""
    return {"session": _session_hex(conn.session_id), "user": users(conn.auth_ids),
            "ip": "" if conn.closed else conn.peer_ip}


class AuditLog:
    """Writes audit events to the "zkpy.audit" logger; one per server."""

    def __init__(self, server_user: str, logger: logging.Logger | None = None) -> None:
        self.server_user = server_user
        self.log = logger or logging.getLogger(LOGGER)

    @classmethod
    def configure(cls, raw: dict[str, str], server_user: str | None) -> AuditLog | None:
        """An AuditLog when audit.enable is true (Boolean.getBoolean), else None."""
        if raw.get("audit.enable", "").strip().lower() != "true":
            return None
        logger = logging.getLogger(LOGGER)
        path = raw.get("zkpy.audit.file", "").strip()
        if path and not any(isinstance(h, logging.FileHandler) and h.baseFilename == path
                            for h in logger.handlers):
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s audit: %(message)s"))
            logger.addHandler(handler)
            logger.propagate = False
        logger.setLevel(logging.INFO)
        if server_user is None:
            try:
                server_user = getpass.getuser()  # Java: user.name
            except (KeyError, OSError):
                server_user = "unknown"
        return cls(server_user, logger)

    def _emit(self, result: str, **fields: str | None) -> None:
        line = event_line(result, **fields)
        if result == "failure":
            self.log.error(line)
        else:
            self.log.info(line)

    def server_start(self) -> None:
        self._emit("success", user=self.server_user, operation="serverStart")

    def server_stop(self) -> None:
        self._emit("invoked", user=self.server_user, operation="serverStop")

    def ephemerals_deleted(self, session_id: int, deletes: Sequence[ApplyResult]) -> None:
        """The ephemeral nodes a closeSession txn deleted (or found gone: failure),
        logged as the server's user by every member that applies the txn, as Java's
        DataTree.deleteNodes (which has no client, so no ip)."""
        session = _session_hex(session_id)
        for r in deletes:
            self._emit("failure" if r.err else "success", session=session,
                       user=self.server_user, operation=_EPHEMERAL_DELETION, znode=r.path)

    def refused(self, conn: ClientConnection, operation: str) -> None:
        """An audited request answered with an error before it became a txn."""
        self._emit("failure", **_client(conn), operation=operation)

    def write(self, conn: ClientConnection, op: int, req: Any, res: ApplyResult) -> None:
        """A write answered on conn (res: its applied result; an error txn has res.err)."""
        base = _client(conn)
        result = "failure" if res.err else "success"
        path = getattr(req, "path", None)
        if path is None and op != OpCode.MULTI and op != OpCode.RECONFIG:
            return  # an undecodable request: Java cannot read it back to log it either
        if op in _CREATES:
            mode = _CREATE_MODES.get(getattr(req, "flags", -1))
            if mode is None:
                return  # Java's getCreateMode throws: nothing is logged
            self._emit(result, **base, operation="create",
                       znode=path if res.err else res.path, znode_type=mode)
        elif op in _DELETES:
            self._emit(result, **base, operation="delete", znode=path)
        elif op == OpCode.SET_DATA:
            self._emit(result, **base, operation="setData", znode=path)
        elif op == OpCode.SET_ACL:
            acl = getattr(req, "acl", None)
            if acl is None:
                return
            self._emit(result, **base, operation="setAcl", znode=path, acl=acl_string(acl))
        elif op == OpCode.MULTI:
            self._multi(base, req, res)
        elif op == OpCode.RECONFIG:  # the txn is a setData of /zookeeper/config
            self._emit(result, **base, operation="reconfig",
                       znode=None if res.err else "/zookeeper/config")

    def _multi(self, base: dict[str, str | None], req: Any, res: ApplyResult) -> None:
        if res.err:  # refused as a whole (e.g. by a read-only or failed server)
            self._emit("failure", **base, operation="multiOperation")
            return
        modes = {}
        for sub in getattr(req, "ops", ()):
            if sub.op in _CREATES:
                modes[sub.req.path] = _CREATE_MODES.get(sub.req.flags)
        failed = False
        ops = list(getattr(req, "ops", ()))
        for i, r in enumerate(res.subs or ()):
            # delete and setData results carry no path: the request op's is the same
            path = r.path or (getattr(ops[i].req, "path", None) if i < len(ops) else None)
            if r.op == OpCode.ERROR:
                failed = True
            elif r.op in _SUB_CREATES:
                self._emit("success", **base, operation="create", znode=path,
                           znode_type=modes.get(path or ""))
            elif r.op in _DELETES:
                self._emit("success", **base, operation="delete", znode=path)
            elif r.op == OpCode.SET_DATA:
                self._emit("success", **base, operation="setData", znode=path)
        if failed:
            self._emit("failure", **base, operation="multiOperation")
