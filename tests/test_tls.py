"""zkpy's client TLS settings and helpers: start-up errors for bad stores and settings,
the x509 identity's DN format, the TLS sniffing rule of client.portUnification, and the
listener's clean-up of connections it has accepted but not yet handed over."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.conftest import free_port, require_tool
from tests.tlscerts import PASSWORD, Pki
from zkpy.server.config import ConfigError, build_config
from zkpy.server.metrics import METRICS
from zkpy.server.tls import TlsContext, _ava, client_id
from zkpy.server.tls_listener import TlsListener, looks_like_tls


def config(pki: Pki, **over: str) -> dict[str, str]:
    raw = {"dataDir": "/d", "clientPort": "2181", "secureClientPort": "2281", **pki.server_cfg()}
    raw.update(over)
    return raw


def test_pem_and_pkcs12_stores_load(pki: Pki) -> None:
    assert build_config(config(pki)).tls is not None
    p12 = config(pki, **{"ssl.keyStore.location": str(pki.server.p12), "ssl.keyStore.password": PASSWORD})
    assert build_config(p12).tls is not None
    enc = config(pki, **{"ssl.keyStore.location": str(pki.server.pem_encrypted),
                         "ssl.keyStore.password": PASSWORD})
    assert build_config(enc).tls is not None


@pytest.mark.parametrize("store", ["pem_encrypted", "p12"])
def test_wrong_key_store_password_names_the_key(pki: Pki, store: str) -> None:
    path = getattr(pki.server, store)
    with pytest.raises(ConfigError, match=r"^ssl.keyStore.password: cannot"):
        build_config(config(pki, **{"ssl.keyStore.location": str(path), "ssl.keyStore.password": "wrong"}))


def test_handshake_limit_is_read_not_warned_about(pki: Pki) -> None:
    key = "netty.server.outstandingHandshake.limit"
    cfg = build_config(config(pki, **{key: "250"}))
    assert cfg.tls is not None and cfg.tls.handshake_limit == 250 and not cfg.warnings
    for off in ("-1", "0"):  # Java's default and "none"
        tls = build_config(config(pki, **{key: off})).tls
        assert tls is not None and tls.handshake_limit == 0


def test_missing_file_and_bad_settings(pki: Pki) -> None:
    cases = {
        "ssl.keyStore.location": {"ssl.keyStore.location": "/nonexistent/k.pem"},
        "ssl.trustStore.location": {"ssl.trustStore.location": "/nonexistent/t.pem"},
        "ssl.clientAuth": {"ssl.clientAuth": "sometimes"},
        "ssl.ciphersuites": {"ssl.ciphersuites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_FOO"},
        "ssl.protocol": {"ssl.protocol": "SSLv3"},
        "ssl.authProvider": {"ssl.authProvider": "custom"},
        "ssl.crl": {"ssl.crl": "true"},
        "ssl.keyStore.type": {"ssl.keyStore.location": str(pki.ca_pem.with_suffix(".crt"))},
        "netty.server.outstandingHandshake.limit": {"netty.server.outstandingHandshake.limit": "many"},
    }
    shutil.copy(pki.ca_pem, pki.ca_pem.with_suffix(".crt"))
    for key, over in cases.items():
        with pytest.raises(ConfigError) as e:
            build_config(config(pki, **over))
        assert str(e.value).startswith(f"{key}: ") and "\n" not in str(e.value), str(e.value)


def test_jks_is_refused_with_the_conversion_command(pki: Pki, tmp_path: Path) -> None:
    require_tool(bool(shutil.which("keytool")), "the JDK's keytool")
    raw = config(pki, **pki.server_cfg(store="jks"))
    with pytest.raises(ConfigError, match=r"^ssl.keyStore.type: .*`keytool -importkeystore "
                                          r"-srckeystore .*server.jks -srcstoretype JKS .*"
                                          r"-deststoretype PKCS12"):
        build_config(raw)
    # what JDK 9+ keytool writes by default is PKCS12 whatever the name: read as such
    p12_named_jks = tmp_path / "server.jks"
    shutil.copy(pki.server.p12, p12_named_jks)
    ok = config(pki, **{"ssl.keyStore.location": str(p12_named_jks), "ssl.keyStore.password": PASSWORD})
    assert build_config(ok).tls is not None


def test_ciphers_map_to_openssl_names(pki: Pki) -> None:
    c = build_config(config(pki, **{"ssl.ciphersuites": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,"
                                                        "TLS_AES_128_GCM_SHA256"}))
    assert c.tls is not None and c.tls.ciphers == "ECDHE-ECDSA-AES256-GCM-SHA384"


def test_start_up_error_is_one_line_and_exit_code(pki: Pki, tmp_path: Path) -> None:
    raw = config(pki, **{"ssl.keyStore.location": str(pki.server.p12), "ssl.keyStore.password": "bad",
                         "dataDir": str(tmp_path / "data"), "clientPort": str(free_port()),
                         "secureClientPort": str(free_port())})
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text("".join(f"{k}={v}\n" for k, v in raw.items()))
    r = subprocess.run([sys.executable, "-m", "zkpy.server.main", "start", str(cfg)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
    assert "ssl.keyStore.password: cannot open" in r.stderr + r.stdout


def _cert_with(name: x509.Name, pki: Pki) -> bytes:
    from cryptography.hazmat.primitives import serialization

    from tests.tlscerts import _issue

    assert pki.ca_key is not None
    ca = x509.load_pem_x509_certificate(pki.ca_pem.read_bytes())
    cert = _issue(name, ca.subject, pki.ca_key, pki.client.key)
    return cert.public_bytes(serialization.Encoding.DER)


def test_client_id_is_rfc2253_as_x500principal(pki: Pki) -> None:
    assert client_id(pki.client.cert.public_bytes(__import__(
        "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)) == \
        "CN=client,OU=clients,O=zkpy tests,C=DE"
    name = x509.Name([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
                      x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "a,b+c")])
    # emailAddress has no RFC 2253 keyword: dotted OID and the value's DER in hex
    assert client_id(_cert_with(name, pki)) == "CN=a\\,b\\+c,1.2.840.113549.1.9.1=#1603614062,DC=org"
    assert _ava("2.5.4.3", " lead", None) == "CN=\\ lead"


def test_sniffing_rule() -> None:
    assert looks_like_tls(b"\x16\x03\x01\x02\x00") is True
    assert looks_like_tls(b"\x00\x00\x00\x2c\x00") is False
    assert looks_like_tls(b"ruok") is False  # a 4-letter word is plain
    assert looks_like_tls(b"\x16\x03") is None  # wait for five bytes


async def test_closing_the_listener_ends_connections_not_yet_handed_over(pki: Pki) -> None:
    """Sockets accepted in the same loop turn as the listener closes (their hand-over
    tasks never start) are closed and uncounted by `close`, not left open and counted."""
    settings = build_config(config(pki)).tls
    assert settings is not None
    tls = TlsContext(settings)
    listener = TlsListener(asyncio.Protocol, lambda: tls.context, unified=False, timeout=10.0,
                           handshake_limit=10)
    await listener.open("127.0.0.1", 0)
    before = METRICS.outstanding_tls_handshake
    peers = [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(3)]
    try:
        listener._accept()  # as the loop would, and close before the loop turns again
        assert listener.handshaking == 3
        listener.close()
        assert listener.handshaking == 0
        assert METRICS.outstanding_tls_handshake == before
        for peer in peers:
            peer.settimeout(5)
            assert peer.recv(1) == b""  # the server closed its end
        await asyncio.sleep(0.05)  # the cancelled tasks run: nothing is counted twice
        assert listener.handshaking == 0
        assert METRICS.outstanding_tls_handshake == before
    finally:
        for peer in peers:
            peer.close()
