"""Fixtures that run the same test against zkpy and against Apache ZooKeeper 3.8.

`server` is parametrised over the two implementations; each is started once per test
session on a free port in its own temporary data directory.  Tests get a fresh,
uniquely named base path (`base`) so that they never see each other's znodes.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.ports import free_port
from tests.tlscerts import Pki, make_pki

if TYPE_CHECKING:  # tests/ensemble.py imports this module
    from tests.ensemble import Ensemble

REFERENCE_JARS = [
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/zookeeper-jute.jar",
    "/usr/share/java/slf4j-api.jar",
    "/usr/share/java/slf4j-log4j12.jar",
    "/usr/share/java/log4j-1.2.jar",
]
REFERENCE_AVAILABLE = bool(shutil.which("java")) and all(os.path.exists(j) for j in REFERENCE_JARS)
# Netty, for the reference's NettyServerCnxnFactory (client TLS); Debian's libnetty-java
NETTY_JARS = [f"/usr/share/java/netty-{m}.jar" for m in (
    "buffer", "codec", "common", "handler", "resolver", "transport", "transport-native-epoll",
    "transport-native-unix-common")]
NETTY_AVAILABLE = all(os.path.exists(j) for j in NETTY_JARS)
# CI sets ZKPY_REQUIRE_REFERENCE=1 so that a missing reference server fails instead of skipping.
REQUIRE_REFERENCE = os.environ.get("ZKPY_REQUIRE_REFERENCE") == "1"


def require_tool(present: bool, what: str) -> None:
    """Skip a test that needs `what` of the reference installation (zkServer.sh, the JDK's
    keytool) where it is missing; under ZKPY_REQUIRE_REFERENCE=1 (CI) fail instead, since
    CI installs it."""
    if present:
        return
    if REQUIRE_REFERENCE:
        pytest.fail(f"{what} is missing (CI installs it with Debian's zookeeper packages)")
    pytest.skip(f"needs {what}")


def mount_small_disk(path: Path) -> None:
    """Mount a 4 MiB tmpfs at path (made if missing), or skip the test: it needs root and
    a `mount` that may mount here.  The caller unmounts (`umount -l`)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode(errors='replace').strip()}")


def four_letter(port: int, word: str, timeout: float = 5.0) -> str:
    """Send a four-letter word and return the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(word.encode())
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    return out.decode()


def wait_serving(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if "Mode:" in four_letter(port, "srvr", 1.0):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start in {timeout}s:\n{log.read_text()[-3000:]}")


@dataclass
class ServerProcess:
    """A running server (zkpy or the reference) that tests talk to on `port`."""

    kind: str
    workdir: Path
    extra: dict[str, str] = field(default_factory=dict)
    jvm_flags: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def write_config(self) -> Path:
        self.port = self.port or free_port()
        lines = {
            "tickTime": "2000",
            "dataDir": str(self.data_dir),
            "clientPort": str(self.port),
            "4lw.commands.whitelist": "*",
            "admin.enableServer": "false",
            "maxClientCnxns": "0",
        }
        lines.update(self.extra)
        cfg = self.workdir / "zoo.cfg"
        cfg.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return cfg

    def command(self, cfg: Path, java_only: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that run this server on cfg: the -D switches
        (`jvm_flags`) go to Java on its command line and to zkpy in SERVER_JVMFLAGS, as
        zkServer.sh passes them; `java_only` flags are for the JVM alone (e.g. log4j)."""
        env = dict(os.environ)
        if self.kind == "reference":
            return (["java", "-Xmx512m", "-cp", ":".join(REFERENCE_JARS + NETTY_JARS),
                     f"-Dzookeeper.log.dir={self.workdir}", *java_only, *self.jvm_flags,
                     "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg)], env)
        if self.jvm_flags:
            env["SERVER_JVMFLAGS"] = " ".join(self.jvm_flags)
        return [sys.executable, "-m", "zkpy.server.main", "start", str(cfg)], env

    def start(self) -> ServerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.write_config()
        log = self.workdir / "server.log"
        cmd, env = self.command(cfg)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.workdir)
        wait_serving(self.port, self.proc, log)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        p = self.workdir / "server.log"
        return p.read_text(errors="replace") if p.exists() else ""


def start_server(kind: str, extra: dict[str, str] | None = None,
                 jvm_flags: list[str] | None = None) -> ServerProcess:
    if kind == "reference" and not REFERENCE_AVAILABLE:
        if REQUIRE_REFERENCE:
            pytest.fail("the reference Apache ZooKeeper is not installed (apt-get install zookeeper)")
        pytest.skip("reference Apache ZooKeeper (Debian package zookeeper) is not installed")
    workdir = Path(tempfile.mkdtemp(prefix=f"zk-{kind}-"))
    return ServerProcess(kind, workdir, extra or {}, jvm_flags or []).start()


KINDS = ["zkpy", "reference"]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One CA with server, client, admin and stranger identities (and keytool's Java
    stores) for every TLS test; tests copy what they change, never edit these files."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def ensembles() -> Iterator[list[Ensemble]]:
    """Ensembles a test starts itself: append each, and they are closed after the test."""
    made: list[Ensemble] = []
    yield made
    for e in made:
        e.close()


@pytest.fixture(scope="session", params=KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A shared server per implementation; tests must stay under their own `base` path."""
    srv = start_server(request.param, {"extendedTypesEnabled": "true"},
                       ["-Dzookeeper.DigestAuthenticationProvider.superDigest="
                        "super:lK75jTNcA+U9vtVEw5vB51mj/w4=",
                        "-Dzookeeper.extendedTypesEnabled=true",
                        "-Dznode.container.checkIntervalMs=500"])
    yield srv
    srv.stop()
    shutil.rmtree(srv.workdir, ignore_errors=True)


_counter = itertools.count()


@pytest.fixture
def base(request: pytest.FixtureRequest) -> str:
    """A path no other test uses (not yet created)."""
    name = request.node.name.split("[")[0].replace("test_", "")
    return f"/t-{name}-{os.getpid()}-{next(_counter)}"


@pytest.fixture
def zk(server: ServerProcess, base: str) -> Iterator[object]:
    from kazoo.client import KazooClient

    client = KazooClient(hosts=server.hosts, timeout=10)
    client.start(timeout=15)
    client.ensure_path(base)
    yield client
    try:
        client.delete(base, recursive=True)
    except Exception:
        pass
    client.stop()
    client.close()


@pytest.fixture
def make_client(server: ServerProcess) -> Iterator[object]:
    """Factory for extra kazoo clients on the shared server (closed at teardown)."""
    from kazoo.client import KazooClient

    clients: list[KazooClient] = []

    def make(**kw: object) -> KazooClient:
        c = KazooClient(hosts=server.hosts, timeout=kw.pop("timeout", 10), **kw)  # type: ignore[arg-type]
        c.start(timeout=15)
        clients.append(c)
        return c

    yield make
    for c in clients:
        try:
            c.stop()
            c.close()
        except Exception:
            pass
