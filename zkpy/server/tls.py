"""Client TLS: the `ssl.*` settings Apache ZooKeeper 3.8 reads (ClientX509Util), the
server's `ssl.SSLContext` built from them, and the x509 identity of a client certificate.

What follows Java (X509Util, SSLContextAndOptions, KeyStoreFileType, X509AuthenticationProvider):
- the store type is `ssl.keyStore.type` / `ssl.trustStore.type` or, unset, the file's
  extension (.pem, .p12, .jks); PEM and PKCS12 are read (PKCS12 with `cryptography`), a
  JKS file is refused with the keytool command that converts it (a `.jks` file that is
  really PKCS12, as JDK 9+ keytool writes by default, is read as PKCS12);
- `ssl.clientAuth` none/want/need, default need; `ssl.protocol` default TLSv1.2 and
  `ssl.enabledProtocols` default [ssl.protocol]; `ssl.ciphersuites` default Java 9+'s
  list (ECDHE with AES-GCM, then AES-CBC), Java names mapped to OpenSSL's;
- the identity is the subject as `X500Principal.getName()` (RFC 2253) writes it; the
  DN named by `X509AuthenticationProvider.superUser` is also `super`.
A setting zkpy cannot honour (revocation checks, a custom context supplier or auth
provider, BCFKS) stops start-up rather than being ignored.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zkpy.server.config import ConfigError

log = logging.getLogger("zkpy.tls")

# Java (IANA) cipher suite names -> OpenSSL names, TLS 1.2 suites OpenSSL 3 offers.
JAVA_TO_OPENSSL = {
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384": "DHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "DHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256": "DHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384": "ECDHE-ECDSA-AES256-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384": "ECDHE-RSA-AES256-SHA384",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256": "DHE-RSA-AES256-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256": "DHE-RSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA": "DHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA": "DHE-RSA-AES128-SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA256": "AES256-SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
}
# TLS 1.3 suites: OpenSSL enables exactly these by default and Python cannot narrow them.
TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                          "TLS_CHACHA20_POLY1305_SHA256"})
# X509Util.getDefaultCipherSuites() on Java 9+: GCM first, then CBC.
DEFAULT_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
)
PROTOCOLS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
             "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
HANDSHAKE_LIMIT = "netty.server.outstandingHandshake.limit"
STORE_EXTENSIONS = {".jks": "JKS", ".pem": "PEM", ".p12": "PKCS12", ".bcfks": "BCFKS"}
CLIENT_AUTH = {"none": ssl.CERT_NONE, "want": ssl.CERT_OPTIONAL, "need": ssl.CERT_REQUIRED}
# ssl.* keys that ask for something zkpy cannot do: refused rather than ignored.
UNSUPPORTED = {
    "ssl.crl": "certificate revocation lists are not checked by zkpy",
    "ssl.ocsp": "OCSP is not checked by zkpy",
}


@dataclass(frozen=True, slots=True)
class Store:
    """A key or trust store: where it is, its password and its type (PEM or PKCS12)."""

    key: str  # the config key naming it, for errors: ssl.keyStore / ssl.trustStore
    path: Path
    password: str
    kind: str


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Everything the client TLS listener needs, parsed and checked at start-up."""

    key_store: Store
    trust_store: Store | None
    client_auth: str  # none / want / need
    minimum: ssl.TLSVersion
    maximum: ssl.TLSVersion
    ciphers: str  # OpenSSL cipher string
    hostname_verification: bool  # parsed as Java does; a server never checks client names
    super_user: str | None  # X509AuthenticationProvider.superUser
    cert_reload: bool  # client.certReload: rebuild the context when a store file changes
    # netty.server.outstandingHandshake.limit: connections accepted but not yet through
    # their handshake (or, with port unification, not yet known to be plain); 0: no limit
    handshake_limit: int = 0


def _password(raw: dict[str, str], key: str) -> str:
    path = raw.get(f"{key}.passwordPath", "").strip()
    if path:  # X509Util.getPasswordFromConfigPropertyOrFile: the file wins
        try:
            return Path(path).read_text().strip()
        except OSError as e:
            raise ConfigError(f"{key}.passwordPath: cannot read {path}: {e.strerror}") from None
    return raw.get(f"{key}.password", "")


def _store(raw: dict[str, str], key: str) -> Store | None:
    location = raw.get(f"{key}.location", "").strip()
    if not location:
        return None
    path = Path(location)
    kind = raw.get(f"{key}.type", "").strip().upper()
    if not kind:
        kind = STORE_EXTENSIONS.get(path.suffix, "")
        if not kind:
            raise ConfigError(f"{key}.type: cannot tell the store type from the file name {location}; "
                              "set it to PEM or PKCS12")
    if kind not in ("PEM", "PKCS12", "JKS", "BCFKS"):
        raise ConfigError(f"{key}.type: '{kind}' is not PEM, PKCS12, JKS or BCFKS")
    if not path.is_file():
        raise ConfigError(f"{key}.location: {location} does not exist or is not a file")
    if kind == "JKS" and _looks_like_pkcs12(path):
        kind = "PKCS12"  # JDK 9+ keytool writes PKCS12 whatever the name; Java reads both
    if kind == "JKS":
        raise ConfigError(
            f"{key}.type: {location} is a JKS store, which zkpy cannot read; convert it once with "
            f"`keytool -importkeystore -srckeystore {location} -srcstoretype JKS "
            f"-destkeystore {path.with_suffix('.p12')} -deststoretype PKCS12` and set "
            f"{key}.location to the .p12 file")
    if kind == "BCFKS":
        raise ConfigError(f"{key}.type: BCFKS stores are not supported by zkpy; use PEM or PKCS12")
    return Store(key, path, _password(raw, key), kind)


def _looks_like_pkcs12(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:1] == b"\x30" and head != b"\xfe\xed\xfe\xed"


def parse_tls_settings(raw: dict[str, str], prefix: str = "ssl.") -> TlsSettings:
    """Read and check the ssl.* keys (or, with prefix "ssl.quorum.", QuorumX509Util's);
    every problem is a ConfigError naming its key."""
    quorum = prefix != "ssl."
    for key, why in UNSUPPORTED.items():
        key = prefix + key[len("ssl."):]
        if raw.get(key, "").strip().lower() == "true":
            raise ConfigError(f"{key}: {why}; remove the key or use Apache ZooKeeper")
    if raw.get(f"{prefix}context.supplier.class", "").strip():
        raise ConfigError(f"{prefix}context.supplier.class: zkpy cannot load a Java SSLContext supplier")
    provider = raw.get("ssl.authProvider", "x509").strip()
    if provider != "x509" and not quorum:
        raise ConfigError(f"ssl.authProvider: zkpy has no authentication provider '{provider}' "
                          "(only x509)")
    key_store = _store(raw, f"{prefix}keyStore")
    if key_store is None:
        raise ConfigError(f"{prefix}keyStore.location: not set; "
                          + ("quorum TLS needs this server's key and certificate" if quorum
                             else "a TLS client port needs the server's key and certificate"))
    trust_store = _store(raw, f"{prefix}trustStore")
    client_auth = raw.get(f"{prefix}clientAuth", "").strip().lower() or "need"
    if client_auth not in CLIENT_AUTH:
        raise ConfigError(f"{prefix}clientAuth: '{raw[prefix + 'clientAuth']}' is not none, want or need")
    if trust_store is None and (client_auth != "none" or quorum):
        raise ConfigError(f"{prefix}trustStore.location: not set; "
                          + ("the other members' certificates must be checked against a trust store"
                             if quorum else f"with ssl.clientAuth={client_auth} client certificates "
                             "must be checked against a trust store"))
    protocol = raw.get(f"{prefix}protocol", "TLSv1.2").strip()
    enabled = [p.strip() for p in raw.get(f"{prefix}enabledProtocols", protocol).split(",") if p.strip()]
    versions = []
    for p in enabled:
        if p == "TLS":
            versions += [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]
        elif p in PROTOCOLS:
            versions.append(PROTOCOLS[p])
        else:
            k = f"{prefix}enabledProtocols" if f"{prefix}enabledProtocols" in raw else f"{prefix}protocol"
            raise ConfigError(f"{k}: unknown protocol '{p}' (use TLSv1.2, TLSv1.3)")
    return TlsSettings(
        key_store=key_store,
        trust_store=trust_store,
        client_auth=client_auth,
        minimum=min(versions),
        maximum=max(versions),
        ciphers=_ciphers(raw.get(f"{prefix}ciphersuites"), f"{prefix}ciphersuites"),
        hostname_verification=raw.get(f"{prefix}hostnameVerification", "true").strip().lower() != "false",
        super_user=None if quorum else raw.get("X509AuthenticationProvider.superUser") or None,
        cert_reload=raw.get("sslQuorumReloadCertFiles" if quorum else "client.certReload",
                            "").strip().lower() == "true",
        handshake_limit=0 if quorum else _handshake_limit(raw),
    )


def _handshake_limit(raw: dict[str, str]) -> int:
    """Netty's zookeeper.netty.server.outstandingHandshake.limit: -1 (the default) or 0
    mean none."""
    value = raw.get(HANDSHAKE_LIMIT, "").strip()
    if not value:
        return 0
    try:
        return max(int(value), 0)
    except ValueError:
        raise ConfigError(f"{HANDSHAKE_LIMIT}: '{value}' is not an integer") from None


def _ciphers(value: str | None, key: str) -> str:
    names = DEFAULT_SUITES if value is None else tuple(s.strip() for s in value.split(",") if s.strip())
    out = []
    for name in names:
        if name in TLS13_SUITES:
            continue  # always on with TLS 1.3 (see TLS13_SUITES)
        if name not in JAVA_TO_OPENSSL:
            raise ConfigError(f"{key}: unknown cipher suite {name} (zkpy knows the TLS 1.3 "
                              "suites and the ECDHE/DHE/RSA AES-GCM, AES-CBC and CHACHA20 suites)")
        out.append(JAVA_TO_OPENSSL[name])
    if not out and names and not set(names) <= TLS13_SUITES:
        raise ConfigError(f"{key}: no usable cipher suite")
    return ":".join(out) if out else "!ALL"  # TLS 1.3 suites only: no TLS 1.2 suite


def build_context(settings: TlsSettings, client: bool = False) -> ssl.SSLContext:
    """A server context (or, `client`, the context a quorum member dials with: its own
    certificate, the peer's checked against the trust store, names checked by the caller
    as ZooKeeper's ZKHostnameVerifier does); a bad store is a ConfigError naming its key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT if client else ssl.PROTOCOL_TLS_SERVER)
    if client:
        ctx.check_hostname = False
    ctx.minimum_version = settings.minimum
    ctx.maximum_version = settings.maximum
    try:
        ctx.set_ciphers(settings.ciphers)
    except ssl.SSLError:
        if settings.maximum < ssl.TLSVersion.TLSv1_3:
            raise ConfigError(f"{settings.key_store.key[:-len('keyStore')]}ciphersuites: OpenSSL "
                              "accepts none of these suites") from None
    ctx.options |= ssl.OP_NO_RENEGOTIATION  # as Java's jdk.tls.rejectClientInitiatedRenegotiation
    _load_key_store(ctx, settings.key_store)
    if settings.trust_store is not None:
        _load_trust_store(ctx, settings.trust_store)
    ctx.verify_mode = ssl.CERT_REQUIRED if client else CLIENT_AUTH[settings.client_auth]
    return ctx


def _load_key_store(ctx: ssl.SSLContext, store: Store) -> None:
    if store.kind == "PEM":
        try:
            ctx.load_cert_chain(store.path, password=store.password or None)
        except ssl.SSLError as e:
            raise ConfigError(f"{store.key}.password: cannot load the key and certificate from "
                              f"{store.path} (wrong password or not a PEM key store: {e.reason})") from None
        return
    from cryptography.hazmat.primitives import serialization

    key, cert, chain = _pkcs12(store)
    if key is None or cert is None:
        raise ConfigError(f"{store.key}.location: {store.path} holds no private key with its certificate")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    for c in (cert, *chain):
        pem += c.public_bytes(serialization.Encoding.PEM)
    # ssl can only read a key from a file: a private directory, removed at once
    with tempfile.TemporaryDirectory(prefix="zkpy-tls-") as d:
        p = Path(d) / "key.pem"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        ctx.load_cert_chain(p)


def _pkcs12(store: Store) -> tuple:  # type: ignore[type-arg]
    from cryptography.hazmat.primitives.serialization import pkcs12

    data = store.path.read_bytes()
    pw = store.password.encode("utf-8")
    for attempt in ((pw,) if pw else (None, b"")):
        try:
            return pkcs12.load_key_and_certificates(data, attempt)
        except ValueError:
            continue
    raise ConfigError(f"{store.key}.password: cannot open {store.path} as PKCS12 "
                      "(wrong password or not a PKCS12 file)")


def _load_trust_store(ctx: ssl.SSLContext, store: Store) -> None:
    if store.kind == "PEM":
        try:
            ctx.load_verify_locations(cafile=store.path)
        except ssl.SSLError as e:
            raise ConfigError(f"{store.key}.location: no certificate in {store.path} ({e.reason})") from None
        return
    from cryptography.hazmat.primitives import serialization

    _, cert, chain = _pkcs12(store)
    certs = [c for c in (cert, *chain) if c is not None]
    if not certs:
        raise ConfigError(f"{store.key}.location: no certificate in {store.path}")
    ctx.load_verify_locations(cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode()
                                             for c in certs))


# ---- the x509 identity ------------------------------------------------------------------
# Attribute keywords X500Principal.getName() (RFC 2253) writes; others as dotted OID=#hex.
_KEYWORDS = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
             "2.5.4.11": "OU", "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC",
             "0.9.2342.19200300.100.1.1": "UID"}
_SPECIAL = ',=+<>#;\\"'
# ASN.1 string tags -> how their characters are encoded
_ENCODINGS = {12: "utf-8", 18: "latin-1", 19: "latin-1", 20: "latin-1", 22: "latin-1",
              26: "latin-1", 28: "utf-32-be", 30: "utf-16-be"}


def client_id(der: bytes) -> str:
    """The subject DN of a DER certificate as X500Principal.getName() writes it."""
    from cryptography import x509

    name = x509.load_der_x509_certificate(der).subject
    rdns = []
    for rdn in reversed(name.rdns):
        rdns.append("+".join(_ava(a.oid.dotted_string, a.value, getattr(a, "_type", None))
                             for a in rdn))
    return ",".join(rdns)


def _ava(oid: str, value: str | bytes, asn1_type: object) -> str:
    keyword = _KEYWORDS.get(oid)
    tag = int(getattr(asn1_type, "value", 12))
    text = value if isinstance(value, str) else value.decode("latin-1")
    if keyword is None:
        body = text.encode(_ENCODINGS.get(tag, "utf-8"))
        n = len(body)
        length = bytes([n]) if n < 128 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
            (n.bit_length() + 7) // 8, "big")
        return f"{oid}=#{bytes([tag]).hex()}{length.hex()}{body.hex()}"
    out = "".join("\\" + ch if ch in _SPECIAL else ch for ch in text)
    if out.startswith(" "):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return f"{keyword}={out}"


class TlsContext:
    """The server's current context; with client.certReload it is rebuilt when a store file
    changes (polled by `check`, as Java's FileChangeWatcher does with WatchService) and a
    broken new file keeps the old context, with an error in the log."""

    def __init__(self, settings: TlsSettings, on_reload: Callable[[], None] | None = None,
                 with_client: bool = False) -> None:
        self.settings = settings
        self.context = build_context(settings)
        # the quorum dials too: a client context from the same stores
        self.client_context = build_context(settings, client=True) if with_client else None
        self._stamps = self._stat()
        self._on_reload = on_reload

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        out = []
        for store in (self.settings.key_store, self.settings.trust_store):
            if store is None:
                continue
            try:
                st = os.stat(store.path)
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append((0, 0, 0))
        return tuple(out)

    def check(self) -> None:
        """Rebuild the context if a store changed."""
        stamps = self._stat()
        if stamps == self._stamps:
            return
        self._stamps = stamps
        try:
            context = build_context(self.settings)
            if self.client_context is not None:
                self.client_context = build_context(self.settings, client=True)
            self.context = context
        except (ConfigError, OSError, ValueError, ssl.SSLError) as e:
            log.error("TLS stores changed but cannot be loaded; keeping the previous ones: %s", e)
            return
        log.info("TLS key/trust stores reloaded")
        if self._on_reload is not None:
            self._on_reload()
