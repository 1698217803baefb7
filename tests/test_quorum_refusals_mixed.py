"""Quorum security refusals across implementations: two Apache ZooKeeper 3.8 members
refuse a zkpy member, and two zkpy members refuse a ZooKeeper member, when its quorum
certificate is from another CA or names another host (TLS), or its QuorumLearner
password is wrong or it does not authenticate at all (SASL).  The majority keeps serving
writes; the refused member never becomes a follower or leader and never sees those
writes.  A raw learner that ignores the ERROR after a wrong password is cut off by a
leader of either kind."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tests.conftest import NETTY_AVAILABLE, NETTY_JARS, require_tool
from tests.ensemble import ROLES, Ensemble, wait_until
from tests.test_quorum_sasl import REQUIRE
from tests.test_quorum_tls import quorum_tls
from tests.tlscerts import Pki
from zkpy.server.quorum_security import (
    ERROR,
    IN_PROGRESS,
    PROTOCOL,
    SERVER_NAME,
    decode_auth_packet,
    encode_auth_packet,
)
from zkpy.server.sasl_client import DigestMD5Client
from zkpy.zab.packets import PacketType, QuorumPacket, learner_info

OTHER = {"zkpy": "reference", "reference": "zkpy"}
# what a member of the majority logs when it refuses member 3's certificate.  Java
# logs a failed handshake only as a connection accepted without a cipher suite (the
# reason goes to member 3 in the alert, certificate_unknown), and logs a failed
# host-name check itself; zkpy logs both reasons.
UNTRUSTED = {"reference": re.compile(r"Accepted TLS connection from \S+ - NONE - SSL_NULL_WITH_NULL_NULL"),
             "zkpy": re.compile(r"TLS handshake with \S+ failed: .*certificate verify failed")}
MISNAMED = {"reference": re.compile(r"Failed to verify host address: 127\.0\.0\.1"),
            "zkpy": re.compile(r"refused: the peer's certificate names neither its address 127\.0\.0\.1")}
# a refused learner password, and a learner that does not authenticate, refused with
# serverRequireSasl: Java's SaslQuorumAuthServer, zkpy's quorum_link
WRONG_PASSWORD = {"reference": re.compile(r"ERROR .* - Failed to authenticate using SASL"),
                  "zkpy": re.compile(r"refused: SASL authentication failed: .*wrong response")}
NO_SASL = {"reference": re.compile(r"Learner not trying to authenticate and authentication is required"),
           "zkpy": re.compile(r"refused: the peer does not authenticate and quorum.auth.serverRequireSasl")}


def majority_log(ens: Ensemble) -> str:
    return ens[1].log_since_start() + ens[2].log_since_start()


def wait_refused(ens: Ensemble, refusal: re.Pattern[str], what: str) -> None:
    """Until members 1 and 2 log `refusal`; fails at once if member 3 joins instead."""
    def seen() -> str | None:
        if ens[3].mode() in ROLES:
            return "joined"
        return "refused" if refusal.search(majority_log(ens)) else None

    got = wait_until(seen, 60, f"members 1 and 2 to refuse {what}", 0.2, ens.describe)
    assert got == "refused", f"member 3 joined as a {ens[3].mode()} despite {what}:\n{ens.describe()}"


def assert_shut_out(ens: Ensemble, path: str, data: bytes) -> None:
    """Member 3 runs but is no follower or leader, and members 1 and 2 take a write that
    member 3 cannot show (it serves no client)."""
    from kazoo.handlers.threading import KazooTimeoutError

    assert ens[3].running, ens[3].log_text()[-3000:]
    assert ens[3].mode() not in ROLES
    ens.wait_ready(sids=[1, 2], timeout=30)
    c = ens.client(1, 2)
    c.create(path, data, makepath=True)
    assert c.get(path)[0] == data
    with pytest.raises(KazooTimeoutError):
        ens.client(3, start_timeout=3)
    assert ens[3].mode() not in ROLES


@pytest.mark.parametrize("majority", ["reference", "zkpy"], ids=["java-majority", "zkpy-majority"])
def test_untrusted_and_misnamed_certificates_refused(pki: Pki, ensembles: list[Ensemble],
                                                     majority: str) -> None:
    """Members 1 and 2 of one kind on PKCS12 stores; member 3 of the other kind first
    with a certificate from another CA, then with one from the right CA that names
    neither 127.0.0.1 nor localhost (CN=client, no SAN)."""
    require_tool(NETTY_AVAILABLE, "Netty (ZooKeeper's quorum TLS listener needs it)")
    ens = Ensemble([majority, majority, OTHER[majority]], extra=quorum_tls(pki, "p12"))
    ensembles.append(ens)
    ens.extra_jars = NETTY_JARS
    ens[3].extra = {"ssl.quorum.keyStore.location": str(pki.stranger.p12)}
    ens.start(sids=[1, 2], timeout=90)
    ens.start(sids=[3], wait=False)
    wait_refused(ens, UNTRUSTED[majority], "a certificate from another CA")
    if majority == "reference":  # Java's reason, as member 3 hears it
        wait_until(lambda: "alert certificate unknown" in ens[3].log_since_start(), 30,
                   "member 3 to log Java's certificate_unknown alert", 0.2, ens.describe)
    assert_shut_out(ens, "/untrusted", b"1")

    ens[3].stop()
    ens[3].extra = {"ssl.quorum.keyStore.location": str(pki.client.p12)}
    ens[3].start()
    wait_refused(ens, MISNAMED[majority], "a certificate naming another host")
    assert_shut_out(ens, "/misnamed", b"2")


@pytest.mark.parametrize("majority", ["reference", "zkpy"], ids=["java-majority", "zkpy-majority"])
def test_wrong_password_and_unauthenticated_learner_refused(tmp_path: Path, ensembles: list[Ensemble],
                                                            majority: str) -> None:
    """quorum.auth.serverRequireSasl and learnerRequireSasl on members 1 and 2.  Member 3,
    of the other kind, first logs in with the JAAS section WrongLearner (a wrong password
    for the right user), then has quorum.auth.enableSasl alone (it does not authenticate:
    only the majority's serverRequireSasl can keep it out, whereas a learner told ERROR
    gives up by itself)."""
    conf = tmp_path / "jaas.conf"
    learner = "org.apache.zookeeper.server.auth.DigestLoginModule required\n  username=\"peer\"\n"
    conf.write_text(
        "QuorumServer {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n"
        "  user_peer=\"s3cret\";\n};\n"
        f"QuorumLearner {{\n  {learner}  password=\"s3cret\";\n}};\n"
        f"WrongLearner {{\n  {learner}  password=\"wrong\";\n}};\n")
    ens = Ensemble([majority, majority, OTHER[majority]], extra=REQUIRE,
                   jvm_flags=[f"-Djava.security.auth.login.config={conf}"])
    ensembles.append(ens)
    ens[3].extra = {"quorum.auth.learner.saslLoginContext": "WrongLearner"}
    ens.start(sids=[1, 2], timeout=90)
    ens.start(sids=[3], wait=False)
    wait_refused(ens, WRONG_PASSWORD[majority], "a wrong QuorumLearner password")
    assert_shut_out(ens, "/wrong-password", b"3")

    ens[3].stop()
    ens[3].extra = {"quorum.auth.learnerRequireSasl": "false", "quorum.auth.serverRequireSasl": "false"}
    ens[3].start()
    wait_refused(ens, NO_SASL[majority], "a learner that does not authenticate")
    assert_shut_out(ens, "/no-sasl", b"4")
    leader = next(ens[s] for s, mode in ens.wait_ready(sids=[1, 2], timeout=30).items() if mode == "leader")
    assert_ignored_after_error(leader.quorum_port)


def read_auth_packet(s: socket.socket) -> tuple[int, bytes]:
    buf = b""
    while (got := decode_auth_packet(buf)) is None:
        chunk = s.recv(4096)
        assert chunk, f"closed after {buf!r}"
        buf += chunk
    status, token, used = got
    assert used == len(buf)
    return status, token


def assert_ignored_after_error(quorum_port: int) -> None:
    """A learner that answers the leader's challenge with a wrong password, is told ERROR
    and carries on with FOLLOWERINFO (as no honest learner does: both implementations
    give up on ERROR) gets no LEADERINFO: the leader has closed the connection."""
    client = DigestMD5Client("peer", "wrong", PROTOCOL, SERVER_NAME)
    with socket.create_connection(("127.0.0.1", quorum_port), timeout=10) as s:
        s.sendall(encode_auth_packet(IN_PROGRESS, b""))
        status, challenge = read_auth_packet(s)
        assert status == IN_PROGRESS
        s.sendall(encode_auth_packet(IN_PROGRESS, client.evaluate(challenge)))
        assert read_auth_packet(s)[0] == ERROR
        got = b""
        try:
            s.sendall(QuorumPacket(PacketType.FOLLOWERINFO, 0, learner_info(3)).encode())
            while chunk := s.recv(4096):
                got += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
        except TimeoutError:
            raise AssertionError(f"the leader kept the connection open after ERROR (sent {got!r})") from None
        assert got == b"", f"the leader answered after ERROR: {got!r}"
