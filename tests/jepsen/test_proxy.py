"""The fault proxy on its own: an echo server behind one link (fast; no ZooKeeper)."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator

import pytest

from tests.jepsen.nemesis import FaultProxy, _rewrite_initial


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    p = FaultProxy()
    yield p
    p.close()


def roundtrip(s: socket.socket, data: bytes, timeout: float = 2.0) -> bytes | None:
    s.settimeout(timeout)
    s.sendall(data)
    try:
        return s.recv(4096)
    except TimeoutError:
        return None


def test_cut_holds_bytes_and_heal_delivers_them(proxy: FaultProxy, echo_port: int) -> None:
    link = proxy.add(1, 2, "quorum", echo_port)
    proxy.add(2, 1, "quorum", echo_port)
    with socket.create_connection(("127.0.0.1", link.listen_port)) as s:
        assert roundtrip(s, b"hello") == b"hello"
        proxy.cut(1, 2)
        assert roundtrip(s, b"held", timeout=0.5) is None
        proxy.heal()
        s.settimeout(2)
        assert s.recv(4096) == b"held"  # nothing lost: the stream resumes intact


def test_one_way_cut_stops_only_one_direction(proxy: FaultProxy, echo_port: int) -> None:
    link = proxy.add(1, 2, "election", echo_port)
    proxy.add(2, 1, "election", echo_port)
    proxy.add(1, 2, "quorum", echo_port)
    proxy.add(2, 1, "quorum", echo_port)
    with socket.create_connection(("127.0.0.1", link.listen_port)) as s:
        assert roundtrip(s, b"a") == b"a"
        proxy.cut(2, 1, oneway=True)  # 2's bytes to 1 stop: the echo (2 -> 1) is held
        assert roundtrip(s, b"b", timeout=0.5) is None
        proxy.heal()
        s.settimeout(2)
        assert s.recv(4096) == b"b"


def test_reset_closes_connections(proxy: FaultProxy, echo_port: int) -> None:
    link = proxy.add(1, 2, "quorum", echo_port)
    proxy.add(2, 1, "quorum", echo_port)
    proxy.add(1, 2, "election", echo_port)
    proxy.add(2, 1, "election", echo_port)
    with socket.create_connection(("127.0.0.1", link.listen_port)) as s:
        assert roundtrip(s, b"x") == b"x"
        proxy.partition([[1], [2]], reset=True)
        s.settimeout(2)
        try:
            assert s.recv(4096) == b""
        except ConnectionResetError:
            pass
    proxy.heal()
    with socket.create_connection(("127.0.0.1", link.listen_port)) as s:
        assert roundtrip(s, b"y") == b"y"


def test_initial_message_rewrite() -> None:
    head = struct.Struct(">qqi")
    addr = b"127.0.0.1:5555"
    msg = head.pack(-65536, 3, len(addr)) + addr
    out = _rewrite_initial(7777)(msg)
    version, sid, n = head.unpack_from(out)
    assert (version, sid, out[head.size:]) == (-65536, 3, b"127.0.0.1:7777") and n == 14
    assert _rewrite_initial(7777)(struct.pack(">q", 3)) == struct.pack(">q", 3)


def test_client_links_cut_one_client_only(proxy: FaultProxy, echo_port: int) -> None:
    mine = proxy.add(1, 1, "client", echo_port)
    other = proxy.add(2, 1, "client", echo_port)
    assert proxy.client_links(client=1) == [mine] and proxy.client_links(member=1) == [mine, other]
    with socket.create_connection(("127.0.0.1", mine.listen_port)) as a, \
            socket.create_connection(("127.0.0.1", other.listen_port)) as b:
        assert roundtrip(a, b"a") == b"a" and roundtrip(b, b"b") == b"b"
        assert proxy.connected(mine) and proxy.connected(other)
        proxy.cut_links([mine])
        assert roundtrip(a, b"held", timeout=0.5) is None
        assert roundtrip(b, b"still") == b"still"  # the other client's link is untouched
        proxy.heal()
        a.settimeout(2)
        assert a.recv(4096) == b"held"

