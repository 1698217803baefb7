"""`zkpy-server status` / `stop`, the pid file, the log file and start-up progress lines,
with real server processes (and zkServer.sh itself where the reference is installed)."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REFERENCE_AVAILABLE, ServerProcess, require_tool, start_server, wait_serving
from tests.ensemble import Ensemble
from zkpy.server.config import build_config
from zkpy.server.lifecycle import PID_NAME, ClientEndpoint, client_endpoint

ZKSERVER_SH = Path("/usr/share/zookeeper/bin/zkServer.sh")
NOT_RUNNING = "Error contacting service. It is probably not running."


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zkpy.server.main", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def zkpy_server() -> Iterator[ServerProcess]:
    srv = start_server("zkpy")
    yield srv
    srv.stop(kill=True)
    shutil.rmtree(srv.workdir, ignore_errors=True)


def test_status_then_stop_then_status(zkpy_server: ServerProcess) -> None:
    cfg = str(zkpy_server.workdir / "zoo.cfg")
    pid_file = zkpy_server.data_dir / PID_NAME
    assert zkpy_server.proc is not None
    assert pid_file.read_text() == str(zkpy_server.proc.pid)  # no newline, as zkServer.sh

    st = cli("status", cfg)
    assert st.returncode == 0, st
    lines = st.stdout.splitlines()
    assert lines[0] == (f"Client port found: {zkpy_server.port}. Client address: localhost. "
                        "Client SSL: false.")
    assert lines[1] == "Mode: standalone"
    assert lines[2].startswith("Zxid: 0x")
    assert f"Using config: {cfg}" in st.stderr

    sp = cli("stop", cfg)
    assert sp.returncode == 0, sp
    assert sp.stdout.strip() == "Stopping zookeeper ... STOPPED"
    assert zkpy_server.proc.poll() == 0  # ended (and exited cleanly) before stop returned
    assert not pid_file.exists()

    st = cli("status", cfg)
    assert st.returncode == 1
    assert st.stdout.splitlines()[-1] == NOT_RUNNING

    again = cli("stop", cfg)
    assert again.returncode == 0
    assert again.stdout.strip() == ("Stopping zookeeper ... no zookeeper to stop "
                                    f"(could not find file {pid_file})")


def test_stale_pid_file_is_removed(tmp_path: Path) -> None:
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(f"dataDir={tmp_path / 'data'}\nclientPort=1\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_file = tmp_path / "data" / PID_NAME
    pid_file.parent.mkdir()
    pid_file.write_text(str(dead.pid))
    sp = cli("stop", str(cfg))
    assert sp.returncode == 0
    assert "removed stale" in sp.stdout and f"pid {dead.pid}, which is not running" in sp.stdout
    assert not pid_file.exists()


def test_stop_says_when_the_process_outlives_the_timeout(tmp_path: Path) -> None:
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(f"dataDir={tmp_path / 'data'}\nclientPort=1\n")
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                 "print('ready', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE)
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / PID_NAME).write_text(str(stubborn.pid))
        sp = cli("stop", str(cfg), "--timeout", "0.5")
        assert sp.returncode == 1
        assert "NOT STOPPED" in sp.stdout and str(stubborn.pid) in sp.stdout
        assert stubborn.poll() is None
        assert (tmp_path / "data" / PID_NAME).exists()  # it still names a live server
    finally:
        stubborn.kill()
        stubborn.wait()


def test_a_refused_second_server_leaves_the_pid_file(zkpy_server: ServerProcess) -> None:
    """The pid file is written after the data-dir lock is taken."""
    assert zkpy_server.proc is not None
    second = zkpy_server.workdir / "second.cfg"
    second.write_text(f"dataDir={zkpy_server.data_dir}\nclientPort=0\nadmin.enableServer=false\n")
    r = cli("start", str(second))
    assert r.returncode != 0 and "in use by another server" in r.stderr
    assert (zkpy_server.data_dir / PID_NAME).read_text() == str(zkpy_server.proc.pid)


def test_client_endpoint_as_zkserver_sh(tmp_path: Path) -> None:
    (tmp_path / "myid").write_text("2\n")
    base = {"dataDir": str(tmp_path), "initLimit": "5", "syncLimit": "2",
            "server.1": "h1:2888:3888;2181", "server.2": "h2:2888:3888;10.0.0.2:2182"}
    assert client_endpoint(build_config(base)) == ClientEndpoint(2182, "10.0.0.2", False)
    with_port = build_config({**base, "clientPort": "2190", "clientPortAddress": "127.0.0.1"})
    assert client_endpoint(with_port) == ClientEndpoint(2190, "127.0.0.1", False)
    alone = build_config({"dataDir": str(tmp_path)})
    assert isinstance(client_endpoint(alone), str)


def test_ensemble_members_report_their_roles() -> None:
    with Ensemble(["zkpy", "zkpy", "zkpy"]) as ens:
        ens.start()
        modes = {}
        for m in ens.members.values():
            st = cli("status", str(m.workdir / "zoo.cfg"))
            assert st.returncode == 0, st
            lines = st.stdout.splitlines()
            assert lines[0] == (f"Client port found: {m.client_port}. Client address: 127.0.0.1. "
                                "Client SSL: false.")
            modes[m.sid] = lines[1].removeprefix("Mode: ")
            assert lines[2].startswith("Zxid: 0x")
        assert sorted(modes.values()) == ["follower", "follower", "leader"]


def _write_big_snapshot(data_dir: Path, count: int) -> None:
    from zkpy.datatree.tree import DataTree, Znode
    from zkpy.jute.records import OPEN_ACL_UNSAFE
    from zkpy.persistence.snapshot import write_snapshot

    tree = DataTree()
    tree.nodes["/big"] = Znode(b"", OPEN_ACL_UNSAFE, 1, 1, 0)
    tree.nodes["/"].children = {"big"}
    names = {f"n{i:06d}" for i in range(count)}
    for i, name in enumerate(sorted(names)):
        tree.nodes[f"/big/{name}"] = Znode(b"x" * 20, OPEN_ACL_UNSAFE, 2 + i, 1, 0)
    tree.nodes["/big"].children = names
    tree.last_processed_zxid = count + 1
    (data_dir / "version-2").mkdir(parents=True)
    write_snapshot(tree, data_dir / "version-2" / f"snapshot.{count + 1:x}", True)


def test_log_file_under_zoo_log_dir_rotates(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    srv = ServerProcess("zkpy", tmp_path, jvm_flags=["-Dzookeeper.log.maxfilesize=1KB",
                                                     "-Dzookeeper.log.maxbackupindex=2"])
    cfg = srv.write_config()
    out = tmp_path / "zookeeper.out"
    env = {**os.environ, "ZOO_LOG_DIR": str(logs), "SERVER_JVMFLAGS": " ".join(srv.jvm_flags)}
    for _ in range(3):
        with open(out, "ab") as f:
            proc = subprocess.Popen([sys.executable, "-m", "zkpy.server.main", "start", str(cfg)],
                                    stdout=f, stderr=subprocess.STDOUT, env=env)
        try:
            wait_serving(srv.port, proc, out)
        finally:
            proc.terminate()
            proc.wait(30)
    assert out.read_text() == ""  # nothing on stderr once the log goes to a file
    name = f"zookeeper-{getpass.getuser()}-server-{socket.gethostname()}.log"
    files = sorted(p.name for p in logs.iterdir())
    assert files == [name, f"{name}.1", f"{name}.2"], files  # rotated, two backups kept
    assert all(p.stat().st_size <= 1024 + 300 for p in logs.iterdir())
    assert "INFO zkpy.server: stopped" in (logs / name).read_text()


def test_progress_lines_above_the_threshold(tmp_path: Path) -> None:
    from kazoo.client import KazooClient

    _write_big_snapshot(tmp_path / "data", 20000)
    srv = ServerProcess("zkpy", tmp_path, {"zkpy.progress.txns": "10"})
    srv.start()  # the default threshold (64 MiB): no progress lines for 2 MB
    try:
        c = KazooClient(hosts=srv.hosts, timeout=10)
        c.start(10)
        for i in range(45):
            c.create(f"/t{i}", b"v")
        c.stop()
        c.close()
    finally:
        srv.stop(kill=True)  # no snapshot at shutdown: the next start replays the 45 txns
    text = srv.log_text()
    assert "loading snapshot" not in text and "replayed" not in text
    srv.extra["zkpy.progress.snapshotBytes"] = "100000"
    srv.start()
    srv.stop()
    text = srv.log_text()
    for pct in (10, 50, 90):
        assert f"loading snapshot.{20001:x}: {pct}% (" in text, text[-3000:]
    assert "znodes," in text and "of 2 MB)" in text
    assert "replayed 40 txns (to zxid 0x" in text and "replayed 50" not in text


def test_same_output_as_zkserver_sh(zkpy_server: ServerProcess) -> None:
    """zkServer.sh status prints what `zkpy-server status` prints (zkpy adds a Zxid line),
    and zkServer.sh stop stops a zkpy server through the pid file zkpy wrote."""
    require_tool(REFERENCE_AVAILABLE and ZKSERVER_SH.exists(), "Debian's zkServer.sh")
    cfg = str(zkpy_server.workdir / "zoo.cfg")

    def sh(cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(ZKSERVER_SH), cmd, cfg], capture_output=True, text=True,
                              timeout=60)

    ours, theirs = cli("status", cfg), sh("status")
    assert theirs.returncode == ours.returncode == 0
    assert ours.stdout.splitlines()[:2] == theirs.stdout.splitlines()
    assert zkpy_server.proc is not None
    stopped = sh("stop")
    assert stopped.stdout.strip() == "Stopping zookeeper ... STOPPED"
    zkpy_server.proc.wait(30)
    ours, theirs = cli("status", cfg), sh("status")
    assert theirs.returncode == ours.returncode == 1
    assert ours.stdout.splitlines() == theirs.stdout.splitlines()
    assert ours.stdout.splitlines()[-1] == NOT_RUNNING
