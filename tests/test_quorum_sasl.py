"""Quorum SASL (quorum.auth.*, DIGEST-MD5 with the JAAS QuorumServer / QuorumLearner
sections): zkpy ensembles, a mixed ensemble with Apache ZooKeeper 3.8 (a leader of each
kind), a learner with a wrong password refused while the rest serve, enableSasl without
require letting an unauthenticated member in, and the start-up errors."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from tests.conftest import NETTY_AVAILABLE, NETTY_JARS, require_tool
from tests.ensemble import Ensemble, wait_until, writes_through_every_server
from tests.test_quorum_tls import mixed_leaders_both_ways, quorum_tls
from tests.tlscerts import make_pki
from zkpy.election.messages import encode_initial_message
from zkpy.server.config import ConfigError, build_config
from zkpy.server.quorum_security import ERROR, MAGIC, PROTOCOL, SERVER_NAME, encode_auth_packet
from zkpy.server.sasl import DigestMD5Server, SaslError, SaslSettings
from zkpy.server.sasl_client import DigestMD5Client

REQUIRE = {"quorum.auth.enableSasl": "true", "quorum.auth.learnerRequireSasl": "true",
           "quorum.auth.serverRequireSasl": "true"}


def jaas(path: Path, password: str = "s3cret", server_module: str = "DigestLoginModule",
         sections: tuple[str, ...] = ("QuorumServer", "QuorumLearner")) -> Path:
    module = {"DigestLoginModule": "org.apache.zookeeper.server.auth.DigestLoginModule",
              "Krb5LoginModule": "com.sun.security.auth.module.Krb5LoginModule"}[server_module]
    text = ""
    if "QuorumServer" in sections:
        text += f'QuorumServer {{\n  {module} required\n  user_peer="s3cret";\n}};\n'
    if "QuorumLearner" in sections:
        text += ('QuorumLearner {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n'
                 f'  username="peer"\n  password="{password}";\n}};\n')
    path.write_text(text)
    return path


def sasl_ensemble(kinds: list[str], tmp_path: Path, extra: dict[str, str]) -> Ensemble:
    return Ensemble(kinds, extra=extra,
                    jvm_flags=[f"-Djava.security.auth.login.config={jaas(tmp_path / 'jaas.conf')}"])


def test_digest_md5_client_and_server() -> None:
    server = DigestMD5Server(SaslSettings(credentials={"peer": "pw"}), realm=SERVER_NAME, protocol=PROTOCOL)
    client = DigestMD5Client("peer", "pw", PROTOCOL, SERVER_NAME)
    response = client.evaluate(server.evaluate(b""))
    assert response is not None and b'digest-uri="zookeeper-quorum/zk-quorum-sasl-md5"' in response
    assert client.evaluate(server.evaluate(response)) is None
    assert server.complete and client.complete and server.user == "peer"
    wrong = DigestMD5Client("peer", "nope", PROTOCOL, SERVER_NAME)
    server = DigestMD5Server(SaslSettings(credentials={"peer": "pw"}), realm=SERVER_NAME, protocol=PROTOCOL)
    with pytest.raises(SaslError, match="wrong response"):
        server.evaluate(wrong.evaluate(server.evaluate(b"")) or b"")
    forged = DigestMD5Client("peer", "pw", PROTOCOL, SERVER_NAME)
    forged.evaluate(b'realm="zk-quorum-sasl-md5",nonce="abc",charset=utf-8,algorithm=md5-sess')
    with pytest.raises(SaslError, match="rspauth"):
        forged.evaluate(b"rspauth=00000000000000000000000000000000")


def test_zkpy_ensemble_with_quorum_sasl(tmp_path: Path, ensembles: list[Ensemble]) -> None:
    ens = sasl_ensemble(["zkpy"] * 3, tmp_path, REQUIRE)
    ensembles.append(ens)
    ens.start(timeout=60)
    writes_through_every_server(ens, "/qsasl")
    assert all("authenticated as 'peer'" in m.log_text() for m in ens.members.values())


def test_wrong_learner_password_is_refused(tmp_path: Path, ensembles: list[Ensemble]) -> None:
    ens = sasl_ensemble(["zkpy"] * 3, tmp_path, REQUIRE)
    ensembles.append(ens)
    ens[3].extra = {"java.security.auth.login.config": str(jaas(tmp_path / "wrong.conf", "wrong"))}
    ens.start(sids=[1, 2], timeout=60)
    ens.start(sids=[3], wait=False)
    wait_until(lambda: "SASL authentication failed" in ens[1].log_since_start() + ens[2].log_since_start(),
               20, "members 1 and 2 to refuse member 3's credentials")
    assert "the server refused our credentials" in ens[3].log_since_start()
    assert ens[3].mode() not in ("leader", "follower")
    # garbage where the auth packet should be: an absurd token length on the election
    # port, 20 KiB of noise on the leader's quorum port; each connection is closed alone
    leader = next(ens[s] for s, mode in ens.wait_ready(sids=[1, 2], timeout=10).items() if mode == "leader")
    head = encode_initial_message(9, "127.0.0.1:1") + struct.pack(">qii", MAGIC, 0, 1 << 30)
    error = encode_auth_packet(ERROR, b"")  # what Java answers too, before it closes
    for port, data, answer in ((ens[1].election_port, head, error),
                               (leader.quorum_port, b"\x5f" * 20000, b"")):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(data)
            got = b""
            try:
                while chunk := s.recv(100):
                    got += chunk
            except ConnectionResetError:  # closed with our bytes unread: a reset
                pass
            assert got == answer
    assert "quorum auth token of 1073741824 bytes" in ens[1].log_since_start()
    c = ens.client(1, 2)
    c.create("/still-serving", b"")
    assert ens.wait_ready(sids=[1, 2], timeout=5)


def test_enable_without_require_lets_an_unauthenticated_member_in(tmp_path: Path,
                                                                  ensembles: list[Ensemble]) -> None:
    """The rolling-upgrade step: members with quorum.auth.enableSasl=true alone accept a
    member that does not authenticate (and do not authenticate themselves)."""
    ens = sasl_ensemble(["zkpy"] * 3, tmp_path, {"quorum.auth.enableSasl": "true"})
    ensembles.append(ens)
    ens[3].extra = {"quorum.auth.enableSasl": "false"}
    ens.start(timeout=60)
    writes_through_every_server(ens, "/half-sasl")


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_mixed_ensemble_with_zookeeper_over_quorum_sasl(tmp_path: Path, ensembles: list[Ensemble],
                                                        tls: bool) -> None:
    """SASL alone, and SASL inside quorum TLS (PKCS12 stores)."""
    extra = dict(REQUIRE)
    if tls:
        require_tool(NETTY_AVAILABLE, "Netty (ZooKeeper's quorum TLS listener detects TLS with it)")
        extra.update(quorum_tls(make_pki(tmp_path / "pki"), "p12"))
    ens = sasl_ensemble(["reference", "reference", "zkpy"], tmp_path, extra)
    ensembles.append(ens)
    ens.extra_jars = NETTY_JARS if tls else []
    assert sorted(mixed_leaders_both_ways(ens, "/mixed-sasl")) == ["reference", "zkpy"]
    for m in ens.members.values():
        log = m.log_text()
        if m.kind == "reference":
            assert "Successfully completed the authentication using SASL" in log
            assert "Failed to authenticate using SASL" not in log
        else:
            assert "authenticated as 'peer'" in log


def test_quorum_sasl_start_up_errors(tmp_path: Path) -> None:
    base = {"dataDir": "/d", "clientPort": "2181", **REQUIRE}
    only_server = jaas(tmp_path / "server-only.conf", sections=("QuorumServer",))
    with pytest.raises(ConfigError, match=r"^quorum.auth.learner.saslLoginContext: no JAAS configuration "
                                          r"section named 'QuorumLearner' in '.*server-only.conf'"):
        build_config({**base, "java.security.auth.login.config": str(only_server)})
    kerberos = jaas(tmp_path / "krb.conf", server_module="Krb5LoginModule")
    with pytest.raises(ConfigError, match=r"krb.conf:2: section 'QuorumServer' uses "
                                          r"com.sun.security.auth.module.Krb5LoginModule, i.e. quorum SASL "
                                          r"with GSSAPI"):
        build_config({**base, "java.security.auth.login.config": str(kerberos)})
    with pytest.raises(ConfigError, match=r"^quorum.auth.serverRequireSasl: quorum.auth.learnerRequireSasl"):
        build_config({**base, "quorum.auth.learnerRequireSasl": "false",
                      "java.security.auth.login.config": str(jaas(tmp_path / "ok.conf"))})
    cfg = build_config({**base, "java.security.auth.login.config": str(jaas(tmp_path / "ok.conf"))})
    assert cfg.quorum_sasl is not None and cfg.quorum_sasl.credentials == {"peer": "s3cret"}
    assert cfg.quorum_sasl.learner_user == "peer" and cfg.quorum_sasl.server_require
