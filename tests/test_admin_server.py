"""The AdminServer and the Prometheus endpoint, against zkpy and Apache ZooKeeper 3.8.

The reference runs with Debian's Jetty 9, servlet-api and Jackson jars on its class path
(libjetty9-java, libservlet-api-java, libjackson2-*), so its AdminServer is real.  Every
command's answer is compared by shape: the same keys (recursively; maps keyed by session
id, path or server id compared by their values' shape) and the same JSON types.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REFERENCE_JARS, ServerProcess, free_port
from tests.ensemble import Ensemble, require_reference

ADMIN_JARS = [f"/usr/share/java/{j}.jar" for j in (
    "jetty9-server", "jetty9-servlet", "jetty9-http", "jetty9-io", "jetty9-util",
    "jetty9-security", "servlet-api", "jackson-core", "jackson-databind", "jackson-annotations")]
ADMIN_AVAILABLE = all(os.path.exists(j) for j in ADMIN_JARS)

COMMANDS = [
    "configuration", "connection_stat_reset", "connections", "dirs", "dump", "environment",
    "get_trace_mask", "hash", "initial_configuration", "is_read_only", "last_snapshot", "leader",
    "monitor", "observer_connection_stat_reset", "observers", "ruok", "server_stats",
    "set_trace_mask", "stat_reset", "stats", "system_properties", "voting_view",
    "watch_summary", "watches", "watches_by_path", "zabstate",
]
# JVM facts with no Python counterpart: compared only for the keys both have
FREE_FORM = {"environment", "system_properties"}


def get(port: int, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def command(port: int, name: str, query: str = "") -> dict[str, Any]:
    status, ctype, body = get(port, f"/commands/{name}{query}")
    assert status == 200 and ctype.startswith("application/json"), (name, status, ctype)
    return json.loads(body)


def shape(v: Any) -> Any:
    """Keys and JSON types; a map keyed by ids or paths becomes {"*": shape of a value}."""
    if isinstance(v, dict):
        if v and all(k.lstrip("-").isdigit() or k.startswith("/") for k in v):
            return {"*": shape(next(iter(v.values())))}
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "float" if isinstance(v, float) else "int"
    return type(v).__name__


def monitor_keys(d: dict[str, Any]) -> set[str]:
    # summary sets keyed by the paths used or by learner id; zkpy keeps neither
    return {k for k in d if not k.endswith("_per_namespace") and "learner_handler_qp" not in k}


def start(kind: str, extra: dict[str, str]) -> ServerProcess:
    workdir = Path(tempfile.mkdtemp(prefix=f"zk-admin-{kind}-"))
    srv = ServerProcess(kind, workdir, extra)
    if kind == "reference":
        saved = list(REFERENCE_JARS)
        REFERENCE_JARS.extend(ADMIN_JARS)
        try:
            srv.start()
        finally:
            REFERENCE_JARS[:] = saved
    else:
        srv.start()
    return srv


def exercise(port: int) -> Any:
    """A session with an ephemeral and watches, so that lists are not empty."""
    from kazoo.client import KazooClient

    c = KazooClient(hosts=f"127.0.0.1:{port}", timeout=10)
    c.start(timeout=15)
    c.ensure_path("/admin-t")
    c.create("/admin-t/eph", b"secret-data", ephemeral=True)
    c.get("/admin-t/eph", watch=lambda e: None)
    c.get_children("/admin-t", watch=lambda e: None)
    for i in range(20):
        c.set("/admin-t", str(i).encode())
        c.get("/admin-t")
    return c


@pytest.fixture(scope="module")
def pair() -> Any:
    require_reference()
    if not ADMIN_AVAILABLE:
        pytest.fail("Jetty/Jackson jars missing: apt-get install libjetty9-java "
                    "libservlet-api-java libjackson2-databind-java")
    servers = {}
    for kind in ("zkpy", "reference"):
        admin = free_port()
        servers[kind] = (start(kind, {"admin.enableServer": "true", "admin.serverPort": str(admin),
                                      "admin.serverAddress": "127.0.0.1"}), admin)
    clients = [exercise(s.port) for s, _ in servers.values()]
    time.sleep(0.3)
    yield servers
    for c in clients:
        c.stop()
        c.close()
    for s, _ in servers.values():
        s.stop()
        shutil.rmtree(s.workdir, ignore_errors=True)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_the_reference_shape(pair: Any, name: str) -> None:
    answers = {kind: command(admin, name) for kind, (_, admin) in pair.items()}
    ours, ref = answers["zkpy"], answers["reference"]
    assert ours["command"] == ref["command"] == name
    assert ("error" in ours) and ours["error"] == ref["error"]
    if name in FREE_FORM:
        assert {"command", "error"} <= set(ours)
        assert all(isinstance(v, str) for k, v in ours.items() if k not in ("command", "error"))
        return
    if name == "monitor":
        assert monitor_keys(ref) <= set(ours)
        for k in monitor_keys(ref):
            assert shape(ours[k]) == shape(ref[k]), k
        return
    assert shape(ours) == shape(ref)


def test_aliases_listing_unknown_and_parameters(pair: Any) -> None:
    for kind, (_, admin) in pair.items():
        assert command(admin, "mntr")["command"] == "monitor"
        assert command(admin, "config")["command"] == "configuration"
        assert command(admin, "nope") == {"command": "nope", "error": "Unknown command: nope"}
        assert command(admin, "stmk", "?traceMask=5")["tracemask"] == 5
        bad = command(admin, "set_trace_mask", "?traceMask=x")
        assert bad["error"] == "setTraceMask requires long traceMask argument, got x", kind
        status, _, listing = get(admin, "/commands")
        assert status == 200
        for n in COMMANDS:
            assert f'href="/commands/{n}"'.encode() in listing, (kind, n)
        assert get(admin, "/elsewhere")[0] == 404


def test_no_znode_data_leaves_through_any_command(pair: Any) -> None:
    _, admin = pair["zkpy"]
    for name in COMMANDS:
        assert b"secret-data" not in get(admin, f"/commands/{name}")[2], name


def test_keep_alive_and_bad_requests(pair: Any) -> None:
    _, admin = pair["zkpy"]
    with socket.create_connection(("127.0.0.1", admin), timeout=5) as s:
        req = b"GET /commands/ruok HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(req * 2)  # pipelined, one connection
        data = b""
        while data.count(b'"command"') < 2:
            chunk = s.recv(65536)
            assert chunk
            data += chunk
        assert data.count(b"HTTP/1.1 200 OK") == 2
    with socket.create_connection(("127.0.0.1", admin), timeout=5) as s:
        s.sendall(b"GARBAGE\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", admin), timeout=5) as s:
        s.sendall(b"GET /" + b"a" * 20000)
        assert s.recv(100).startswith(b"HTTP/1.1 413")


def test_ensemble_commands_have_the_reference_shape() -> None:
    """A 3-server ensemble of each kind: leader and follower answers compared."""
    require_reference()
    answers: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in ("zkpy", "reference"):
        with Ensemble([kind] * 3) as ens:
            ports = {m.sid: free_port() for m in ens.voters}
            for m in ens.voters:
                m.extra = {"admin.enableServer": "true", "admin.serverPort": str(ports[m.sid]),
                           "admin.serverAddress": "127.0.0.1"}
            saved = list(REFERENCE_JARS)
            REFERENCE_JARS.extend(ADMIN_JARS)  # zoo.cfg's admin.enableServer beats the -D flag
            try:
                ens.start()
            finally:
                REFERENCE_JARS[:] = saved
            ens.wait_ready()
            leader = ens.leader()
            follower = ens.followers()[0]
            for role, m in (("leader", leader), ("follower", follower)):
                for name in COMMANDS:
                    answers.setdefault(f"{role}/{name}", {})[kind] = command(ports[m.sid], name)
    wrong = []
    for key, a in answers.items():
        name = key.split("/")[1]
        if name in FREE_FORM:
            continue
        ours, ref = a["zkpy"], a["reference"]
        if name == "monitor":
            missing = monitor_keys(ref) - set(ours)
            if missing:
                wrong.append((key, sorted(missing)))
        elif shape(ours) != shape(ref):
            wrong.append((key, ours, ref))
    assert not wrong, "\n".join(repr(w)[:1500] for w in wrong)


def test_prometheus_endpoint_parses_and_moves() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from zkpy.server.metrics import COUNTERS, SUMMARIES

    port = free_port()
    srv = start("zkpy", {"metricsProvider.className":
                         "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider",
                         "metricsProvider.httpHost": "127.0.0.1", "metricsProvider.httpPort": str(port)})
    try:
        def scrape() -> dict[str, dict[str, float]]:
            status, ctype, body = get(port, "/metrics")
            assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
            out: dict[str, dict[str, float]] = {}
            for fam in text_string_to_metric_families(body.decode()):
                for s in fam.samples:
                    out.setdefault(fam.name, {})[s.name + str(sorted(s.labels.items()))] = s.value
            return out

        before = scrape()
        for name in COUNTERS:
            assert name in before, name
        for name, _ in SUMMARIES:
            assert name in before, name
        for gauge in ("znode_count", "num_alive_connections", "watch_count", "global_sessions",
                      "outstanding_requests", "ephemerals_count", "approximate_data_size"):
            assert gauge in before, gauge
        assert "process_resident_memory_bytes" in before and "python_info" in before
        c = exercise(srv.port)
        after = scrape()
        c.stop()
        c.close()

        def total(fam: str, suffix: str) -> float:
            return sum(v for k, v in after[fam].items() if k.startswith(fam + suffix)) - \
                sum(v for k, v in before[fam].items() if k.startswith(fam + suffix))

        assert total("updatelatency", "_count") >= 20
        assert total("readlatency", "_count") >= 20
        assert total("fsynctime", "_count") >= 1
        assert total("connection_request_count", "") >= 1
        assert total("bytes_received_count", "") > 0
        assert after["znode_count"] != before["znode_count"]
        assert get(port, "/other")[0] == 404
    finally:
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)


def test_a_client_that_never_reads_its_answers_holds_bounded_memory() -> None:
    """Pipelined GETs from a client that never reads: the AdminServer stops reading its
    requests once about WRITE_HIGH_WATER of answers wait (as client connections do), so
    the server does not buffer every answer; other admin clients are still served."""
    admin = free_port()
    srv = start("zkpy", {"admin.enableServer": "true", "admin.serverPort": str(admin),
                         "admin.serverAddress": "127.0.0.1"})
    try:
        size = len(get(admin, "/commands/monitor")[2])
        count = min(20000, (300 << 20) // size)  # ~300 MB of answers if all were buffered
        assert srv.proc is not None
        rss = Path(f"/proc/{srv.proc.pid}/status")

        def rss_mb() -> float:
            line = next(x for x in rss.read_text().splitlines() if x.startswith("VmRSS:"))
            return int(line.split()[1]) / 1024

        before = rss_mb()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", admin))
        s.setblocking(False)
        request = b"GET /commands/monitor HTTP/1.1\r\nHost: x\r\n\r\n" * count
        sent, deadline = 0, time.monotonic() + 5
        while sent < len(request) and time.monotonic() < deadline:  # the server may stop reading
            try:
                sent += s.send(request[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(2)
        grown = rss_mb() - before
        assert get(admin, "/commands/ruok")[0] == 200  # another client is served
        s.close()
        assert grown < 60, f"RSS grew by {grown:.0f} MB for {count} unread answers of {size} bytes"
    finally:
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)
