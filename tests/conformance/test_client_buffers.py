"""Buffers a client can fill: replies to a client that never reads them.

A client that pipelines reads for a large znode and never reads the answers must not
make the server buffer all of them: the server stops reading from that connection
while its replies cannot leave, its memory stays flat, and every other client is
served meanwhile.  Each test starts its own server, so that the memory figures are
not those of the shared one.
"""

from __future__ import annotations

import shutil
import socket
import struct
import time
from pathlib import Path

from kazoo.client import KazooClient

from tests.conformance import rawconn
from tests.conftest import ServerProcess, start_server

DATA_SIZE = 1_000_000
REQUESTS = 900
GROWTH_LIMIT_MB = 150


def rss_mb(srv: ServerProcess) -> float:
    assert srv.proc is not None
    for line in Path(f"/proc/{srv.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def slow_reader(port: int) -> socket.socket:
    """A session on a socket with a tiny receive buffer (set before connecting, so the
    advertised window stays small too)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    req = struct.pack(">iqiq", 0, 0, 30000, 0) + rawconn.buffer(b"\0" * 16) + b"\0"
    s.sendall(struct.pack(">i", len(req)) + req)
    head = b""
    while len(head) < 4:
        head += s.recv(4 - len(head))
    (n,) = struct.unpack(">i", head)
    body = b""
    while len(body) < n:
        body += s.recv(n - len(body))
    assert struct.unpack_from(">q", body, 8)[0] != 0, "no session"
    return s


def read_replies(s: socket.socket, count: int, timeout: float) -> list[tuple[int, int, int]]:
    """(xid, err, body length) of the next count frames."""
    buf = bytearray()
    out: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + timeout
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    chunk = bytearray(1 << 20)
    while len(out) < count:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        n = s.recv_into(chunk)
        if n == 0:
            raise AssertionError(f"closed after {len(out)} replies")
        buf += chunk[:n]
        while len(buf) >= 4:
            (flen,) = struct.unpack_from(">i", buf)
            if len(buf) < 4 + flen:
                break
            xid, _zxid, err = struct.unpack_from(">iqi", buf, 4)
            out.append((xid, err, flen - 16))
            del buf[:4 + flen]
    return out


def test_replies_to_a_client_that_never_reads_stay_bounded(server):
    """900 getData of a 1 MB znode from a client that does not read: the server's RSS
    grows by less than 150 MB (ZooKeeper: about 25 MB), another client keeps working,
    and once the slow client reads it gets every reply, in order."""
    srv = start_server(server.kind)
    other = KazooClient(hosts=srv.hosts, timeout=10)
    slow: socket.socket | None = None
    try:
        other.start(timeout=15)
        other.create("/big", b"x" * DATA_SIZE)
        other.create("/small", b"0")
        time.sleep(0.5)
        before = rss_mb(srv)
        slow = slow_reader(srv.port)
        body = rawconn.path_watch("/big", False)
        frames = b"".join(struct.pack(">iii", 8 + len(body), xid, rawconn.GET_DATA) + body
                          for xid in range(1, REQUESTS + 1))
        slow.sendall(frames)
        peak = before
        served = 0
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            t = time.monotonic()
            other.set("/small", str(served).encode())
            assert other.get("/small")[0] == str(served).encode()
            assert time.monotonic() - t < 2, "another client waited for the slow one"
            served += 1
            peak = max(peak, rss_mb(srv))
            time.sleep(0.05)
        assert peak - before < GROWTH_LIMIT_MB, f"RSS grew from {before:.0f} to {peak:.0f} MB"
        assert served > 20
        replies = read_replies(slow, REQUESTS, 120)
        assert [r[0] for r in replies] == list(range(1, REQUESTS + 1))
        assert all(err == 0 and size == 4 + DATA_SIZE + 68 for _x, err, size in replies)
    finally:
        if slow is not None:
            slow.close()
        other.stop()
        other.close()
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)
