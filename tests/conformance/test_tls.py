"""Client TLS and x509 authentication against zkpy and the reference (Apache ZooKeeper 3.8
with NettyServerCnxnFactory): secureClientPort with each ssl.clientAuth, x509 ACLs, the
x509 superUser, client.portUnification, refused handshakes, PKCS12 stores, certificate
reload, and zkCli.sh over TLS.  Certificates are made per module by tests/tlscerts.py."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import InvalidACLError, NoAuthError
from kazoo.security import make_acl

from tests.conftest import KINDS, NETTY_AVAILABLE, REQUIRE_REFERENCE, ServerProcess, free_port, start_server
from tests.tlscerts import CLIENT_DN, SUPER_DN, Identity, Pki, make_pki

NETTY = "org.apache.zookeeper.server.NettyServerCnxnFactory"
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"


class TlsServer:
    def __init__(self, srv: ServerProcess, secure_port: int) -> None:
        self.srv = srv
        self.secure_port = secure_port

    @property
    def secure_hosts(self) -> str:
        return f"127.0.0.1:{self.secure_port}"


def start_tls(kind: str, pki: Pki, client_auth: str = "need", store: str = "pem",
              extra: dict[str, str] | None = None, secure: bool = True) -> TlsServer:
    if kind == "reference" and not NETTY_AVAILABLE:
        if REQUIRE_REFERENCE:
            pytest.fail("netty jars missing (apt-get install libnetty-java)")
        pytest.skip("netty jars missing (apt-get install libnetty-java)")
    port = free_port()
    cfg = {"serverCnxnFactory": NETTY, **pki.server_cfg(client_auth, store)}
    if secure:
        cfg["secureClientPort"] = str(port)
    cfg.update(extra or {})
    return TlsServer(start_server(kind, cfg), port)


def kazoo(hosts: str, pki: Pki, who: Identity | None) -> KazooClient:
    kw: dict[str, object] = {"use_ssl": True, "ca": str(pki.ca_pem), "verify_certs": True}
    if who is not None:
        kw.update(certfile=str(who.cert_pem), keyfile=str(who.key_pem))
    c = KazooClient(hosts=hosts, timeout=10, connection_retry={"max_tries": 0}, **kw)  # type: ignore[arg-type]
    c.start(timeout=10)
    return c


def assert_secure_client_works(s: TlsServer, pki: Pki) -> None:
    """A client with a trusted certificate still reads through the TLS port."""
    c = kazoo(s.secure_hosts, pki, pki.client)
    try:
        assert c.exists("/") is not None
    finally:
        c.stop()
        c.close()


def tls_socket(port: int, pki: Pki, who: Identity | None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(pki.ca_pem))
    if who is not None:
        ctx.load_cert_chain(str(who.cert_pem), str(who.key_pem))
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                           server_hostname="127.0.0.1")


def connection_refused(port: int, pki: Pki, who: Identity | None) -> bool:
    """Is a connection with this certificate (or none) ended at or right after the handshake?
    (TLS 1.2: the handshake fails; a server may also close right after it.)"""
    try:
        s = tls_socket(port, pki, who)
        s.sendall(b"ruok")
        return s.recv(16) != b"imok"
    except (ssl.SSLError, OSError):
        return True


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("client_auth", ["none", "want", "need"])
def test_client_auth_modes(kind: str, client_auth: str, pki: Pki, servers: list[TlsServer]) -> None:
    s = start_tls(kind, pki, client_auth)
    servers.append(s)
    # with a certificate every mode serves; the x509 identity only when one was asked for
    c = kazoo(s.secure_hosts, pki, pki.client)
    try:
        if client_auth == "none":
            with pytest.raises(InvalidACLError):  # no authenticated identity for `auth`
                c.create("/auth-acl", b"", acl=[make_acl("auth", "", all=True)])
        else:
            c.create("/auth-acl", b"", acl=[make_acl("auth", "", all=True)])
            acl, _ = c.get_acls("/auth-acl")
            assert [(a.id.scheme, a.id.id) for a in acl] == [("x509", CLIENT_DN)]
    finally:
        c.stop()
        c.close()
    # without one: refused only by need
    assert connection_refused(s.secure_port, pki, None) == (client_auth == "need")
    # a certificate from an unknown CA: refused unless none was asked for
    assert connection_refused(s.secure_port, pki, pki.stranger) == (client_auth != "none")


@pytest.mark.parametrize("kind", KINDS)
def test_x509_acl_allow_deny_and_super_user(kind: str, pki: Pki, servers: list[TlsServer]) -> None:
    s = start_tls(kind, pki, extra={"X509AuthenticationProvider.superUser": SUPER_DN})
    servers.append(s)
    owner = kazoo(s.secure_hosts, pki, pki.client)
    admin = kazoo(s.secure_hosts, pki, pki.admin)
    plain = KazooClient(hosts=s.srv.hosts, timeout=10)
    plain.start(timeout=10)
    try:
        owner.create("/mine", b"secret", acl=[make_acl("x509", CLIENT_DN, all=True)])
        assert owner.get("/mine")[0] == b"secret"
        with pytest.raises(NoAuthError):
            plain.get("/mine")
        # the superUser DN reads anything
        assert admin.get("/mine")[0] == b"secret"
        admin.set("/mine", b"by admin")
        # an ACL id that is no DN is refused; a DN without that certificate is denied
        with pytest.raises(InvalidACLError):
            owner.create("/bad", b"", acl=[make_acl("x509", "not a dn", all=True)])
        owner.create("/theirs", b"", acl=[make_acl("x509", "CN=someone else", all=True)])
        with pytest.raises(NoAuthError):
            owner.get("/theirs")
    finally:
        for c in (owner, admin, plain):
            c.stop()
            c.close()


@pytest.mark.parametrize("kind", KINDS)
def test_port_unification(kind: str, pki: Pki, servers: list[TlsServer]) -> None:
    # ZooKeeper 3.8.0 registers the x509 provider only with a secureClientPort (3.8.1+ and
    # zkpy also with client.portUnification): name it, so that both servers take the cert
    s = start_tls(kind, pki, secure=False, extra={
        "client.portUnification": "true",
        "authProvider.x509": "org.apache.zookeeper.server.auth.X509AuthenticationProvider"})
    servers.append(s)
    tls = kazoo(s.srv.hosts, pki, pki.client)  # TLS on the plain port
    plain = KazooClient(hosts=s.srv.hosts, timeout=10)
    plain.start(timeout=10)
    try:
        tls.create("/pu", b"", acl=[make_acl("x509", CLIENT_DN, all=True)])
        assert tls.get("/pu")[0] == b""
        with pytest.raises(NoAuthError):
            plain.get("/pu")
        # a 4-letter word (4 bytes, not a TLS record) is served in plain text
        with socket.create_connection(("127.0.0.1", s.srv.port), timeout=5) as raw:
            raw.sendall(b"ruok")
            assert raw.recv(16) == b"imok"
    finally:
        for c in (tls, plain):
            c.stop()
            c.close()


@pytest.mark.parametrize("kind", KINDS)
def test_plain_text_to_tls_port_is_refused(kind: str, pki: Pki, servers: list[TlsServer]) -> None:
    s = start_tls(kind, pki)
    servers.append(s)
    with socket.create_connection(("127.0.0.1", s.secure_port), timeout=5) as raw:
        # a ConnectRequest in plain text: the server answers nothing readable and closes
        raw.sendall(bytes.fromhex("0000002c") + bytes(44))
        data = b""
        try:
            while chunk := raw.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
        assert not data.startswith(bytes.fromhex("00000024"))  # no ConnectResponse
    # others are unaffected
    assert_secure_client_works(s, pki)


@pytest.mark.parametrize("kind", KINDS)
def test_pkcs12_stores(kind: str, pki: Pki, servers: list[TlsServer]) -> None:
    s = start_tls(kind, pki, store="p12")
    servers.append(s)
    assert_secure_client_works(s, pki)


def _served_serial(port: int, pki: Pki) -> int:
    with tls_socket(port, pki, pki.client) as s:
        der = s.getpeercert(binary_form=True)
    from cryptography import x509

    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


# zkpy only: Debian's ZooKeeper 3.8.0 has no client.certReload (3.8.6 has, with the same
# meaning: a changed key or trust store file is read again for new connections)
@pytest.mark.parametrize("kind", ["zkpy"])
def test_certificate_reload(kind: str, pki: Pki, servers: list[TlsServer], tmp_path: Path) -> None:
    keystore = tmp_path / "live.pem"
    shutil.copy(pki.server.pem, keystore)
    s = start_tls(kind, pki, extra={"client.certReload": "true", "ssl.keyStore.location": str(keystore)})
    servers.append(s)
    before = _served_serial(s.secure_port, pki)
    assert before == pki.server.cert.serial_number
    fresh = make_pki(tmp_path / "fresh", ca=pki)
    tmp = tmp_path / "new.pem"
    shutil.copy(fresh.server.pem, tmp)
    os.replace(tmp, keystore)  # a new file, as a certificate manager writes it
    deadline = time.monotonic() + 15
    while _served_serial(s.secure_port, pki) == before:
        assert time.monotonic() < deadline, "the new certificate was not picked up"
        time.sleep(0.2)
    assert _served_serial(s.secure_port, pki) == fresh.server.cert.serial_number


@pytest.mark.parametrize("kind", KINDS)
def test_zkcli_over_tls(kind: str, pki: Pki, servers: list[TlsServer]) -> None:
    if not os.access(ZKCLI, os.X_OK):
        pytest.skip("zkCli.sh is not installed")
    s = start_tls(kind, pki, extra={"X509AuthenticationProvider.superUser": SUPER_DN})
    servers.append(s)
    from tests.conftest import NETTY_JARS

    # zkCli.sh puts only zookeeper.jar on its class path; the last -cp given to java wins
    classpath = ":".join(["/etc/zookeeper/conf", "/usr/share/java/zookeeper.jar",
                          "/usr/share/java/zookeeper-jute.jar", "/usr/share/java/slf4j-api.jar",
                          *NETTY_JARS])
    flags = ["-Xmx128m", "-cp", classpath, "-Dzookeeper.client.secure=true",
             "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
             f"-Dzookeeper.ssl.keyStore.location={pki.client.p12}",
             "-Dzookeeper.ssl.keyStore.password=s3cret",
             f"-Dzookeeper.ssl.trustStore.location={pki.ca_pem}",
             "-Dzookeeper.ssl.hostnameVerification=true"]
    env = dict(os.environ, CLIENT_JVMFLAGS=" ".join(flags))
    path = f"/cli-tls-{os.getpid()}"
    # `auth` expands to the certificate's x509 id (a DN's commas cannot be typed in a
    # zkCli ACL); the node is then readable by this certificate only
    script = (f"whoami\ncreate {path} tlsdata auth::cdrwa\nget {path}\ngetAcl {path}\n"
              f"delete {path}\nls /\nquit\n")
    run = subprocess.run([ZKCLI, "-waitforconnection", "-server", s.secure_hosts], input=script,
                         env=env, capture_output=True, text=True, timeout=60)
    out = run.stdout
    # whoami lists the ids in the server's (hash-table) order: the same on both
    assert f"Auth scheme: User\nx509: {CLIENT_DN}\nip: 127.0.0.1\n" in out, out[-2000:]
    assert f"Created {path}" in run.stderr and "\ntlsdata\n" in out, out[-2000:]
    # zkCli's getAcl shows the id URL-encoded
    assert f"'x509,'{CLIENT_DN.replace(',', '%2C')}\n: cdrwa\n" in out, out[-2000:]
    plain = KazooClient(hosts=s.srv.hosts, timeout=10)  # the delete went through
    plain.start(timeout=10)
    try:
        assert plain.exists(path) is None
    finally:
        plain.stop()
        plain.close()
