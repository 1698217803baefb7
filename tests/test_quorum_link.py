"""QuorumLink in one process: the host-name check's paths (IP SAN, DNS SAN by the
configured name, CN only without SANs, ssl.quorum.hostnameVerification=false),
ssl.quorum.clientAuth=none, SASL that fails while serverRequireSasl=false, and
cnxTimeout bounding an election dial."""

from __future__ import annotations

import asyncio
import datetime
import socket
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import free_port
from tests.tlscerts import Pki
from zkpy.election.transport import ElectionTransport
from zkpy.server.config import build_config
from zkpy.server.quorum_link import QuorumLink
from zkpy.server.quorum_security import QuorumSaslSettings


def leaf(pki: Pki, d: Path, name: str, cn: str, sans: list[x509.GeneralName]) -> Path:
    """A PEM key store whose certificate (from the test CA) has this CN and these SANs."""
    assert pki.ca_key is not None
    key = ec.generate_private_key(ec.SECP256R1())
    ca = x509.load_pem_x509_certificate(pki.ca_pem.read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - day).not_valid_after(now + day))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = b.sign(pki.ca_key, hashes.SHA256())
    path = d / f"{name}.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
                     + cert.public_bytes(serialization.Encoding.PEM))
    return path


def link(pki: Pki, key: Path | None, sasl: QuorumSaslSettings | None = None, **over: str) -> QuorumLink:
    """A member's link: with `key`, from zoo.cfg keys for quorum TLS with that key store."""
    if key is None:
        return QuorumLink(None, False, False, sasl, 2.0)
    return QuorumLink.from_config(build_config({
        "dataDir": "/d", "sslQuorum": "true", "ssl.quorum.keyStore.location": str(key),
        "ssl.quorum.trustStore.location": str(pki.ca_pem), **over}))


async def exchange(server: QuorumLink, client: QuorumLink, host: str) -> bytes | None:
    """What the accepting side's protocol receives from a dialer writing b"hello, peer" once
    connected; None when either side refuses the connection."""
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    class Sink(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            if not got.done():
                got.set_result(data)

    listener = await server.serve(Sink, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        transport, _ = await client.connect(asyncio.Protocol, host, port)
    except OSError:
        listener.close()
        return None
    transport.write(b"hello, peer")  # 8 bytes at least: a FOLLOWERINFO is longer
    try:
        return await asyncio.wait_for(got, 1.5)
    except TimeoutError:
        return None
    finally:
        transport.close()
        listener.close()


def run(server: QuorumLink, client: QuorumLink, host: str = "127.0.0.1") -> bytes | None:
    return asyncio.run(exchange(server, client, host))


def test_host_name_check(pki: Pki, tmp_path: Path) -> None:
    ip = leaf(pki, tmp_path, "ip", "nobody", [x509.IPAddress(IPv4Address("127.0.0.1"))])
    dns = leaf(pki, tmp_path, "dns", "nobody", [x509.DNSName("localhost")])
    wildcard = leaf(pki, tmp_path, "wild", "localhost", [x509.DNSName("*.localhost")])
    cn_only = leaf(pki, tmp_path, "cn", "localhost", [])
    # the dialer checks the acceptor's certificate: IP SAN for the address, then the
    # name in server.N (here "localhost"); a CN counts only without any SAN
    assert run(link(pki, dns), link(pki, ip), "localhost") == b"hello, peer"
    assert run(link(pki, cn_only), link(pki, ip), "localhost") == b"hello, peer"
    assert run(link(pki, wildcard), link(pki, ip), "localhost") is None
    # the acceptor checks the dialer's: IP SAN, else the reverse DNS name of its address
    assert run(link(pki, ip), link(pki, ip)) == b"hello, peer"
    reverse = socket.getnameinfo(("127.0.0.1", 0), socket.NI_NAMEREQD)[0]
    assert (run(link(pki, ip), link(pki, dns)) == b"hello, peer") == (reverse == "localhost")
    assert run(link(pki, ip, **{"ssl.quorum.allowReverseDnsLookup": "false"}), link(pki, dns)) is None
    assert run(link(pki, ip), link(pki, wildcard)) is None
    assert run(link(pki, ip), link(pki, wildcard, **{"ssl.quorum.hostnameVerification": "false"})) is None
    assert run(link(pki, ip, **{"ssl.quorum.hostnameVerification": "false"}),
               link(pki, wildcard, **{"ssl.quorum.hostnameVerification": "false"})) == b"hello, peer"
    # an untrusted certificate is refused whatever the names say
    assert run(link(pki, ip), link(pki, pki.stranger.pem, **{"ssl.quorum.hostnameVerification": "false"}),
               ) is None


def test_client_auth_none(pki: Pki, tmp_path: Path) -> None:
    """ssl.quorum.clientAuth=none: the acceptor asks for no certificate and checks none."""
    ip = leaf(pki, tmp_path, "ip", "nobody", [x509.IPAddress(IPv4Address("127.0.0.1"))])
    wildcard = leaf(pki, tmp_path, "wild", "localhost", [x509.DNSName("*.localhost")])
    assert run(link(pki, ip, **{"ssl.quorum.clientAuth": "none"}), link(pki, wildcard)) == b"hello, peer"


def test_sasl_failure_without_require_is_let_through(pki: Pki) -> None:
    """serverRequireSasl=false: a dialer that fails SASL is told ERROR and fails itself
    (its learnerRequireSasl); one that does not try is let through."""
    server = QuorumSaslSettings(learner_require=True, server_require=False, credentials={"peer": "pw"},
                                learner_user="peer", learner_password="pw")
    wrong = QuorumSaslSettings(learner_require=True, server_require=True, credentials={},
                               learner_user="peer", learner_password="nope")
    silent = QuorumSaslSettings(learner_require=False, server_require=False)
    assert run(link(pki, None, server), link(pki, None, wrong)) is None
    assert run(link(pki, None, server), link(pki, None, silent)) == b"hello, peer"
    assert run(link(pki, None, server), link(pki, None, server)) == b"hello, peer"
    strict = QuorumSaslSettings(learner_require=True, server_require=True, credentials={"peer": "pw"},
                                learner_user="peer", learner_password="pw")
    assert run(link(pki, None, strict), link(pki, None, silent)) is None


async def test_cnx_timeout_bounds_an_election_dial_to_a_silent_member(pki: Pki, tmp_path: Path) -> None:
    """A member that accepts TCP and never answers the TLS handshake is given up on after
    cnxTimeout (200 ms here), well before the 5 s default."""
    key = leaf(pki, tmp_path, "m", "127.0.0.1", [x509.IPAddress(IPv4Address("127.0.0.1"))])
    member = link(pki, key, cnxTimeout="200")
    assert member.timeout == 0.2
    given_up = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # the ClientHello, then EOF once the dialer gives up
        given_up.set()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = ElectionTransport(1, ("127.0.0.1", free_port()), {2: ("127.0.0.1", port)},
                                  lambda sid, payload: None, link=member)
    try:
        transport.send(2, b"vote")
        await asyncio.wait_for(given_up.wait(), 3.0)
        assert not transport.connected(2)
    finally:
        await transport.close()
        server.close()
