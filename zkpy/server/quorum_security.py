"""Quorum security, the pure parts: the QuorumAuthPacket codec, the quorum SASL settings,
and ZooKeeper's host-name check of a quorum peer's certificate.  The I/O that uses them
is `quorum_link.py`.

QuorumAuthPacket (zookeeper.jute) is `long magic, int status, buffer token`; its first
eight bytes tell it from what would come otherwise (on the election port after the
initial message, a notification frame; on the quorum port, FOLLOWERINFO).  The
SASL exchange is DIGEST-MD5 with protocol "zookeeper-quorum" and server name
"zk-quorum-sasl-md5" (SaslQuorumAuthLearner / SaslQuorumAuthServer).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

# QuorumAuth.QUORUM_AUTH_MAGIC_NUMBER, Java's -0xa0dbcafecafe1234L: that literal overflows
# to a negative long, so the value is positive (despite the comment next to it in Java)
MAGIC = 0x5F2435013501EDCC
IN_PROGRESS, SUCCESS, ERROR = 0, 1, -1
STATUS_NAMES = {IN_PROGRESS: "IN_PROGRESS", SUCCESS: "SUCCESS", ERROR: "ERROR"}
PROTOCOL = "zookeeper-quorum"  # QuorumAuth.QUORUM_SERVER_PROTOCOL_NAME
SERVER_NAME = "zk-quorum-sasl-md5"  # QuorumAuth.QUORUM_SERVER_SASL_DIGEST: realm and digest-uri host
MAX_TOKEN = 8192  # DIGEST-MD5 tokens are a few hundred bytes
_HEAD = struct.Struct(">qii")
_MAGIC = struct.Struct(">q")


class QuorumAuthError(ConnectionError):
    """A quorum peer failed (or refused) authentication; the connection is closed."""


def encode_auth_packet(status: int, token: bytes | None) -> bytes:
    if token is None:
        return _HEAD.pack(MAGIC, status, -1)
    return _HEAD.pack(MAGIC, status, len(token)) + token


def decode_auth_packet(buf: bytes | bytearray) -> tuple[int, bytes, int] | None:
    """(status, token, bytes used) of the packet at the start of buf; None while it is
    incomplete.  A wrong magic, an unknown status or a token over MAX_TOKEN bytes raise
    QuorumAuthError."""
    if len(buf) < _HEAD.size:
        return None
    magic, status, length = _HEAD.unpack_from(buf, 0)
    if magic != MAGIC:
        raise QuorumAuthError("the peer's packet is not a quorum auth packet (no SASL on its side?)")
    if status not in STATUS_NAMES:
        raise QuorumAuthError(f"unknown quorum auth status {status}")
    if length > MAX_TOKEN:
        raise QuorumAuthError(f"quorum auth token of {length} bytes (at most {MAX_TOKEN})")
    end = _HEAD.size + max(length, 0)
    if len(buf) < end:
        return None
    return status, bytes(buf[_HEAD.size:end]), end


def is_auth_packet(head: bytes | bytearray) -> bool:
    """QuorumAuth.nextPacketIsAuth on (at least) the next 8 bytes."""
    return len(head) >= 8 and _MAGIC.unpack_from(head, 0)[0] == MAGIC


@dataclass(frozen=True, slots=True)
class QuorumSaslSettings:
    """quorum.auth.* with the JAAS sections they name (DIGEST-MD5 only)."""

    learner_require: bool  # quorum.auth.learnerRequireSasl: authenticate when dialing
    server_require: bool  # quorum.auth.serverRequireSasl: refuse peers that do not
    credentials: dict[str, str] = field(default_factory=dict)  # QuorumServer's user_NAME="pw"
    learner_user: str = ""  # QuorumLearner's username / password
    learner_password: str = ""


# ---- ZKHostnameVerifier ---------------------------------------------------------------

def _match_identity(host: str, identity: str) -> bool:
    """matchIdentityStrict: one '*' may stand for part of a single label."""
    star = identity.find("*")
    if star < 0:
        return host == identity
    prefix, suffix = identity[:star], identity[star + 1:]
    if not host.startswith(prefix) or not host.endswith(suffix) or len(host) < len(prefix) + len(suffix):
        return False
    return "." not in host[len(prefix):len(host) - len(suffix)]


def host_matches(host: str, der: bytes) -> bool:
    """ZKHostnameVerifier.verify: an IP address must be one of the certificate's IP
    subject alternative names; a host name must match one of its DNS names (a wildcard
    covers one label); only a certificate with neither is matched by its subject's CN."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = [ip for ip in san.get_values_for_type(x509.IPAddress)]
        dns = [str(d).lower() for d in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        ips, dns = [], []
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if ips or dns:
        if address is not None:
            return any(ip == address for ip in ips)
        return any(_match_identity(host.lower(), d) for d in dns)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        return False
    cn = cns[-1].value  # the most specific CN, as extractCN takes it
    cn = cn if isinstance(cn, str) else cn.decode("latin-1")
    return _match_identity(host.lower(), cn.lower())
