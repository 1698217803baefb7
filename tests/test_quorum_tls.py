"""Quorum TLS (sslQuorum, ssl.quorum.*, portUnification) in real ensembles: zkpy alone
and mixed with Apache ZooKeeper 3.8 members, kazoo writing and reading through every
member; members without a trusted certificate or without TLS are refused and the rest
keep serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import NETTY_AVAILABLE, NETTY_JARS, require_tool
from tests.ensemble import Ensemble, wait_until, writes_through_every_server
from tests.tlscerts import PASSWORD, Pki, make_pki
from zkpy.server.config import ConfigError, build_config
from zkpy.server.quorum_security import host_matches


def quorum_tls(pki: Pki, store: str = "p12", key: Path | None = None) -> dict[str, str]:
    """zoo.cfg keys for TLS on the quorum ports (PKCS12 for Java, or PEM)."""
    cfg = {"sslQuorum": "true",
           "ssl.quorum.keyStore.location": str(key or (pki.server.p12 if store == "p12" else pki.server.pem)),
           "ssl.quorum.trustStore.location": str(pki.ca_p12 if store == "p12" else pki.ca_pem)}
    if store == "p12":
        cfg["ssl.quorum.keyStore.password"] = PASSWORD
        cfg["ssl.quorum.trustStore.password"] = PASSWORD
    return cfg


def trust_failures(member_log: str) -> bool:
    """A peer's certificate refused (a handshake cut short by a member stopping is not)."""
    return any(s in member_log for s in ("certificate verify failed", "hostnameVerification",
                                         "unable to find valid certification path",
                                         "Failed to verify"))


def test_zkpy_ensemble_over_quorum_tls(pki: Pki, ensembles: list[Ensemble]) -> None:
    """Three zkpy members, PEM stores from zoo.cfg for two and PKCS12 from -D for all:
    they elect, sync and replicate over TLS; a member restarted rejoins over TLS."""
    ens = Ensemble(["zkpy"] * 3, extra={"sslQuorum": "true"})
    ensembles.append(ens)
    ens[1].extra = ens[2].extra = quorum_tls(pki, "pem")  # zoo.cfg wins over -D
    # member 3's stores come from SERVER_JVMFLAGS only
    ens.jvm_flags = [f"-Dzookeeper.{k}={v}" for k, v in quorum_tls(pki, "p12").items() if k != "sslQuorum"]
    ens.start(timeout=60)
    writes_through_every_server(ens, "/qtls")
    follower = ens.followers()[0]
    follower.stop()
    c = ens.client(*(m.sid for m in ens.running()))
    c.create("/qtls-after", b"x")
    follower.start()
    ens.wait_ready(timeout=60)
    rejoined = ens.client(follower.sid)
    rejoined.sync("/qtls-after")
    assert rejoined.get("/qtls-after")[0] == b"x"
    for m in ens.members.values():
        assert not trust_failures(m.log_text()), m


def test_untrusted_misnamed_and_plain_members_are_refused(pki: Pki, ensembles: list[Ensemble]) -> None:
    """Member 3 first with a certificate from another CA, then with one from the right CA
    that names neither 127.0.0.1 nor localhost (the host-name check), then without TLS:
    members 1 and 2 refuse it (and log why) and keep serving; 3 never joins."""
    ens = Ensemble(["zkpy"] * 3, extra=quorum_tls(pki, "pem"))
    ensembles.append(ens)
    ens[3].extra = {"ssl.quorum.keyStore.location": str(pki.stranger.pem)}
    ens.start(sids=[1, 2], timeout=60)
    ens.start(sids=[3], wait=False)
    c = ens.client(1, 2)
    c.create("/served", b"1")
    wait_until(lambda: trust_failures(ens[1].log_since_start() + ens[2].log_since_start()), 20,
               "members 1 and 2 to refuse the untrusted member")
    assert ens[3].mode() not in ("leader", "follower")
    ens[3].stop()
    ens[3].extra = {"ssl.quorum.keyStore.location": str(pki.client.pem)}  # CN=client, no SAN
    ens[3].start()
    wait_until(lambda: "ssl.quorum.hostnameVerification" in ens[1].log_since_start()
               + ens[2].log_since_start(), 20, "members 1 and 2 to refuse the misnamed member")
    assert ens[3].mode() not in ("leader", "follower")
    ens[3].stop()
    ens[3].extra = {"sslQuorum": "false"}

    def handshakes_failed() -> int:
        return sum(m.log_since_start().count("TLS handshake with") for m in (ens[1], ens[2]))

    before = handshakes_failed()
    ens[3].start()
    wait_until(lambda: handshakes_failed() > before, 20, "members 1 and 2 to refuse plain text")
    assert ens[3].mode() not in ("leader", "follower")
    assert ens.wait_ready(sids=[1, 2], timeout=5)
    assert c.get("/served")[0] == b"1"
    c.set("/served", b"2")


@pytest.mark.parametrize("kinds", [["zkpy"] * 3, ["reference", "zkpy", "reference"]],
                         ids=["zkpy", "mixed"])
def test_rolling_upgrade_with_port_unification(pki: Pki, ensembles: list[Ensemble],
                                               kinds: list[str]) -> None:
    """ZooKeeper's documented rolling upgrade to quorum TLS: every member restarted with
    portUnification=true (accepting both), then with sslQuorum=true (dialing TLS), then
    without portUnification; the ensemble serves throughout (zkpy alone, and with two
    Apache ZooKeeper members, PKCS12 stores)."""
    store = "pem"
    if "reference" in kinds:
        require_tool(NETTY_AVAILABLE, "Netty (ZooKeeper's quorum TLS listener detects TLS with it)")
        store = "p12"
    ens = Ensemble(kinds)
    ensembles.append(ens)
    ens.extra_jars = NETTY_JARS if store == "p12" else []
    ens.start(timeout=90)
    c = ens.client()
    steps: list[dict[str, str]] = [
        {**quorum_tls(pki, store), "sslQuorum": "false", "portUnification": "true"},
        {**quorum_tls(pki, store), "portUnification": "true"},
        quorum_tls(pki, store),
    ]
    n = 0
    for step in steps:
        for m in ens.members.values():
            m.stop()
            m.extra = step
            m.start()
            ens.wait_ready(timeout=90)
            n += 1
            c.create(f"/rolling-{n}", b"")
    assert len([x for x in c.get_children("/") if x.startswith("rolling-")]) == 9
    writes_through_every_server(ens, "/rolled")


def mixed_leaders_both_ways(ens: Ensemble, base: str) -> list[str]:
    """Members 1, 2 Java and 3 zkpy: writes through every member; then the leader is
    stopped and the other two elect a leader of the other kind (zkpy's sid 3 beats
    either Java member; with zkpy gone the Java members elect one of theirs), the old
    leader rejoins as its learner, writes again.  Returns the kinds of the two leaders."""
    ens.start(timeout=120)
    writes_through_every_server(ens, f"{base}-1")
    first = ens.leader()
    first.stop()
    ens.wait_ready(timeout=120)
    ens.client(*(m.sid for m in ens.running())).create(f"{base}-while-down", b"d")
    first.start()
    ens.wait_ready(timeout=120)
    second = ens.leader()
    c = ens.client(first.sid)
    c.sync(f"{base}-while-down")
    assert c.get(f"{base}-while-down")[0] == b"d"
    writes_through_every_server(ens, f"{base}-2")
    return [first.kind, second.kind]


def test_mixed_ensemble_with_zookeeper_over_quorum_tls(pki: Pki, ensembles: list[Ensemble]) -> None:
    """Two Apache ZooKeeper 3.8 members and one zkpy member on PKCS12 stores, a zkpy
    leader with Java followers and a Java leader with a zkpy follower."""
    require_tool(NETTY_AVAILABLE, "Netty (ZooKeeper's quorum TLS listener detects TLS with it)")
    ens = Ensemble(["reference", "reference", "zkpy"], extra=quorum_tls(pki, "p12"))
    ensembles.append(ens)
    ens.extra_jars = NETTY_JARS
    assert sorted(mixed_leaders_both_ways(ens, "/mixed-tls")) == ["reference", "zkpy"]
    for m in ens.members.values():
        log = m.log_text()
        assert not trust_failures(log), m
        if m.kind == "reference":
            assert "SSL handshake complete" in log


def test_quorum_store_errors_name_the_key(pki: Pki) -> None:
    base = {"dataDir": "/d", "clientPort": "2181", **quorum_tls(pki, "p12")}
    with pytest.raises(ConfigError, match=r"^ssl.quorum.keyStore.password: cannot open"):
        build_config({**base, "ssl.quorum.keyStore.password": "wrong"})
    with pytest.raises(ConfigError, match=r"^ssl.quorum.trustStore.location: /nonexistent"):
        build_config({**base, "ssl.quorum.trustStore.location": "/nonexistent/t.p12"})
    with pytest.raises(ConfigError, match=r"^ssl.quorum.trustStore.location: not set"):
        build_config({k: v for k, v in base.items() if not k.startswith("ssl.quorum.trustStore")})
    cfg = build_config({**base, "sslQuorumReloadCertFiles": "true"})
    assert cfg.quorum_tls is not None and cfg.quorum_tls.cert_reload and cfg.ssl_quorum


def test_host_name_rules(pki: Pki) -> None:
    """ZKHostnameVerifier's rules on the test certificates: the server certificate has
    DNS:localhost and IP:127.0.0.1; the stranger's has no SAN and CN=client."""
    from cryptography.hazmat.primitives.serialization import Encoding

    server = pki.server.cert.public_bytes(Encoding.DER)
    stranger = pki.stranger.cert.public_bytes(Encoding.DER)
    assert host_matches("127.0.0.1", server) and host_matches("LOCALHOST", server)
    assert not host_matches("127.0.0.2", server) and not host_matches("other", server)
    assert host_matches("client", stranger)  # no SAN: the CN
    assert not host_matches("127.0.0.1", stranger)


def _served_serial(port: int, pki: Pki) -> int | None:
    """The serial number of the certificate a member's election port presents."""
    import socket
    import ssl

    from cryptography import x509

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(pki.ca_pem)
    ctx.load_cert_chain(pki.server.pem)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                ctx.wrap_socket(raw) as s:
            der = s.getpeercert(binary_form=True)
    except OSError:
        return None
    return x509.load_der_x509_certificate(der).serial_number if der else None


def test_quorum_certificate_reload(pki: Pki, tmp_path: Path, ensembles: list[Ensemble]) -> None:
    """sslQuorumReloadCertFiles=true: a key store file replaced on disk is what the
    election port presents to the next connection."""
    import os
    import shutil

    live = tmp_path / "live.pem"
    shutil.copy(pki.server.pem, live)
    ens = Ensemble(["zkpy"] * 3, extra={**quorum_tls(pki, "pem", key=live),
                                        "sslQuorumReloadCertFiles": "true"})
    ensembles.append(ens)
    ens.start(sids=[1], wait=False)
    port = ens[1].election_port
    wait_until(lambda: _served_serial(port, pki) == pki.server.cert.serial_number, 20,
               "the election port to present the first certificate")
    fresh = make_pki(tmp_path / "fresh", ca=pki)
    shutil.copy(fresh.server.pem, tmp_path / "new.pem")
    os.replace(tmp_path / "new.pem", live)
    wait_until(lambda: _served_serial(port, pki) == fresh.server.cert.serial_number, 20,
               "the election port to present the reloaded certificate")
