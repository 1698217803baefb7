"""Requests about the connection itself rather than the tree: watch registration
(setWatches, addWatch, check/removeWatches), auth packets, SASL, required
authentication (enforce.auth) and whoAmI."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from zkpy.datatree.acl import digest_id
from zkpy.datatree.tree import DataTree
from zkpy.jute.codec import INT, Writer
from zkpy.jute.constants import XID_AUTH, Err, KeeperError, WatcherType
from zkpy.jute.records import AuthPacket, PathType, SetWatches
from zkpy.server.config import Config
from zkpy.server.replies import frame, notification
from zkpy.server.sasl import DigestMD5Server, SaslError

if TYPE_CHECKING:
    from zkpy.server.connection import ClientConnection

log = logging.getLogger("zkpy.server")


def set_watches(tree: DataTree, conn: ClientConnection, req: SetWatches) -> None:
    """SetWatches(2) after a reconnect: catch-up events instead of watches on changed paths."""
    rel = req.relative_zxid
    out: list[bytes] = []
    for p in req.data:
        n = tree.nodes.get(p)
        if n is None:
            out.append(notification(2, p))
        elif n.mzxid > rel:
            out.append(notification(3, p))
        else:
            conn.watch_data(p)
    for p in req.exist:
        if p in tree.nodes:
            out.append(notification(1, p))
        else:
            conn.watch_data(p)
    for p in req.child:
        n = tree.nodes.get(p)
        if n is None:
            out.append(notification(2, p))
        elif n.pzxid > rel:
            out.append(notification(4, p))
        else:
            conn.watch_child(p)
    for p in req.persistent:
        conn.watch_persistent(p, False)
    for p in req.persistent_recursive:
        conn.watch_persistent(p, True)
    for data in out:
        conn.notify(data)


def add_watch(conn: ClientConnection, req: PathType) -> bytes:
    """addWatch: a persistent (0) or persistent-recursive (1) watch; the reply body is int 0."""
    if req.type not in (0, 1):
        # Java's AddWatchMode.fromZooKeeperMode throws; the catch-all answers MARSHALLINGERROR.
        raise KeeperError(Err.MARSHALLINGERROR)
    conn.watch_persistent(req.path, req.type == 1)
    return b"\x00\x00\x00\x00"


def check_watches(tree: DataTree, conn: ClientConnection, req: PathType, remove: bool) -> None:
    """checkWatches / removeWatches; NOWATCHER when the connection has no such watch."""
    wm = tree.watches
    if req.type not in tuple(WatcherType):
        # Java's WatcherType.fromInt throws; the catch-all answers MARSHALLINGERROR.
        raise KeeperError(Err.MARSHALLINGERROR)
    if remove:
        found = wm.remove(req.path, conn, req.type)
    else:
        found = wm.contains(req.path, conn, req.type)
    if not found:
        raise KeeperError(Err.NOWATCHER)


def authenticate(config: Config, conn: ClientConnection, pkt: AuthPacket) -> None:
    """An auth packet: digest (and super digest) or ip; any other scheme fails and closes."""
    scheme = pkt.scheme
    if scheme == "digest" and config.digest_enabled:
        ident = digest_id(pkt.auth.decode("utf-8", "replace"), config.digest_algorithm)
        if config.super_digest and ident == config.super_digest:
            conn.add_auth("super", "")
        conn.add_auth("digest", ident)
    elif scheme == "ip":
        conn.add_auth("ip", conn.peer_ip)
    else:
        log.info("auth failed for %s: unknown scheme %r", conn.peer, scheme)
        conn.send(frame(XID_AUTH, 0, Err.AUTHFAILED))
        conn.server.stats.auth_failed += 1
        conn.close_after_flush()
        return
    conn.send(frame(XID_AUTH, 0, 0))


def sasl(config: Config, conn: ClientConnection, xid: int, token: bytes) -> None:
    """A SASL token (opcode 102), answered at once with zxid 0 as ZooKeeperServer.processSasl.

    Success adds the id ("sasl", authorization id) (and ("super", "") for a
    zookeeper.superUser).  A refused token answers AUTHFAILED, or
    SESSIONCLOSEDREQUIRESASLAUTH when SASL is required, with a null token and closes the
    connection (allowSaslFailedClients keeps it open when SASL is not required).
    Without a JAAS `Server` section Java has no SASL server and answers OK with a null
    token (its NullPointerException is caught); so does zkpy.
    """
    settings = config.sasl
    if settings is None:
        log.error("%s: SASL token but no SASL login is configured "
                  "(java.security.auth.login.config)", conn.peer)
        conn.send(frame(xid, 0, 0, INT.pack(-1)))
        return
    server = conn.identity.sasl
    if server is None:
        server = conn.identity.sasl = DigestMD5Server(settings)
    try:
        reply: bytes | None = server.evaluate(token)
    except SaslError as e:
        log.warning("Client %s failed to SASL authenticate: %s", conn.peer, e)
        required = "sasl" in config.enforce_auth_schemes
        if config.allow_sasl_failed and not required:
            log.warning("Maintaining client connection despite SASL authentication failure.")
            reply = None
        else:
            err = Err.SESSIONCLOSEDREQUIRESASLAUTH if required else Err.AUTHFAILED
            conn.send(frame(xid, 0, err, INT.pack(-1)))
            conn.close_after_flush()
            return
    if server.complete and server.authorization_id is not None \
            and ("sasl", server.authorization_id) not in conn.auth_ids:
        ident = server.authorization_id
        log.info("Session 0x%x: adding SASL authorization for authorizationID: %s",
                 conn.session_id & 0xFFFFFFFFFFFFFFFF, ident)
        conn.add_auth("sasl", ident)
        if ident in settings.super_users:
            conn.add_auth("super", "")
    body = INT.pack(-1) if reply is None else INT.pack(len(reply)) + reply
    conn.send(frame(xid, 0, 0, body))


def enforce_auth(config: Config, conn: ClientConnection, xid: int) -> bool:
    """enforce.auth: a request from a connection with no id of a required scheme is
    answered SESSIONCLOSEDREQUIRESASLAUTH (zxid 0) and the connection closed (the session
    lives on until it expires), as AuthenticationHelper.enforceAuthentication."""
    schemes = config.enforce_auth_schemes
    if any(scheme in schemes for scheme, _ in conn.auth_ids):
        return True
    log.error("Client authentication scheme(s) %s does not match with any of the expected "
              "authentication scheme %s, closing session.",
              [s for s, _ in conn.auth_ids], sorted(schemes))
    conn.send(frame(xid, 0, Err.SESSIONCLOSEDREQUIRESASLAUTH))
    conn.close_after_flush()
    return False


def who_am_i(auth_ids: list[tuple[str, str]]) -> bytes:
    """The connection's identities, user part only for digest."""
    w = Writer().int(len(auth_ids))
    for scheme, ident in auth_ids:
        user = ident.split(":", 1)[0] if scheme == "digest" else ident
        w.ustring(scheme).ustring(user)
    return w.getvalue()
