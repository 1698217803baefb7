"""The DIGEST-MD5 client side (RFC 2831), as the JDK's DigestMD5Client runs it for a
ZooKeeper quorum learner: pure, tokens in, tokens out.

    server: challenge (realm, nonce, charset, algorithm)   client: digest-response
    server: rspauth=...                                     client: (checks it; complete)

The client has no initial response.  It answers with the first realm the server offers
(or the server name when none is offered), qop=auth, charset=utf-8 when offered, and a
digest-uri `<protocol>/<server name>`; it refuses a challenge without a nonce, with an
algorithm other than md5-sess, or without qop=auth among those offered, and an rspauth
that does not prove the server knew the password.  Anything wrong raises `SaslError`.
"""

from __future__ import annotations

import base64
import hmac
import os

from zkpy.server.sasl import MAX_RESPONSE, SaslError, digest_ha1, digest_response, parse_directives


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class DigestMD5Client:
    """One authentication as `user`; `evaluate(token)` until `complete`."""

    def __init__(self, user: str, password: str, protocol: str, server_name: str,
                 cnonce: str | None = None) -> None:
        self.user = user
        self.password = password
        self.uri = f"{protocol}/{server_name}"
        self.server_name = server_name
        self.cnonce = cnonce or base64.b64encode(os.urandom(30)).decode("ascii")
        self.complete = False
        self._rspauth: str | None = None

    def evaluate(self, token: bytes) -> bytes | None:
        """The answer to the server's token: the digest-response to the challenge, then
        None once the server's rspauth checks out."""
        if len(token) > MAX_RESPONSE:
            raise SaslError(f"DIGEST-MD5: server token of {len(token)} bytes is longer than {MAX_RESPONSE}")
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslError("DIGEST-MD5: server token is not UTF-8") from None
        if self.complete:
            raise SaslError("DIGEST-MD5: authentication already completed")
        if self._rspauth is None:
            return self._respond(parse_directives(text))
        d = parse_directives(text)
        if not hmac.compare_digest(d.get("rspauth", ""), self._rspauth):
            raise SaslError("DIGEST-MD5: the server's rspauth does not match (it does not know "
                            "the password)")
        self.complete = True
        return None

    def _respond(self, d: dict[str, str]) -> bytes:
        nonce = d.get("nonce")
        if not nonce:
            raise SaslError("DIGEST-MD5: the challenge has no nonce")
        if d.get("algorithm", "").lower() != "md5-sess":
            raise SaslError(f"DIGEST-MD5: algorithm {d.get('algorithm')!r} is not md5-sess")
        qops = [q.strip() for q in d.get("qop", "auth").split(",")]
        if "auth" not in qops:
            raise SaslError(f"DIGEST-MD5: the server offers qop {d['qop']!r}, not auth")
        realm = d.get("realm", self.server_name)
        utf8 = d.get("charset", "").lower() == "utf-8"
        nc = "00000001"
        ha1 = digest_ha1(self.user, realm, self.password, nonce, self.cnonce, None, utf8)
        response = digest_response(ha1, nonce, nc, self.cnonce, "AUTHENTICATE:" + self.uri)
        self._rspauth = digest_response(ha1, nonce, nc, self.cnonce, ":" + self.uri)
        parts = [f'username="{_quote(self.user)}"', f'realm="{_quote(realm)}"',
                 f'nonce="{_quote(nonce)}"', f"nc={nc}", f'cnonce="{_quote(self.cnonce)}"',
                 f'digest-uri="{_quote(self.uri)}"', "maxbuf=65536", f"response={response}",
                 "qop=auth"]
        if utf8:
            parts.append("charset=utf-8")
        return ",".join(parts).encode("utf-8" if utf8 else "latin-1", "replace")
