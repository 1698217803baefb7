"""Unchanged real clients against zkpy and the reference: the Java zkCli.sh and the C cli_mt.

Each runs a scripted interactive session (commands on stdin, one at a time, waiting for the
expected output) covering create, ls, get, set, stat, delete, a watch firing and a digest ACL
with addauth.  Skipped only when the Debian binaries are missing and ZKPY_REQUIRE_REFERENCE
is not "1".
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time

import pytest
from kazoo.security import make_digest_acl

from tests.conftest import REQUIRE_REFERENCE

ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
CLI_MT = "/usr/lib/zookeeper/bin/cli_mt"
# digest of "u:p" as DigestAuthenticationProvider computes it
U_P_DIGEST = "u:Jq7wMyA/w2Vd5WIDAKdu4OIIFEQ="


def _need(binary: str) -> None:
    if not os.access(binary, os.X_OK):
        if REQUIRE_REFERENCE:
            pytest.fail(f"{binary} is missing (apt-get install zookeeper zookeeper-bin)")
        pytest.skip(f"{binary} is not installed")


class Interactive:
    """A client process driven line by line; its stdout+stderr accumulate in `text`."""

    def __init__(self, cmd: list[str]) -> None:
        env = dict(os.environ, CLIENT_JVMFLAGS="-Xmx128m")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env)
        self._buf = b""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            d = self.proc.stdout.read1(65536)  # type: ignore[attr-defined]
            if not d:
                return
            with self._lock:
                self._buf += d

    @property
    def text(self) -> str:
        with self._lock:
            return self._buf.decode(errors="replace")

    def mark(self) -> int:
        return len(self.text)

    def send(self, line: str) -> int:
        """Send one command; returns the output position before it (for expect)."""
        start = self.mark()
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return start

    def expect(self, pattern: str, since: int = 0, timeout: float = 30.0) -> re.Match[str]:
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.text, since)
            if m:
                return m
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{pattern!r} not found in output after position {since}:\n"
                                     f"{self.text[since:]}\n--- full output ---\n{self.text}")
            time.sleep(0.02)

    def run(self, line: str, *patterns: str) -> int:
        start = self.send(line)
        for p in patterns:
            self.expect(p, start)
        return start

    def finish(self, timeout: float = 20.0) -> None:
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self._reader.join(5)


def _zkcli(server) -> Interactive:
    c = Interactive([ZKCLI, "-server", server.hosts])
    c.expect(r"WatchedEvent state:SyncConnected type:None path:null")
    return c


def test_zkcli_session(server, base):
    _need(ZKCLI)
    b = re.escape(base)
    cli = _zkcli(server)
    try:
        cli.run(f"create {base} root", rf"^Created {b}$")
        cli.run(f"create {base}/a hello", rf"^Created {b}/a$")
        cli.run(f"ls {base}", r"^\[a\]$")
        cli.run(f"get {base}/a", r"^hello$")
        cli.run(f"get {base}/missing", rf"Node does not exist: {b}/missing")

        # a data watch fires once on set
        cli.run(f"get -w {base}/a", r"^hello$")
        start = cli.send(f"set {base}/a world")
        cli.expect(rf"WatchedEvent state:SyncConnected type:NodeDataChanged path:{b}/a$", start)
        cli.run(f"stat {base}/a", r"^dataVersion = 1$", r"^dataLength = 5$", r"^numChildren = 0$",
                r"^ephemeralOwner = 0x0$")
        cli.run(f"get {base}/a", r"^world$")

        # a child watch, and an ACL bound to the digest identity given with addauth
        cli.run(f"ls -w {base}", r"^\[a\]$")
        cli.send("addauth digest u:p")
        start = cli.run(f"create {base}/s sec auth:u:p:cdrwa", rf"^Created {b}/s$")
        cli.expect(rf"WatchedEvent state:SyncConnected type:NodeChildrenChanged path:{b}$", start)
        cli.run(f"getAcl {base}/s", rf"^'digest,'{re.escape(U_P_DIGEST)}\n: cdrwa$")
        cli.run(f"get {base}/s", r"^sec$")

        cli.run(f"create -e {base}/eph", rf"^Created {b}/eph$")
        cli.run(f"delete {base}/a")
        cli.run(f"ls {base}", r"^\[(eph, s|s, eph)\]$")
        cli.send("quit")
        cli.finish()
    finally:
        cli.finish(5)

    other = _zkcli(server)
    try:
        # The first session is closed: its ephemeral is gone.
        other.run(f"ls {base}", r"^\[s\]$")
        other.run(f"get {base}/s", rf"^Insufficient permission : {b}/s$")
        other.send("addauth digest u:p")
        other.run(f"get {base}/s", r"^sec$")
        other.run(f"delete {base}/s")
        other.run(f"delete {base}")
        other.run(f"ls {base}", rf"Node does not exist: {b}")
        other.send("quit")
        other.finish()
    finally:
        other.finish(5)


def test_zkcli_one_shot_commands(server, base):
    _need(ZKCLI)
    env = dict(os.environ, CLIENT_JVMFLAGS="-Xmx128m")

    def run(*args: str, rc: int = 0) -> str:
        p = subprocess.run([ZKCLI, "-server", server.hosts, *args], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60, env=env)
        out = p.stdout.decode(errors="replace")
        assert p.returncode == rc, out
        return out

    b = re.escape(base)
    assert re.search(rf"^Created {b}$", run("create", base, "x"), re.M)
    assert re.search(rf"^Node already exists: {b}$", run("create", base, "y", rc=1), re.M)
    assert re.search(r"^x$", run("get", base), re.M)
    run("delete", base)
    assert re.search(rf"^Node does not exist: {b}$", run("get", base, rc=1), re.M)


def test_c_client_session(server, zk, base):
    _need(CLI_MT)
    b = re.escape(base)
    zk.create(f"{base}/sec", b"secret", acl=[make_digest_acl("u", "p", all=True)])
    cli = Interactive([CLI_MT, "-h", server.hosts])
    try:
        cli.expect(r"Watcher SESSION_EVENT state = CONNECTED_STATE")
        cli.run(f"create {base}/a", rf"^\[{b}/a\]: rc = 0$")
        cli.run(f"ls {base}", rf"^{b}: rc = 0$")  # ls leaves a child watch on base
        cli.run(f"get {base}/a", r"^ value_len = 3$", r"^new$", r"^\tversion=0\taversion=0$")

        # `get` left a data watch; the set fires it
        start = cli.send(f"set {base}/a world")
        cli.expect(rf"^Watcher CHANGED_EVENT state = CONNECTED_STATE for path {b}/a$", start)
        cli.expect(rf"^{b}/a: rc = 0 Stat:$", start)
        cli.run(f"get {base}/a", r"^ value_len = 5$", r"^world$", r"^\tversion=1\taversion=0$")

        # exists on a missing node leaves a watch; the create fires it and the child watch
        cli.run(f"wexists {base}/later", rf"Error -101 for {b}/later")
        start = cli.run(f"create {base}/later", rf"^\[{b}/later\]: rc = 0$")
        cli.expect(rf"^Watcher CREATED_EVENT state = CONNECTED_STATE for path {b}/later$", start)
        cli.expect(rf"^Watcher CHILD_EVENT state = CONNECTED_STATE for path {b}$", start)

        # digest ACL: NOAUTH until addauth
        cli.run(f"get {base}/sec", rf"^{b}/sec: rc = -102$")
        cli.send("addauth digest u:p")
        cli.run(f"get {base}/sec", rf"^{b}/sec: rc = 0$", r"^ value_len = 6$", r"^secret$")

        start = cli.run(f"delete {base}/a", rf"^{b}/a: rc = 0$")
        cli.expect(rf"^Watcher DELETED_EVENT state = CONNECTED_STATE for path {b}/a$", start)
        cli.run(f"exists {base}/a", rf"Error -101 for {b}/a|{b}/a: rc = -101")
        cli.run("quit", r"Quitting")
        cli.finish()
    finally:
        cli.finish(5)
    assert sorted(zk.get_children(base)) == ["later", "sec"]
    assert zk.get(f"{base}/later")[0] == b"new"


class CuttableProxy:
    """A TCP relay in front of the server whose connections can be cut, and new ones refused,
    to make a client reconnect with changes made while it was away."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.blocked = threading.Event()
        self.accepted = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.blocked.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                dst.sendall(d)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones until `resume`."""
        self.blocked.set()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def resume(self) -> None:
        self.blocked.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_zkcli_watches_survive_reconnect(server, zk, base):
    """The Java client re-registers its watches with SetWatches after reconnecting, and the
    server reports what changed while it was away (relative to the client's last zxid)."""
    _need(ZKCLI)
    b = re.escape(base)
    zk.create(f"{base}/a", b"one")
    proxy = CuttableProxy(server.port)
    cli = Interactive([ZKCLI, "-server", f"127.0.0.1:{proxy.port}"])
    try:
        cli.expect(r"WatchedEvent state:SyncConnected type:None path:null")
        cli.run(f"get -w {base}/a", r"^one$")
        cli.run(f"ls -w {base}", r"^\[a\]$")
        cli.run(f"stat -w {base}/later", rf"Node does not exist: {b}/later")
        cli.run(f"get -w {base}/a", r"^one$")

        start = cli.mark()
        proxy.cut()
        cli.expect(r"WatchedEvent state:Disconnected type:None path:null", start)
        zk.set(f"{base}/a", b"two")
        zk.create(f"{base}/later")
        proxy.resume()
        cli.expect(r"WatchedEvent state:SyncConnected type:None path:null", start)
        for event in (rf"type:NodeDataChanged path:{b}/a", rf"type:NodeCreated path:{b}/later",
                      rf"type:NodeChildrenChanged path:{b}"):
            cli.expect(rf"^WatchedEvent state:SyncConnected {event}$", start)
        # each watch fired once
        cli.run(f"get {base}/a", r"^two$")
        assert len(re.findall(rf"NodeDataChanged path:{b}/a$", cli.text[start:], re.M)) == 1
        cli.send("quit")
        cli.finish()
    finally:
        cli.finish(5)
        proxy.close()
    assert proxy.accepted >= 2
