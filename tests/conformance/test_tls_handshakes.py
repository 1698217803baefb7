"""Bounded TLS handshakes, with raw sockets that connect and never send a ClientHello:
`zookeeper.netty.server.outstandingHandshake.limit` closes the connections past the limit
at once (Netty's NettyServerCnxnFactory, counted from the accept until the handshake
ends or a unified port's first bytes say plain), and a silent connection to the TLS port
is closed by the server after the handshake timeout (Netty's SslHandler: 10 s)."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest

from tests.conformance.test_tls import TlsServer, assert_secure_client_works, kazoo, start_tls
from tests.conftest import KINDS, four_letter
from tests.tlscerts import Pki


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def silent(port: int, opened: list[socket.socket]) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    opened.append(s)
    return s


def closed_by_server(s: socket.socket, within: float) -> bool:
    """Did the server close s (FIN or reset) within `within` seconds?"""
    s.settimeout(within)
    try:
        return s.recv(16) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def closed_within(socks: list[socket.socket], within: float) -> list[socket.socket]:
    """The sockets the server closed: waits up to `within` for the first, then
    0.5 s more for any other."""
    readable, _, _ = select.select(socks, [], [], within)
    if readable:
        time.sleep(0.5)
        readable, _, _ = select.select(socks, [], [], 0)
    return [s for s in readable if closed_by_server(s, 0.1)]


def mntr(port: int) -> dict[str, str]:
    lines = four_letter(port, "mntr").splitlines()
    return dict(line.split("\t", 1) for line in lines if "\t" in line)


@pytest.mark.parametrize("kind", KINDS)
def test_handshake_limit_on_a_unified_port_and_timeout_on_the_tls_port(
        kind: str, pki: Pki, servers: list[TlsServer], sockets: list[socket.socket]) -> None:
    s = start_tls(kind, pki, extra={"client.portUnification": "true",
                                    "netty.server.outstandingHandshake.limit": "2"})
    servers.append(s)
    plain = s.srv.port
    on_tls_port = silent(s.secure_port, sockets)  # the handshake timeout runs meanwhile
    three = [silent(plain, sockets) for _ in range(3)]
    # Netty activates channels on several worker threads, so which of the three is past
    # the limit is not fixed: exactly one is closed, at once, and two stay waiting
    dropped = closed_within(three, 20)
    assert len(dropped) == 1, f"{len(dropped)} of 3 connections closed, limit 2"
    first, second = (c for c in three if c not in dropped)
    # a 4-letter word on a waiting connection decides it plain: a slot is free again
    first.sendall(b"ruok")
    assert first.recv(16) == b"imok"
    metrics = mntr(plain)  # takes the free slot until its first bytes arrive
    assert metrics["zk_tls_handshake_exceeded"] == "1"
    assert four_letter(plain, "ruok") == "imok"
    assert not closed_by_server(second, 0.2)  # still waiting, still counted
    # the silent client on the TLS port is dropped (Java: Netty's 10 s; zkpy:
    # nio.sessionlessCnxnTimeout, 10 s by default)
    assert closed_by_server(on_tls_port, 30)
    assert_secure_client_works(s, pki)


def test_zkpy_bounds_the_tls_port_too_and_frees_slots_of_silent_clients(
        pki: Pki, servers: list[TlsServer], sockets: list[socket.socket]) -> None:
    """zkpy applies the limit to secureClientPort as well (Java 3.8 reads its `secure`
    flag before it is set, so there only port unification is bounded), and gives each
    counted connection nio.sessionlessCnxnTimeout to finish (Java has no limit on the
    first bytes of a unified port: silent clients there hold their slots for good)."""
    s = start_tls("zkpy", pki, extra={"client.portUnification": "true",
                                      "netty.server.outstandingHandshake.limit": "1",
                                      "nio.sessionlessCnxnTimeout": "1500"})
    servers.append(s)
    tls_silent = silent(s.secure_port, sockets)
    assert closed_by_server(silent(s.secure_port, sockets), 5)
    unified_silent = silent(s.srv.port, sockets)
    assert closed_by_server(silent(s.srv.port, sockets), 5)
    assert closed_by_server(tls_silent, 30) and closed_by_server(unified_silent, 30)
    assert four_letter(s.srv.port, "ruok") == "imok"
    c = kazoo(s.secure_hosts, pki, pki.client)
    try:
        assert c.exists("/") is not None
        metrics = mntr(s.srv.port)
        assert metrics["zk_tls_handshake_exceeded"] == "2"
        assert int(metrics["zk_unsuccessful_handshake"]) >= 1  # the timed-out one
        assert metrics["zk_outstanding_tls_handshake"] == "0"
    finally:
        c.stop()
        c.close()
