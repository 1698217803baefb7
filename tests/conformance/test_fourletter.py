"""Four-letter words on the client port: the shapes tools (zkServer.sh, kazoo, monitoring) parse.

Numbers vary between runs and implementations, so the assertions are on line shapes and on
relations that hold on any ZooKeeper (e.g. the Zxid line is at least the zxid of a write we
just made, our own connection is listed by `cons` with our session id).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REFERENCE_AVAILABLE, REQUIRE_REFERENCE, ServerProcess, four_letter

SRVR_LINES = [
    r"Zookeeper version: \d+\.\d+\.\d+.*, built on .*",
    r"Latency min/avg/max: \d+/\d+(\.\d+)?/\d+",
    r"Received: \d+",
    r"Sent: \d+",
    r"Connections: \d+",
    r"Outstanding: \d+",
    r"Zxid: 0x[0-9a-f]+",
    r"Mode: standalone",
    r"Node count: \d+",
]


def _kv(text: str, sep: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if sep in line:
            k, v = line.split(sep, 1)
            out[k] = v
    return out


def _local_port(zk) -> int:
    return zk._connection._socket.getsockname()[1]


def _check_srvr_body(lines: list[str]) -> None:
    assert len(lines) == len(SRVR_LINES), lines
    for pattern, line in zip(SRVR_LINES, lines, strict=True):
        assert re.fullmatch(pattern, line), (pattern, line)
    lo, avg, hi = lines[1].split(": ")[1].split("/")
    # Latencies are whole milliseconds; the average of them cannot exceed the maximum.
    assert int(lo) <= float(avg) <= int(hi), lines[1]


def test_ruok(server):
    assert four_letter(server.port, "ruok") == "imok"
    # `echo ruok | nc` sends a trailing newline; only the first four bytes count.
    assert four_letter(server.port, "ruok\n") == "imok"


def test_srvr_shape(server, zk, base):
    stat = zk.set(base, b"x")
    out = four_letter(server.port, "srvr")
    assert out.endswith("\n")
    lines = out.split("\n")[:-1]
    assert lines[0].startswith("Zookeeper version: ")
    _check_srvr_body(lines)
    fields = _kv(out, ": ")
    assert int(fields["Zxid"], 16) >= stat.mzxid
    assert int(fields["Connections"]) >= 1
    assert int(fields["Node count"]) >= 5  # /, /zookeeper, /zookeeper/config, /zookeeper/quota, base


def test_srvr_counts_move(server, zk, base):
    before = _kv(four_letter(server.port, "srvr"), ": ")
    for i in range(5):
        zk.create(f"{base}/n{i}")
    after = _kv(four_letter(server.port, "srvr"), ": ")
    assert int(after["Received"]) >= int(before["Received"]) + 5
    assert int(after["Sent"]) >= int(before["Sent"]) + 5
    assert int(after["Zxid"], 16) >= int(before["Zxid"], 16) + 5
    assert int(after["Node count"]) >= int(before["Node count"]) + 5


def test_stat_lists_clients(server, zk, base):
    port = _local_port(zk)
    out = four_letter(server.port, "stat")
    lines = out.split("\n")
    assert lines[0].startswith("Zookeeper version: ")
    assert lines[1] == "Clients:"
    end = lines.index("", 2)
    clients = lines[2:end]
    for c in clients:
        assert re.fullmatch(r" /127\.0\.0\.1:\d+\[[0-9a-f]+\]\(queued=\d+,recved=\d+,sent=\d+\)", c), c
    assert any(c.startswith(f" /127.0.0.1:{port}[") for c in clients), (port, clients)
    body = lines[end + 1:]
    assert body[-1] == ""
    _check_srvr_body([lines[0], *body[:-1]])


def test_cons_shows_session(server, zk, base):
    zk.get(base)
    sid = zk.client_id[0]
    port = _local_port(zk)
    out = four_letter(server.port, "cons")
    assert out.endswith("\n\n")
    lines = out[:-2].split("\n")
    mine = [line for line in lines if line.startswith(f" /127.0.0.1:{port}[")]
    assert len(mine) == 1, lines
    m = re.fullmatch(
        r" /127\.0\.0\.1:\d+\[[0-9a-f]+\]\(queued=\d+,recved=\d+,sent=\d+,sid=0x([0-9a-f]+),"
        r"lop=(\w+),est=\d+,to=(\d+),lcxid=0x[0-9a-f]+,lzxid=0x[0-9a-f]+,lresp=\d+,"
        r"llat=\d+,minlat=\d+,avglat=\d+,maxlat=\d+\)",
        mine[0],
    )
    assert m, mine[0]
    assert int(m.group(1), 16) == sid
    assert m.group(2) == "GETD"
    assert int(m.group(3)) == 10000  # kazoo asked for 10 s; within [4000, 40000]
    # The 4lw connection itself is listed without session details.
    for line in lines:
        assert re.fullmatch(r" /127\.0\.0\.1:\d+\[[0-9a-f]+\]\(queued=\d+,recved=\d+,sent=\d+(,.*)?\)", line)


MNTR_KEYS = {
    "zk_version", "zk_server_state", "zk_avg_latency", "zk_max_latency", "zk_min_latency",
    "zk_packets_received", "zk_packets_sent", "zk_num_alive_connections", "zk_outstanding_requests",
    "zk_uptime", "zk_znode_count", "zk_watch_count", "zk_ephemerals_count",
    "zk_approximate_data_size", "zk_global_sessions", "zk_local_sessions",
    "zk_open_file_descriptor_count", "zk_max_file_descriptor_count",
}


def test_mntr_shape(server, zk, base):
    out = four_letter(server.port, "mntr")
    assert out.endswith("\n")
    rows = out[:-1].split("\n")
    for row in rows:
        assert re.fullmatch(r"zk_\S+\t.*", row), row
    kv = _kv(out, "\t")
    assert MNTR_KEYS <= kv.keys(), MNTR_KEYS - kv.keys()
    assert kv["zk_server_state"] == "standalone"
    assert re.match(r"\d+\.\d+\.\d+", kv["zk_version"])
    for k in MNTR_KEYS - {"zk_version", "zk_server_state", "zk_avg_latency"}:
        assert re.fullmatch(r"-?\d+", kv[k]), (k, kv[k])
    assert float(kv["zk_avg_latency"]) >= 0
    assert int(kv["zk_znode_count"]) >= 5
    assert int(kv["zk_global_sessions"]) >= 1
    assert int(kv["zk_num_alive_connections"]) >= 1


def test_mntr_counts_watches_and_ephemerals(server, zk, base, make_client):
    other = make_client()

    def counts():
        kv = _kv(four_letter(server.port, "mntr"), "\t")
        return int(kv["zk_watch_count"]), int(kv["zk_ephemerals_count"])

    w0, e0 = counts()
    other.create(f"{base}/e1", ephemeral=True)
    other.create(f"{base}/e2", ephemeral=True)
    other.get(f"{base}/e1", watch=lambda e: None)            # data table
    other.get_children(base, watch=lambda e: None)           # child table
    other.exists(f"{base}/missing", watch=lambda e: None)    # data table, missing node
    w1, e1 = counts()
    assert e1 - e0 == 2
    # zk_watch_count is data-table + child-table watches (unlike wchs, which is data only).
    assert w1 - w0 == 3


def test_conf_shape(server):
    out = four_letter(server.port, "conf")
    keys = [line.split("=", 1)[0] for line in out.splitlines()]
    assert keys[:12] == [
        "clientPort", "secureClientPort", "dataDir", "dataDirSize", "dataLogDir", "dataLogSize",
        "tickTime", "maxClientCnxns", "minSessionTimeout", "maxSessionTimeout",
        "clientPortListenBacklog", "serverId",
    ]
    kv = _kv(out, "=")
    assert kv["clientPort"] == str(server.port)
    assert kv["tickTime"] == "2000"
    assert kv["minSessionTimeout"] == "4000"
    assert kv["maxSessionTimeout"] == "40000"
    assert kv["maxClientCnxns"] == "0"
    assert kv["dataDir"] == str(server.data_dir / "version-2")
    assert re.fullmatch(r"\d+", kv["dataDirSize"])


ENVI_KEYS = [
    "zookeeper.version", "host.name", "java.version", "java.vendor", "java.home", "java.class.path",
    "java.library.path", "java.io.tmpdir", "java.compiler", "os.name", "os.arch", "os.version",
    "user.name", "user.home", "user.dir", "os.memory.free", "os.memory.max", "os.memory.total",
]


def test_envi_shape(server):
    out = four_letter(server.port, "envi")
    lines = out.splitlines()
    assert lines[0] == "Environment:"
    # kazoo's server_version() relies on the version being the first property.
    assert re.fullmatch(r"zookeeper\.version=\d+\.\d+\.\d+.*", lines[1])
    assert [line.split("=", 1)[0] for line in lines[1:]] == ENVI_KEYS


def test_kazoo_server_version(zk):
    version = zk.server_version()
    assert isinstance(version, tuple) and len(version) >= 3
    assert version[:2] >= (3, 5)


def test_watch_words(server, zk, base, make_client):
    other = make_client()
    sid = other.client_id[0]
    zk.create(f"{base}/d")
    zk.create(f"{base}/c")
    other.get(f"{base}/d", watch=lambda e: None)
    other.exists(f"{base}/gone", watch=lambda e: None)
    other.get_children(f"{base}/c", watch=lambda e: None)    # child table: not reported

    wchs = four_letter(server.port, "wchs")
    assert re.fullmatch(r"\d+ connections watching \d+ paths\nTotal watches:\d+\n", wchs), wchs

    wchc = four_letter(server.port, "wchc")
    assert wchc.endswith("\n\n")
    blocks = {}
    current = None
    for line in wchc[:-2].split("\n"):
        if line.startswith("\t"):
            blocks[current].add(line[1:])
        else:
            assert re.fullmatch(r"0x[0-9a-f]+", line), line
            current = int(line, 16)
            blocks[current] = set()
    assert blocks[sid] == {f"{base}/d", f"{base}/gone"}

    wchp = four_letter(server.port, "wchp")
    assert wchp.endswith("\n\n")
    by_path: dict[str, set[int]] = {}
    current_path = ""
    for line in wchp[:-2].split("\n"):
        if line.startswith("\t"):
            by_path[current_path].add(int(line[1:], 16))
        else:
            current_path = line
            by_path[line] = set()
    assert sid in by_path[f"{base}/d"]
    assert sid in by_path[f"{base}/gone"]
    assert f"{base}/c" not in by_path


def test_dirs_isro_resets(server):
    assert re.fullmatch(r"datadir_size: \d+\nlogdir_size: \d+\n", four_letter(server.port, "dirs"))
    assert four_letter(server.port, "isro") == "rw"
    assert four_letter(server.port, "crst") == "Connection stats reset.\n"
    assert four_letter(server.port, "srst") == "Server stats reset.\n"
    assert re.fullmatch(r"\d+", four_letter(server.port, "gtmk"))


def test_dump_lists_ephemerals(server, zk, base):
    p1 = zk.create(f"{base}/e1", ephemeral=True)
    p2 = zk.create(f"{base}/e2", ephemeral=True)
    sid = zk.client_id[0]
    out = four_letter(server.port, "dump")
    lines = out.splitlines()
    assert lines[0] == "SessionTracker dump:"
    assert "ephemeral nodes dump:" in lines and "Connections dump:" in lines
    assert any(re.fullmatch(r"Sessions with Ephemerals \(\d+\):", line) for line in lines)
    i = lines.index(f"0x{sid:x}:")
    assert {p1, p2} <= {line[1:] for line in lines[i + 1:] if line.startswith("\t")}


def test_unknown_word_closes_silently(server):
    # Not a known word: read as a (huge) frame length and the connection is dropped.
    assert four_letter(server.port, "xxxx") == ""
    assert four_letter(server.port, "ruok") == "imok"


class _DefaultWhitelistServer(ServerProcess):
    """A server whose zoo.cfg has no 4lw.commands.whitelist line at all."""

    def write_config(self) -> Path:
        cfg = super().write_config()
        lines = [x for x in cfg.read_text().splitlines() if not x.startswith("4lw.commands.whitelist")]
        cfg.write_text("\n".join(lines) + "\n")
        return cfg


@pytest.fixture
def default_whitelist_server(server):
    if server.kind == "reference" and not REFERENCE_AVAILABLE:
        if REQUIRE_REFERENCE:
            pytest.fail("the reference Apache ZooKeeper is not installed")
        pytest.skip("reference Apache ZooKeeper is not installed")
    workdir = Path(tempfile.mkdtemp(prefix=f"zk-{server.kind}-4lw-"))
    srv = _DefaultWhitelistServer(server.kind, workdir).start()
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_default_whitelist(default_whitelist_server):
    port = default_whitelist_server.port
    assert "Mode: standalone" in four_letter(port, "srvr")
    for word in ("ruok", "stat", "envi", "mntr", "cons", "wchs", "conf", "dump", "isro"):
        assert four_letter(port, word) == f"{word} is not executed because it is not in the whitelist.\n"
    assert "Node count:" in four_letter(port, "srvr")
