"""Security-relevant zoo.cfg settings, run against zkpy and the reference server: what
skipACL values really do, and which listeners a server opens without a client port.
(Keys that zkpy refuses are covered in tests/test_config.py: the reference would start.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import READ_ACL_UNSAFE

from tests.conftest import KINDS, REFERENCE_AVAILABLE, REFERENCE_JARS, start_server


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value,skipped", [("true", False), ("yes", True)])
def test_skip_acl_needs_exactly_yes(kind: str, value: str, skipped: bool) -> None:
    srv = start_server(kind, {"skipACL": value})
    c = KazooClient(hosts=srv.hosts, timeout=10)
    try:
        c.start(timeout=15)
        c.create("/ro", b"0", acl=READ_ACL_UNSAFE)
        if skipped:
            c.set("/ro", b"1")
            assert c.get("/ro")[0] == b"1"
        else:
            with pytest.raises(NoAuthError):
                c.set("/ro", b"1")
    finally:
        c.stop()
        c.close()
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)


def _listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state held by the process (its socket inodes in /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.parametrize("kind", KINDS)
def test_no_client_port_opens_no_listener(kind: str) -> None:
    """Neither clientPort nor secureClientPort: Apache ZooKeeper 3.8 logs "clientPort is
    not set", starts, and listens nowhere (zkpy used to serve on 0.0.0.0:2181)."""
    if kind == "reference" and not REFERENCE_AVAILABLE:
        pytest.skip("reference Apache ZooKeeper is not installed")
    work = Path(tempfile.mkdtemp(prefix=f"zk-noport-{kind}-"))
    cfg = work / "zoo.cfg"
    cfg.write_text(f"tickTime=2000\ndataDir={work / 'data'}\nadmin.enableServer=false\n")
    if kind == "reference":
        cmd = ["java", "-Xmx256m", "-cp", ":".join(REFERENCE_JARS), f"-Dzookeeper.log.dir={work}",
               "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg)]
    else:
        cmd = [sys.executable, "-m", "zkpy.server.main", "start", str(cfg)]
    with open(work / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    try:
        deadline = time.monotonic() + 30
        while not (work / "data" / "version-2").is_dir() and time.monotonic() < deadline:
            assert proc.poll() is None, (work / "server.log").read_text()[-2000:]
            time.sleep(0.1)
        time.sleep(3)  # past the point where a listener would have been opened
        assert proc.poll() is None, (work / "server.log").read_text()[-2000:]
        assert _listening_ports(proc.pid) == set()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
