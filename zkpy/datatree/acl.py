"""ACL checks and auth schemes: world, auth, digest, ip (with CIDR), super."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence

from zkpy.jute.constants import Err, KeeperError, Perm
from zkpy.jute.records import ACL

AuthId = tuple[str, str]  # (scheme, id)

AUTHENTICATING_SCHEMES = frozenset({"digest", "sasl", "x509"})


def digest_id(user_password: str) -> str:
    """'user:password' -> 'user:base64(sha1(user:password))'."""
    user = user_password.split(":", 1)[0]
    h = hashlib.sha1(user_password.encode("utf-8")).digest()
    return f"{user}:{base64.b64encode(h).decode('ascii')}"


def ip_matches(client_ip: str, acl_id: str) -> bool:
    """True if the client address falls in the ACL's address or CIDR block."""
    try:
        net = ipaddress.ip_network(acl_id, strict=False)
        addr = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.version != net.version:
        return False
    return addr in net


def _valid_ip_id(acl_id: str) -> bool:
    try:
        ipaddress.ip_network(acl_id, strict=False)
    except ValueError:
        return False
    return True


def _valid_digest_id(acl_id: str) -> bool:
    parts = acl_id.split(":")
    while parts and parts[-1] == "":
        parts.pop()  # Java String.split drops trailing empty strings
    return len(parts) == 2


def valid_acl_entry(acl: ACL) -> bool:
    if acl.scheme == "world":
        return acl.id == "anyone"
    if acl.scheme == "digest":
        return _valid_digest_id(acl.id)
    if acl.scheme == "ip":
        return _valid_ip_id(acl.id)
    return False


def fixup_acl(acls: Sequence[ACL] | None, auth_ids: Iterable[AuthId]) -> list[ACL]:
    """Validate an ACL list from a create/setACL and expand `auth` entries.

    Raises INVALIDACL for an empty list, an unknown scheme, a malformed id, or an
    `auth` entry when the caller has no authenticated identity.
    """
    if not acls:
        raise KeeperError(Err.INVALIDACL)
    out: list[ACL] = []
    for a in _dedupe(acls):
        if a.scheme == "auth":
            ids = [i for i in auth_ids if i[0] in AUTHENTICATING_SCHEMES]
            if not ids:
                raise KeeperError(Err.INVALIDACL)
            for scheme, ident in ids:
                e = ACL(a.perms, scheme, ident)
                if e not in out:
                    out.append(e)
        elif valid_acl_entry(a):
            if a not in out:
                out.append(a)
        else:
            raise KeeperError(Err.INVALIDACL)
    return out


def _dedupe(acls: Sequence[ACL]) -> list[ACL]:
    seen: list[ACL] = []
    for a in acls:
        a = ACL(a.perms, a.scheme or "", a.id or "")
        if a not in seen:
            seen.append(a)
    return seen


def check_acl(
    acls: Sequence[ACL] | None, perm: int, auth_ids: Sequence[AuthId], skip_acl: bool = False
) -> bool:
    """Java's checkACL: does any identity of the session grant perm?"""
    if skip_acl or not acls:
        return True
    for scheme, _ in auth_ids:
        if scheme == "super":
            return True
    for a in acls:
        if not (a.perms & perm):
            continue
        if a.scheme == "world" and a.id == "anyone":
            return True
        for scheme, ident in auth_ids:
            if scheme != a.scheme:
                continue
            if scheme == "ip":
                if ip_matches(ident, a.id):
                    return True
            elif ident == a.id:
                return True
    return False


def require(acls: Sequence[ACL] | None, perm: int, auth_ids: Sequence[AuthId], skip_acl: bool) -> None:
    if not check_acl(acls, perm, auth_ids, skip_acl):
        raise KeeperError(Err.NOAUTH)


def mask_digests(acls: Sequence[ACL]) -> list[ACL]:
    """getACL without ADMIN shows digest ids as user:x."""
    return [
        ACL(a.perms, a.scheme, a.id.split(":", 1)[0] + ":x") if a.scheme == "digest" else a
        for a in acls
    ]


ALL = Perm.ALL
