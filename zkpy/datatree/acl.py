"""ACL checks and auth schemes: world, auth, digest, ip (with CIDR), super, and sasl
(when SASLAuthenticationProvider is configured)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence

from zkpy.jute.constants import Err, KeeperError
from zkpy.jute.records import ACL, OPEN_ACL_UNSAFE

AuthId = tuple[str, str]  # (scheme, id)

AUTHENTICATING_SCHEMES = frozenset({"digest", "sasl", "x509"})


# Java MessageDigest names (matched case-insensitively, as getInstance) -> hashlib names,
# for DigestAuthenticationProvider.digestAlg
DIGEST_ALGORITHMS = {
    "SHA1": "sha1", "SHA-1": "sha1", "SHA": "sha1", "MD5": "md5",
    "SHA-224": "sha224", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512",
    "SHA-512/224": "sha512_224", "SHA-512/256": "sha512_256",
    "SHA3-224": "sha3_224", "SHA3-256": "sha3_256", "SHA3-384": "sha3_384", "SHA3-512": "sha3_512",
}


def digest_id(user_password: str, algorithm: str = "sha1") -> str:
    """'user:password' -> 'user:base64(H(user:password))', H the hashlib algorithm
    (DigestAuthenticationProvider.generateDigest; SHA1 unless digestAlg says otherwise)."""
    user = user_password.split(":", 1)[0]
    h = hashlib.new(algorithm, user_password.encode("utf-8")).digest()
    return f"{user}:{base64.b64encode(h).decode('ascii')}"


# zookeeper.letAnySaslUserDoX: an ACL `sasl:<this id>` matches every SASL-authenticated
# connection (SASLAuthenticationProvider.matches).  Java reads it from a system property
# on each check; zkpy sets it once at start-up (`allow_any_sasl_user`), a process-wide
# setting as Java's.
_any_sasl_user_id: str | None = None


def allow_any_sasl_user(acl_id: str | None) -> None:
    global _any_sasl_user_id
    _any_sasl_user_id = acl_id


_JAVA_INT = re.compile(r"[+-]?\d+")


def _java_int(text: str) -> int | None:
    """Java Integer.parseInt: an optional sign and decimal digits (leading zeros fine)."""
    if not _JAVA_INT.fullmatch(text):
        return None
    v = int(text)
    return v if -(1 << 31) <= v < (1 << 31) else None


def _acl_addr_bytes(addr: str) -> bytes | None:
    """IPAuthenticationProvider.addr2Bytes: dotted IPv4, each part parsed by parseInt.

    (Java 3.8 knows IPv4 only; IPv6 ids, which 3.9 accepts, are kept as an extension.)
    """
    parts = addr.split(".")
    if len(parts) == 4:
        out = bytearray()
        for part in parts:
            v = _java_int(part)
            if v is None or not 0 <= v <= 255:
                return None
            out.append(v)
        return bytes(out)
    if ":" in addr:
        try:
            return ipaddress.IPv6Address(addr).packed
        except ValueError:
            return None
    return None


def _parse_ip_acl(acl_id: str) -> tuple[bytes, int] | None:
    """(address bytes, prefix bits) of an ip ACL id `addr[/bits]`, or None if invalid."""
    parts = acl_id.split("/", 1)
    addr = _acl_addr_bytes(parts[0])
    if addr is None:
        return None
    bits = len(addr) * 8
    if len(parts) == 2:
        b = _java_int(parts[1])
        if b is None or not 0 <= b <= len(addr) * 8:
            return None
        bits = b
    return addr, bits


def _prefix(addr: bytes, bits: int) -> int:
    total = len(addr) * 8
    return int.from_bytes(addr, "big") >> (total - bits) if bits else 0


def ip_matches(client_ip: str, acl_id: str) -> bool:
    """True if the client address falls in the ACL's address or CIDR block."""
    parsed = _parse_ip_acl(acl_id)
    if parsed is None:
        return False
    acl_addr, bits = parsed
    try:
        addr = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    remote = addr.packed
    if len(remote) != len(acl_addr):
        return False
    return _prefix(remote, bits) == _prefix(acl_addr, bits)


def _valid_ip_id(acl_id: str) -> bool:
    return _parse_ip_acl(acl_id) is not None


def _valid_digest_id(acl_id: str) -> bool:
    parts = acl_id.split(":")
    while parts and parts[-1] == "":
        parts.pop()  # Java String.split drops trailing empty strings
    return len(parts) == 2


_KRB_NAME = re.compile(r"([^/@]*)(/([^/@]*))?@([^/@]*)")


def kerberos_parts(name: str) -> tuple[str, str | None, str | None]:
    """KerberosName: (service, host, realm); ValueError for a malformed name with '@'."""
    m = _KRB_NAME.fullmatch(name)
    if m is None:
        if "@" in name:
            raise ValueError(f"Malformed Kerberos name: {name}")
        return name, None, None
    return m.group(1), m.group(3), m.group(4)


def valid_sasl_id(ident: str) -> bool:
    """SASLAuthenticationProvider.isValid: anything KerberosName accepts."""
    try:
        kerberos_parts(ident)
    except ValueError:
        return False
    return True


def valid_dn(text: str) -> bool:
    """X509AuthenticationProvider.isValid: could `new X500Principal(text)` parse it?"""
    from cryptography import x509  # only servers with client TLS get here

    try:
        x509.Name.from_rfc4514_string(text)
    except ValueError:
        return False
    return True


def valid_acl_entry(acl: ACL, sasl: bool = False, x509: bool = False) -> bool:
    """Is the entry's id valid for its scheme (sasl, x509: that provider is configured)?"""
    if acl.scheme == "x509" and x509:
        return valid_dn(acl.id)
    if acl.scheme == "sasl" and sasl:
        return valid_sasl_id(acl.id)
    if acl.scheme == "world":
        return acl.id == "anyone"
    if acl.scheme == "digest":
        return _valid_digest_id(acl.id)
    if acl.scheme == "ip":
        return _valid_ip_id(acl.id)
    return False


def fixup_acl(acls: Sequence[ACL] | None, auth_ids: Iterable[AuthId],
              sasl: bool = False, x509: bool = False) -> tuple[ACL, ...]:
    """Validate an ACL list from a create/setACL and expand `auth` entries.

    Raises INVALIDACL for an empty list, an unknown scheme, a malformed id, or an
    `auth` entry when the caller has no authenticated identity.  Like Java, duplicates
    are removed from the list as sent only (not after `auth` expansion), and a null id
    of the world/digest/ip scheme (a NullPointerException in Java) is MARSHALLINGERROR.
    sasl: the sasl provider is configured (else sasl ids and ACLs have no provider: an
    `auth` entry skips them and a sasl entry is INVALIDACL, as in Java).
    """
    if acls is OPEN_ACL_UNSAFE:  # what the create decoder hands over for world:anyone
        return acls
    if not acls:
        raise KeeperError(Err.INVALIDACL)
    out: list[ACL] = []
    for a in _dedupe(acls):
        # a decoded entry may hold Java's null strings (None) despite ACL's types: look at
        # them as objects first (compiled code checks a field's type when it is read)
        fields: tuple[object, ...] = a
        if fields[1] is None:
            raise KeeperError(Err.INVALIDACL)
        if a.scheme == "auth":
            ids = [i for i in auth_ids if i[0] in AUTHENTICATING_SCHEMES
                   and (sasl or i[0] != "sasl")]
            if not ids:
                raise KeeperError(Err.INVALIDACL)
            out.extend(ACL(a.perms, scheme, ident) for scheme, ident in ids)
        elif fields[2] is None:
            raise KeeperError(Err.MARSHALLINGERROR if a.scheme in ("world", "digest", "ip")
                              else Err.INVALIDACL)
        elif valid_acl_entry(a, sasl, x509):
            out.append(a)
        else:
            raise KeeperError(Err.INVALIDACL)
    return tuple(out)


def _dedupe(acls: Sequence[ACL]) -> list[ACL]:
    seen: list[ACL] = []
    for a in acls:
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
            elif ident == a.id or (scheme == "sasl" and (ident == "super"
                                                         or a.id == _any_sasl_user_id)):
                return True
    return False


def world_readable(acls: Sequence[ACL]) -> bool:
    """Does the ACL let every session READ (world:anyone with READ, or no ACL at all)?"""
    if not acls:
        return True
    for a in acls:
        if a.perms & 1 and a.scheme == "world" and a.id == "anyone":  # 1: Perm.READ
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

