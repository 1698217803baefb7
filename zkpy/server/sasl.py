"""SASL on the client port: the DIGEST-MD5 server side (RFC 2831) as ZooKeeper runs it.

ZooKeeper creates one SASL server per connection with protocol "zookeeper" and server
name "zk-sasl-md5"; DIGEST-MD5 offers that name as its only realm.  The exchange
(opcode 102, GetSASLRequest / SetSASLResponse) is:

    client: empty token               server: challenge (realm, nonce, charset, algorithm)
    client: digest-response           server: rspauth=...   (the server is now complete)

Anything else (a token after completion, a wrong password, an unknown user, a
malformed or oversize response) raises `SaslError`; the caller answers
AUTHFAILED and closes the connection.  Only qop=auth is offered: ZooKeeper never wraps
traffic.  The code is pure: tokens in, tokens out, no socket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field

from zkpy.datatree.acl import kerberos_parts

REALM = "zk-sasl-md5"
PROTOCOL = "zookeeper"
MAX_RESPONSE = 4096  # the JDK's DigestMD5Server refuses longer digest-responses


class SaslError(Exception):
    """The client's token is refused; authentication failed."""


@dataclass(slots=True)
class SaslSettings:
    """What the SASL server needs from the configuration.

    credentials: user -> password from the JAAS `Server` section's `user_NAME` options;
    super_password: zookeeper.SASLAuthenticationProvider.superPassword (user "super");
    super_users: the values of zookeeper.superUser and zookeeper.superUser.*;
    remove_host / remove_realm: zookeeper.kerberos.removeHostFromPrincipal /
    removeRealmFromPrincipal; default_realm: the Kerberos default realm ("" without
    a krb5.conf, as Java).
    """

    credentials: dict[str, str] = field(default_factory=dict)
    super_password: str | None = None
    super_users: frozenset[str] = frozenset()
    remove_host: bool = False
    remove_realm: bool = False
    default_realm: str = ""

    def password(self, user: str) -> str | None:
        if user == "super" and self.super_password is not None:
            return self.super_password
        return self.credentials.get(user)


def canonical_name(authn_id: str, authz_id: str, settings: SaslSettings) -> str:
    """The sasl identity: SaslServerCallbackHandler's AuthorizeCallback.

    The short name comes from the DEFAULT auth_to_local rule, which only maps names of the
    default realm; then host and realm are appended unless removed by the kerberos.*
    switches.  When no rule applies Java logs an error and keeps the authorization id.
    """
    service, host, realm = kerberos_parts(authn_id)
    if host is None and realm is None:
        short = service
    elif realm == settings.default_realm:
        short = service
    else:
        return authz_id
    if host is not None and not settings.remove_host:
        short += "/" + host
    if realm is not None and not settings.remove_realm:
        short += "@" + realm
    return short


def _unquote(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


_DIRECTIVE = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s"]*))\s*(?:,|$)', re.DOTALL)


def parse_directives(text: str) -> dict[str, str]:
    """`k=v, k="quoted"` -> dict; SaslError on malformed input or a repeated directive."""
    out: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        if text[pos] == ",":  # empty list elements are allowed (RFC 2831 #rule)
            pos += 1
            continue
        m = _DIRECTIVE.match(text, pos)
        if m is None or m.end() == pos:
            raise SaslError(f"DIGEST-MD5: malformed digest-response near byte {pos}")
        key = m.group(1).lower()
        value = _unquote(m.group(2)) if m.group(2) is not None else m.group(3)
        if key in out:
            raise SaslError(f"DIGEST-MD5: directive {key} appears twice")
        out[key] = value
        pos = m.end()
    return out


def _h(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def _hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def digest_ha1(user: str, realm: str, password: str, nonce: str, cnonce: str, authzid: str | None,
               utf8: bool) -> str:
    """RFC 2831's HEX(H(A1)) (md5-sess); ISO 8859-1 unless the charset is utf-8."""
    enc = "utf-8" if utf8 else "latin-1"
    try:
        secret = _h(f"{user}:{realm}:{password}".encode(enc))
    except UnicodeEncodeError:
        secret = _h(f"{user}:{realm}:{password}".encode())
    a1 = secret + f":{nonce}:{cnonce}".encode(enc, "replace")
    if authzid:
        a1 += f":{authzid}".encode(enc, "replace")
    return _hex(a1)


def digest_response(ha1: str, nonce: str, nc: str, cnonce: str, a2: str) -> str:
    """RFC 2831's response-value (qop=auth): with A2 "AUTHENTICATE:<uri>" the client's
    response, with ":<uri>" the server's rspauth."""
    return _hex(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{_hex(a2.encode())}".encode())


class DigestMD5Server:
    """One connection's DIGEST-MD5 server: `evaluate(token)` until `complete`."""

    def __init__(self, settings: SaslSettings, nonce: str | None = None, realm: str = REALM,
                 protocol: str = PROTOCOL) -> None:
        self.settings = settings
        self.realm = realm  # the server name: the only realm offered, the digest-uri's host
        self.protocol = protocol
        self.nonce = nonce or base64.b64encode(os.urandom(30)).decode("ascii")
        self.step = 0
        self.complete = False
        self.user: str | None = None  # the authentication id
        self.authorization_id: str | None = None
        self.authzid: str | None = None  # as the client sent it, if it did

    def evaluate(self, token: bytes) -> bytes:
        """The server's next token; raises SaslError when the client is refused."""
        self.step += 1
        if len(token) > MAX_RESPONSE:
            raise SaslError(f"DIGEST-MD5: token of {len(token)} bytes is longer than {MAX_RESPONSE}")
        if self.step == 1:  # an initial response is ignored, as by the JDK
            return self.challenge()
        if self.step == 2:
            return self._verify(token)
        raise SaslError("DIGEST-MD5: authentication already completed")

    def challenge(self) -> bytes:
        # as the JDK's: no qop directive (RFC 2831's default is qop=auth)
        return f'realm="{self.realm}",nonce="{self.nonce}",charset=utf-8,algorithm=md5-sess'.encode()

    def _verify(self, token: bytes) -> bytes:
        if len(token) > MAX_RESPONSE:
            raise SaslError(f"DIGEST-MD5: digest-response of {len(token)} bytes is longer "
                            f"than {MAX_RESPONSE}")
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslError("DIGEST-MD5: digest-response is not UTF-8") from None
        d = parse_directives(text)
        for key in ("username", "nonce", "nc", "cnonce", "digest-uri", "response"):
            if not d.get(key):
                raise SaslError(f"DIGEST-MD5: digest-response lacks {key}")
        utf8 = d.get("charset", "").lower() == "utf-8"
        if "charset" in d and not utf8:
            raise SaslError(f"DIGEST-MD5: charset {d['charset']!r} is not utf-8")
        if d.get("qop", "auth") != "auth":
            raise SaslError(f"DIGEST-MD5: qop {d['qop']!r} was not offered (only auth)")
        realm = self.realm
        if d.get("realm", realm) != realm:
            raise SaslError(f"DIGEST-MD5: unknown realm {d['realm']!r}")
        if d["nonce"] != self.nonce:
            raise SaslError("DIGEST-MD5: nonce does not match the challenge")
        if d["nc"] != "00000001":
            raise SaslError(f"DIGEST-MD5: nonce-count {d['nc']} is not 00000001")
        uri = d["digest-uri"]
        serv, _, rest = uri.partition("/")
        host = rest.split("/", 1)[0]
        if serv.lower() != self.protocol or host.lower() != realm.lower():
            raise SaslError(f"DIGEST-MD5: digest-uri {uri!r} is not {self.protocol}/{realm}")
        user = d["username"]
        password = self.settings.password(user)
        if password is None:
            raise SaslError(f"DIGEST-MD5: no password for user {user!r} in realm {realm}")
        authzid = d.get("authzid")
        ha1 = digest_ha1(user, d.get("realm", realm), password, self.nonce, d["cnonce"], authzid, utf8)
        expected = digest_response(ha1, self.nonce, d["nc"], d["cnonce"], "AUTHENTICATE:" + uri)
        if not hmac.compare_digest(expected, d["response"].lower()):
            raise SaslError(f"DIGEST-MD5: wrong response for user {user!r} (bad password?)")
        rspauth = digest_response(ha1, self.nonce, d["nc"], d["cnonce"], ":" + uri)
        self.complete = True
        self.user = user
        self.authzid = authzid
        self.authorization_id = canonical_name(user, authzid or user, self.settings)
        return f"rspauth={rspauth}".encode("ascii")
