"""The AdminServer's status page (`/`) and its JSON, on a standalone zkpy and a 3-server
ensemble, and the page as headless Chromium renders it (Debian's `chromium`).

CI (ZKPY_REQUIRE_REFERENCE=1) fails when chromium is missing; elsewhere the browser test
is skipped.  ZKPY_STATUS_SCREENSHOT=docs/status-page.png also writes the screenshot the
docs show (a second chromium run, not done in CI).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REQUIRE_REFERENCE, ServerProcess, free_port, start_server
from tests.ensemble import Ensemble, wait_until
from tests.test_admin_server import get

SECRET = b"status-page-secret-data"


def status(port: int, path: str = "/status.json") -> Any:
    code, ctype, body = get(port, path)
    assert code == 200 and ctype.startswith("application/json"), (path, code, body[:200])
    return json.loads(body)


def load(hosts: str) -> Any:
    """Znodes of known sizes (one holding SECRET), a watch, and a few hundred requests;
    returns the client (its session and watch stay until it is closed)."""
    from kazoo.client import KazooClient

    c = KazooClient(hosts=hosts, timeout=10)
    c.start(timeout=15)
    c.ensure_path("/status-t")
    for i in range(12):
        c.create(f"/status-t/blob-{i:02}", b"x" * (100 * (i + 1)))
    c.create("/status-t/secret", SECRET)
    c.get("/status-t", watch=lambda e: None)
    for _ in range(300):
        c.get("/status-t/blob-00")
    return c


def close(c: Any) -> None:
    c.stop()
    c.close()


@pytest.fixture(scope="module")
def standalone() -> Iterator[tuple[ServerProcess, int]]:
    admin = free_port()
    srv = start_server("zkpy", {"admin.enableServer": "true", "admin.serverPort": str(admin),
                                "admin.serverAddress": "127.0.0.1"})
    try:
        yield srv, admin
    finally:
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)


def test_standalone_page_and_json(standalone: tuple[ServerProcess, int]) -> None:
    srv, admin = standalone
    code, ctype, page = get(admin, "/")
    assert code == 200 and ctype.startswith("text/html")
    assert b"<title>zkpy status</title>" in page and b"/status/member/" in page
    assert b"src=" not in page and b"href=" not in page  # no external asset
    client = load(srv.hosts)
    def counted() -> Any:
        s = status(admin)
        return s if sum(r[1] for r in s["history"]["samples"]) >= 300 else None

    st = wait_until(counted, 10, "the per-second samples to count the requests")
    assert st["server_state"] == "standalone" and st["members"] == [
        {"sid": 0, "host": "127.0.0.1", "admin_port": admin, "observer": False, "self": True}]
    assert st["watches"] >= 1 and st["sessions"] >= 1 and st["znode_count"] >= 18
    close(client)
    assert st["history"]["columns"] == ["time_ms", "requests", "avg_latency_ms", "max_latency_ms"]
    top = status(admin, "/status/znodes.json")["znodes"]
    assert top[0] == {"path": "/status-t/blob-11", "bytes": 1200}
    assert [z["bytes"] for z in top] == sorted((z["bytes"] for z in top), reverse=True)
    assert len(top) == 10
    stats = status(admin, "/status/member/0/server_stats")
    assert stats["command"] == "server_stats" and stats["server_stats"]["server_state"] == "standalone"
    # only the read-only commands are proxied, only to configured members
    assert get(admin, "/status/member/0/stat_reset")[0] == 404
    assert get(admin, "/status/member/7/server_stats")[0] == 404
    assert get(admin, "/commands/ruok")[0] == 200  # the commands are still there
    for path in ("/", "/status.json", "/status/znodes.json", "/status/member/0/server_stats"):
        assert SECRET not in get(admin, path)[2], path


def chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        if REQUIRE_REFERENCE:
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium (Debian package chromium) is not installed")
    return exe


def render(exe: str, url: str, *args: str) -> str:
    out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--virtual-time-budget=5000", *args, url],
                         capture_output=True, timeout=60, check=True)
    return out.stdout.decode()


def test_ensemble_members_json_and_page_in_chromium() -> None:
    exe = chromium()
    with Ensemble(["zkpy"] * 3) as ens:
        ports = {m.sid: free_port() for m in ens.voters}
        peers = {f"zkpy.admin.serverPort.{sid}": str(p) for sid, p in ports.items()}
        for m in ens.voters:
            m.extra = {"admin.enableServer": "true", "admin.serverPort": str(ports[m.sid]),
                       "admin.serverAddress": "127.0.0.1", **peers}
        ens.start()
        leader = ens.leader()
        client = load(leader.hosts)
        admin = ports[leader.sid]
        st = status(admin)
        assert [(m["sid"], m["admin_port"], m["self"]) for m in st["members"]] == \
            [(sid, ports[sid], sid == leader.sid) for sid in (1, 2, 3)]
        # every member through the leader's AdminServer: one leader, the same epoch
        def serving(sid: int) -> Any:
            d = status(admin, f"/status/member/{sid}/server_stats")
            return d if d["error"] is None else None

        roles = {sid: wait_until(lambda sid=sid: serving(sid), 10, f"server.{sid} serving")
                 ["server_stats"]["server_state"] for sid in (1, 2, 3)}
        assert sorted(roles.values()) == ["follower", "follower", "leader"]
        assert roles[leader.sid] == "leader"
        # a member that is down answers 502, and the page shows it down
        down = ens.followers()[-1]
        down.stop()
        code, _, body = get(admin, f"/status/member/{down.sid}/server_stats")
        assert code == 502 and b"unreachable" in body
        # pipelined behind a proxied (awaited) answer: still answered in order
        with socket.create_connection(("127.0.0.1", admin), timeout=5) as sock:
            sock.sendall(f"GET /status/member/{down.sid}/server_stats HTTP/1.1\r\n\r\n"
                         "GET /commands/ruok HTTP/1.1\r\n\r\n".encode())
            data = b""
            while b'"ruok"' not in data:
                chunk = sock.recv(65536)
                assert chunk, data
                data += chunk
        assert data.startswith(b"HTTP/1.1 502") and data.index(b"unreachable") < data.index(b"200 OK")
        for n in (50, 200, 100, 300):  # a few more samples for the chart
            for _ in range(n):
                client.get("/status-t/blob-00")
            time.sleep(0.4)
        url = f"http://127.0.0.1:{admin}/"
        dom = render(exe, url, "--dump-dom")
        assert 'data-loaded="1"' in dom, dom[-2000:]
        for sid in (1, 2, 3):
            assert f'id="member-{sid}"' in dom
        assert f'id="member-{down.sid}" data-sid="{down.sid}" data-state="down"' in dom
        assert f'id="member-{leader.sid}" data-sid="{leader.sid}" data-state="leader"' in dom
        assert 'id="chart-requests"' in dom and 'id="chart-latency"' in dom
        assert dom.count("<polyline") >= 3
        assert "/status-t/blob-11" in dom and SECRET.decode() not in dom
        shot = os.environ.get("ZKPY_STATUS_SCREENSHOT")
        if shot:
            for k in range(60):  # varying load for a while, so that the docs' chart has a shape
                for i in range(60 + 40 * (k % 9)):
                    if i % 10 == 0:
                        client.set("/status-t/blob-00", b"y" * 100)
                    else:
                        client.get("/status-t/blob-00")
                time.sleep(0.5)
            render(exe, url, f"--screenshot={os.path.abspath(shot)}", "--window-size=1200,900")
        close(client)
