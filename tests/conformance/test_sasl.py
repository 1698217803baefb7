"""SASL DIGEST-MD5 on the client port, the sasl ACL scheme, identity order (whoAmI) and
required authentication (sessionRequireClientSASLAuth, enforce.auth.*), each case run
against zkpy and the reference server started with the same JAAS file and flags.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import AuthFailedError, NoAuthError
from kazoo.security import make_acl
from puresasl.client import SASLClient

from tests.conformance import rawconn
from tests.conformance.rawconn import RawConnection
from tests.conftest import KINDS, ServerProcess, start_server

SASL, AUTH, WHO_AM_I, GET_DATA, CREATE = 102, 100, 107, 4, 1
AUTHFAILED, NOAUTH, REQUIRES_SASL = -115, -102, -124
SASL_PROVIDER = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"

JAAS = """// users for DIGEST-MD5
Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="adminsecret"
    user_bob="bobsecret"  /* a second user: */ user_alice="alicesecret";
};
Client {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username="bob"
    password="bobsecret";
};
"""


def _start(kind: str, tmp: Path, flags: list[str], extra: dict[str, str] | None = None
           ) -> ServerProcess:
    jaas = tmp / "jaas.conf"
    jaas.write_text(JAAS)
    return start_server(kind, {"authProvider.1": SASL_PROVIDER, **(extra or {})},
                        [f"-Djava.security.auth.login.config={jaas}", *flags])


@pytest.fixture(scope="module", params=KINDS)
def srv(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    tmp = Path(tempfile.mkdtemp(prefix="zk-sasl-"))
    s = _start(request.param, tmp, [])
    yield s
    s.stop()
    shutil.rmtree(s.workdir, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


def _sasl_call(c: RawConnection, token: bytes) -> rawconn.Reply:
    return c.call(SASL, rawconn.buffer(token))


def _token(body: bytes) -> bytes | None:
    (n,) = struct.unpack_from(">i", body)
    return None if n < 0 else body[4:4 + n]


def raw_login(c: RawConnection, user: str, password: str) -> rawconn.Reply:
    """The DIGEST-MD5 exchange as kazoo runs it; returns the last reply."""
    cli = SASLClient("zk-sasl-md5", "zookeeper", mechanism="DIGEST-MD5", username=user,
                     password=password)
    r = _sasl_call(c, cli.process(None) or b"")
    assert r.err == 0 and r.zxid == 0
    challenge = _token(r.body)
    assert challenge
    r = _sasl_call(c, cli.process(challenge))
    if r.err == 0:
        cli.process(_token(r.body))  # checks rspauth
        assert cli.complete
    return r


def add_digest(c: RawConnection, user_password: str) -> int:
    body = struct.pack(">i", 0) + rawconn.ustring("digest") + rawconn.buffer(user_password.encode())
    return c.read_reply(c.send(AUTH, body, xid=-4)).err


def who_am_i(c: RawConnection) -> list[tuple[str, str]]:
    r = c.call(WHO_AM_I)
    assert r.err == 0
    (n,), pos, out = struct.unpack_from(">i", r.body), 4, []
    for _ in range(n):
        items = []
        for _ in range(2):
            (ln,) = struct.unpack_from(">i", r.body, pos)
            items.append(r.body[pos + 4:pos + 4 + ln].decode())
            pos += 4 + ln
        out.append((items[0], items[1]))
    return out


def _kazoo(s: ServerProcess, user: str, password: str) -> KazooClient:
    return KazooClient(hosts=s.hosts, timeout=10, sasl_options={
        "mechanism": "DIGEST-MD5", "username": user, "password": password})


def test_challenge_and_identity(srv: ServerProcess) -> None:
    with rawconn.session(srv.port) as c:
        r = _sasl_call(c, b"")
        assert (r.err, r.zxid) == (0, 0)
        challenge = (_token(r.body) or b"").decode()
        fields = dict(kv.split("=", 1) for kv in challenge.split(","))
        assert list(fields) == ["realm", "nonce", "charset", "algorithm"]
        assert fields["realm"] == '"zk-sasl-md5"' and fields["algorithm"] == "md5-sess"
        assert fields["charset"] == "utf-8"
    with rawconn.session(srv.port) as c:
        assert raw_login(c, "bob", "bobsecret").err == 0
        assert ("sasl", "bob") in who_am_i(c)
        # a token after completion is refused, and the connection closed
        r = _sasl_call(c, b"")
        assert (r.err, _token(r.body)) == (AUTHFAILED, None)
        c.wait_closed()


def test_kazoo_login_and_sasl_acl(srv: ServerProcess) -> None:
    path = f"/sasl-acl-{os.getpid()}-{srv.kind}"
    bob, alice = _kazoo(srv, "bob", "bobsecret"), _kazoo(srv, "alice", "alicesecret")
    bob.start(timeout=15)
    alice.start(timeout=15)
    try:
        bob.create(path, b"secret", acl=[make_acl("sasl", "bob", all=True)])
        assert bob.get(path)[0] == b"secret"
        with pytest.raises(NoAuthError):
            alice.get(path)
        # `auth` expands to the sasl id (and the digest id, not ip)
        bob.add_auth("digest", "d:pw")
        bob.create(path + "/auth", acl=[make_acl("auth", "", all=True)])
        acl = bob.get_acls(path + "/auth")[0]
        assert {(a.id.scheme, a.id.id) for a in acl} == {
            ("sasl", "bob"), ("digest", "d:eWRaTEQeaJkbdi5HIpH99+DQ9tY=")}
        with pytest.raises(NoAuthError):
            alice.get(path + "/auth")
        bob.delete(path, recursive=True)
    finally:
        for c in (bob, alice):
            c.stop()
            c.close()


def test_sasl_acl_id_validity(srv: ServerProcess) -> None:
    with rawconn.session(srv.port) as c:
        def create(ident: str) -> int:
            acl = struct.pack(">ii", 1, 31) + rawconn.ustring("sasl") + rawconn.ustring(ident)
            r = c.call(CREATE, rawconn.create_body(f"/sasl-id-{os.getpid()}", b"", 0, acl))
            if r.err == 0:
                c.delete(f"/sasl-id-{os.getpid()}")
            return r.err
        assert create("svc/host@REALM") == 0
        assert create("a@b@c") == -114  # INVALIDACL: not a Kerberos name
        assert create("carol") == 0


@pytest.mark.parametrize("user,password", [("bob", "wrong"), ("nobody", "x")])
def test_wrong_password_authfailed_closed(srv: ServerProcess, user: str, password: str) -> None:
    with rawconn.session(srv.port) as c:
        r = raw_login(c, user, password)
        assert (r.err, r.zxid, _token(r.body)) == (AUTHFAILED, 0, None)
        c.wait_closed()
    k = _kazoo(srv, user, password)
    states: list[str] = []
    k.add_listener(states.append)
    try:
        k.start(timeout=10)  # kazoo reports the failure after it says "connected"
    except AuthFailedError:
        pass
    try:
        deadline = time.monotonic() + 10
        while "LOST" not in states and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "LOST" in states and not k.connected
    finally:
        k.stop()
        k.close()


@pytest.mark.parametrize("token", [b"garbage", b"x" * 5000])
def test_bad_tokens(srv: ServerProcess, token: bytes) -> None:
    with rawconn.session(srv.port) as c:  # an initial response is ignored unless oversize
        r = _sasl_call(c, token)
        if len(token) > 4096:
            assert (r.err, r.zxid) == (AUTHFAILED, 0)
            c.wait_closed()
        else:
            assert r.err == 0 and b"nonce=" in (_token(r.body) or b"")
    with rawconn.session(srv.port) as c:  # a digest-response that is garbage or oversize
        assert _sasl_call(c, b"").err == 0
        r = _sasl_call(c, token)
        assert (r.err, r.zxid) == (AUTHFAILED, 0)
        c.wait_closed()
    with rawconn.session(srv.port) as c:  # a GetSASLRequest cut short
        c.send(SASL, struct.pack(">i", 100) + b"abc")
        c.wait_closed()


def test_who_am_i_order(srv: ServerProcess) -> None:
    with rawconn.session(srv.port) as c:
        assert who_am_i(c) == [("ip", "127.0.0.1")]
        assert add_digest(c, "u:p") == 0
        assert who_am_i(c) == [("ip", "127.0.0.1"), ("digest", "u")]
        assert raw_login(c, "bob", "bobsecret").err == 0
        assert who_am_i(c) == [("sasl", "bob"), ("ip", "127.0.0.1"), ("digest", "u")]
    with rawconn.session(srv.port) as c:  # hash order, not insertion order
        assert add_digest(c, "bob:x") == 0
        assert who_am_i(c) == [("digest", "bob"), ("ip", "127.0.0.1")]
        assert add_digest(c, "x:y") == 0
        assert who_am_i(c) == [("digest", "bob"), ("ip", "127.0.0.1"), ("digest", "x")]
    with rawconn.session(srv.port) as c:
        assert raw_login(c, "super", "adminsecret").err == 0
        assert who_am_i(c) == [("sasl", "super"), ("ip", "127.0.0.1")]


@pytest.mark.parametrize("kind", KINDS)
def test_session_requires_sasl(kind: str, tmp_path: Path) -> None:
    s = _start(kind, tmp_path, ["-Dzookeeper.sessionRequireClientSASLAuth=true"])
    try:
        with rawconn.session(s.port) as c:
            r = c.get_data("/")
            assert (r.err, r.zxid, r.body) == (REQUIRES_SASL, 0, b"")
            c.wait_closed()
        with rawconn.session(s.port) as c:  # a failed login says why, and closes
            r = raw_login(c, "bob", "wrong")
            assert (r.err, _token(r.body)) == (REQUIRES_SASL, None)
            c.wait_closed()
        with rawconn.session(s.port) as c:
            assert raw_login(c, "bob", "bobsecret").err == 0
            assert c.get_data("/").err == 0
        k = _kazoo(s, "alice", "alicesecret")
        k.start(timeout=15)
        assert k.exists("/zookeeper") is not None
        k.stop()
        k.close()
    finally:
        s.stop()
        shutil.rmtree(s.workdir, ignore_errors=True)


@pytest.mark.parametrize("kind", KINDS)
def test_enforce_auth_digest(kind: str, tmp_path: Path) -> None:
    s = _start(kind, tmp_path, ["-Dzookeeper.enforce.auth.enabled=true",
                                "-Dzookeeper.enforce.auth.schemes=digest,sasl"])
    try:
        with rawconn.session(s.port) as c:
            c.send(11, xid=-2)
            r = c.read_any()
            assert (r.xid, r.err, r.zxid) == (-2, REQUIRES_SASL, 0)
            c.wait_closed()
        with rawconn.session(s.port) as c:
            assert add_digest(c, "u:p") == 0
            assert c.get_data("/").err == 0
        with rawconn.session(s.port) as c:
            assert raw_login(c, "bob", "bobsecret").err == 0
            assert c.get_data("/").err == 0
    finally:
        s.stop()
        shutil.rmtree(s.workdir, ignore_errors=True)


def _sha256_digest(user: str, password: str) -> str:
    h = hashlib.sha256(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(h).decode()}"


@pytest.mark.parametrize("kind", KINDS)
def test_let_any_sasl_user_and_digest_algorithm(kind: str, tmp_path: Path) -> None:
    """letAnySaslUserDoX=anyone: ACL sasl:anyone admits every SASL user (and nobody
    else); digestAlg=SHA-256: digest ids and the superDigest are SHA-256."""
    s = _start(kind, tmp_path, [
        "-Dzookeeper.letAnySaslUserDoX=anyone",
        "-Dzookeeper.DigestAuthenticationProvider.digestAlg=SHA-256",
        f"-Dzookeeper.DigestAuthenticationProvider.superDigest={_sha256_digest('super', 'pw')}"])
    base = f"/any-{os.getpid()}"
    bob, alice = _kazoo(s, "bob", "bobsecret"), _kazoo(s, "alice", "alicesecret")
    carol, root = KazooClient(hosts=s.hosts, timeout=10), KazooClient(hosts=s.hosts, timeout=10)
    clients = (bob, alice, carol, root)
    try:
        for c in clients:
            c.start(timeout=15)
        bob.create(base, b"any", acl=[make_acl("sasl", "anyone", all=True)])
        bob.create(base + "-bob", b"bob", acl=[make_acl("sasl", "bob", all=True)])
        bob.create(base + "-carol", b"carol",
                   acl=[make_acl("digest", _sha256_digest("carol", "pw"), all=True)])
        assert alice.get(base)[0] == b"any"
        with pytest.raises(NoAuthError):
            alice.get(base + "-bob")
        carol.add_auth("digest", "carol:pw")
        assert carol.get(base + "-carol")[0] == b"carol"
        with pytest.raises(NoAuthError):
            carol.get(base)  # not a SASL user
        root.add_auth("digest", "super:pw")
        assert root.get(base + "-bob")[0] == b"bob"
    finally:
        for c in clients:
            c.stop()
            c.close()
        s.stop()
        shutil.rmtree(s.workdir, ignore_errors=True)


@pytest.mark.parametrize("kind", KINDS)
def test_zkcli_with_client_jaas(kind: str, tmp_path: Path) -> None:
    if not os.path.exists(ZKCLI):
        pytest.skip("zkCli.sh is not installed")
    s = _start(kind, tmp_path, [])
    try:
        path = f"/cli-sasl-{os.getpid()}"
        env = dict(os.environ)
        env["CLIENT_JVMFLAGS"] = (f"-Djava.security.auth.login.config={tmp_path / 'jaas.conf'} "
                                  "-Xshare:auto -XX:TieredStopAtLevel=1")
        script = f"create {path} x sasl:bob:cdrwa\nwhoami\nget {path}\ngetAcl {path}\n" \
                 f"delete {path}\nquit\n"
        out = subprocess.run([ZKCLI, "-server", s.hosts], input=script, capture_output=True,
                             text=True, timeout=60, env=env)
        text = out.stdout
        assert "WatchedEvent state:SaslAuthenticated" in text, text + out.stderr
        assert "Auth scheme: User\nsasl: bob\nip: 127.0.0.1\nx\n'sasl,'bob\n: cdrwa\n" in text
    finally:
        s.stop()
        shutil.rmtree(s.workdir, ignore_errors=True)
