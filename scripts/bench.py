#!/usr/bin/env python3
"""Load generator for ZooKeeper-compatible servers, and a side-by-side comparison.

  bench.py run --hosts 127.0.0.1:2181 --workload get --conns 8 --depth 16 --duration 5
  bench.py compare --rounds 3            # starts zkpy and Apache ZooKeeper, alternates
  bench.py compare --tls --workload get,set   # zkpy over TLS and plain, ZooKeeper over TLS
  bench.py smoke                         # a few seconds against a fresh zkpy (CI)

With --tls the load connections are TLS with a client certificate (`run`: --tls-hosts and
--ca/--cert/--key; `compare`: a fresh CA, both servers with a secureClientPort and
ssl.clientAuth=need, ZooKeeper with NettyServerCnxnFactory); setup and cleanup use the
plain port.  `compare --tls` measures four targets in alternating order each round:
zkpy over TLS, zkpy plain, ZooKeeper over TLS and ZooKeeper plain (Netty too).  The watch
workload is plain only (its sessions use zkpy's client, which has no TLS).

The client speaks the wire protocol directly: each connection keeps `depth` requests in
flight (pipelining) and every reply is checked for an error code.  With --procs the
connections are spread over several processes so the client is not the bottleneck;
the client's own CPU time is reported.

`compare` also reads the servers' CPU time from /proc/PID/stat (utime+stime, with reaped
children such as a forked snapshot writer) and the machine's from /proc/stat around the
load phase of each run, and reports server CPU per operation and busy cores (per member
and summed for an ensemble), the client's busy cores, and the cores used by everything
else on the machine.  A run in which the client or the machine may have been the limit
is flagged (see LIMIT_* below).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.ports import free_port  # noqa: E402
from zkpy.client import requests as rq  # noqa: E402
from zkpy.jute.codec import INT, Writer  # noqa: E402
from zkpy.jute.constants import OpCode  # noqa: E402
from zkpy.jute.records import REPLY_HEADER, REQUEST_HEADER  # noqa: E402

WORKLOADS = ["get", "exists", "set", "create", "mixed", "multi"]
SPECIAL = ["watch", "large-tree"]
DATA = b"x" * 100
KEYS = 100  # nodes the get/set/exists workloads spread over
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
NCPU = os.cpu_count() or 1
# A run is flagged when the load generator kept this much of a core busy (one Python
# process cannot do more than one), or when the machine's busy cores reached this share
# of all cores (then the servers competed with the client and the other tenants).
LIMIT_CLIENT_CORES = 0.85
LIMIT_MACHINE_SHARE = 0.9


@dataclass
class Result:
    workload: str
    ops: int = 0
    errors: int = 0
    seconds: float = 0.0
    client_cpu: float = 0.0
    lat_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.lat_ms:
            return 0.0
        s = sorted(self.lat_ms)
        return s[min(len(s) - 1, int(q * len(s)))]

    def summary(self) -> dict[str, float | int | str]:
        return {"workload": self.workload, "ops": self.ops, "errors": self.errors,
                "ops_per_s": round(self.ops_per_s, 1), "p50_ms": round(self.pct(0.5), 3),
                "p99_ms": round(self.pct(0.99), 3), "p999_ms": round(self.pct(0.999), 3),
                "client_cpu_s": round(self.client_cpu, 2),
                **{k: round(v, 2) for k, v in self.cpu.items()}}


def frame(xid: int, op: int, body: bytes) -> bytes:
    return INT.pack(8 + len(body)) + REQUEST_HEADER.pack(xid, op) + body


def request_maker(workload: str, base: str, conn_id: int):
    """A function i -> (op, body) for the workload."""
    rnd = random.Random(conn_id)
    keys = [f"{base}/n{k}".encode() for k in range(KEYS)]
    get_bodies = [INT.pack(len(k)) + k + b"\x00" for k in keys]
    set_bodies = [rq.set_data(k.decode(), DATA)[1] for k in keys]
    create_body = rq.create(f"{base}/c/s-", DATA, flags=2, with_stat=False)[1]
    multi_bodies = [rq.multi([rq.set_data(keys[k].decode(), DATA),
                              rq.set_data(keys[(k + 1) % KEYS].decode(), DATA)])[1] for k in range(KEYS)]

    def make(i: int) -> tuple[int, bytes]:
        k = rnd.randrange(KEYS)
        if workload == "get":
            return OpCode.GET_DATA, get_bodies[k]
        if workload == "exists":
            return OpCode.EXISTS, get_bodies[k]
        if workload == "set":
            return OpCode.SET_DATA, set_bodies[k]
        if workload == "create":
            return OpCode.CREATE, create_body
        if workload == "mixed":
            if rnd.random() < 0.1:
                return OpCode.SET_DATA, set_bodies[k]
            return OpCode.GET_DATA, get_bodies[k]
        if workload == "multi":
            return OpCode.MULTI, multi_bodies[k]
        raise ValueError(workload)

    return make


class LoadConnection(asyncio.Protocol):
    """Closed loop: keeps `depth` requests in flight until the deadline."""

    def __init__(self, make, depth: int, deadline: float, lat: array, result: Result,
                 done: asyncio.Future) -> None:
        self.make, self.depth, self.deadline = make, depth, deadline
        self.lat, self.result, self.done = lat, result, done
        self.buf = bytearray()
        self.sent_at: dict[int, float] = {}
        self.xid = 0
        self.handshaken = False
        self.transport: asyncio.Transport | None = None
        self.multi = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        req = Writer().int(0).long(0).int(30000).long(0).buffer(bytes(16)).bool(False).getvalue()
        transport.write(INT.pack(len(req)) + req)

    def _send(self, n: int) -> None:
        out = []
        now = time.perf_counter()
        for _ in range(n):
            self.xid += 1
            op, body = self.make(self.xid)
            self.multi = op == OpCode.MULTI
            self.sent_at[self.xid] = now
            out.append(frame(self.xid, op, body))
        self.transport.writelines(out)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, end = 0, len(buf)
        replies = 0
        now = time.perf_counter()
        while end - pos >= 4:
            n = INT.unpack_from(buf, pos)[0]
            if end - pos - 4 < n:
                break
            if not self.handshaken:
                self.handshaken = True
            else:
                xid, _zxid, err = REPLY_HEADER.unpack_from(buf, pos + 4)
                if xid > 0:
                    t0 = self.sent_at.pop(xid)
                    self.lat.append((now - t0) * 1000.0)
                    if err or (self.multi and _multi_failed(buf, pos + 20, pos + 4 + n)):
                        self.result.errors += 1
                    replies += 1
            pos += 4 + n
        del buf[:pos]
        if not self.sent_at and replies == 0 and self.handshaken and self.xid == 0:
            self._send(self.depth)
            return
        self.result.ops += replies
        if now < self.deadline:
            if replies:
                self._send(replies)
        elif not self.sent_at and not self.done.done():
            self.done.set_result(None)
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _multi_failed(buf: bytearray, pos: int, end: int) -> bool:
    # first MultiHeader: int type; type -1 means an error result
    return pos + 4 <= end and INT.unpack_from(buf, pos)[0] == -1


@dataclass(frozen=True)
class TlsClient:
    """A client certificate and the CA that signed the server's (files, so that it
    crosses to --procs processes)."""

    ca: str
    cert: str
    key: str

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


async def _run_conns(hosts: list[tuple[str, int]], workload: str, base: str, conns: int, depth: int,
                     duration: float, first_id: int, tls: TlsClient | None = None) -> Result:
    loop = asyncio.get_running_loop()
    res = Result(workload)
    lat: array = array("d")
    ctx = tls.context() if tls is not None else None
    deadline = time.perf_counter() + duration
    futs = []
    for c in range(conns):
        host, port = hosts[(first_id + c) % len(hosts)]
        done = loop.create_future()
        make = request_maker(workload, base, first_id + c)
        await loop.create_connection(lambda m=make, d=done: LoadConnection(m, depth, deadline, lat, res, d),
                                     host, port, ssl=ctx, server_hostname=host if ctx else None)
        futs.append(done)
    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*futs), duration + 60)
    res.seconds = time.perf_counter() - t0
    res.lat_ms = list(lat)
    return res


def _proc_main(args: tuple) -> dict:
    hosts, workload, base, conns, depth, duration, first_id, tls = args
    _install_uvloop()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    res = asyncio.run(_run_conns(hosts, workload, base, conns, depth, duration, first_id, tls))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    res.client_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if len(res.lat_ms) > 300000:
        res.lat_ms = random.Random(0).sample(res.lat_ms, 300000)
    return asdict(res)


def _install_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


def parse_hosts(s: str) -> list[tuple[str, int]]:
    out = []
    for part in s.split(","):
        h, p = part.rsplit(":", 1)
        out.append((h, int(p)))
    return out


# ---- setup / cleanup through the library client ------------------------------------------------


async def _setup(hosts: str, base: str) -> None:
    from zkpy.client.client import ZooKeeperClient
    from zkpy.jute.constants import KeeperError

    c = ZooKeeperClient(hosts)
    await c.start()
    for p in (base, f"{base}/c"):
        try:
            await c.create(p, b"")
        except KeeperError:
            pass
    futs = [c.submit(*rq.create(f"{base}/n{k}", DATA, with_stat=False)) for k in range(KEYS)]
    await asyncio.gather(*futs)
    await c.close()


async def _delete_children(c, path: str) -> int:
    children, _ = await c.get_children(path)
    removed = 0
    for i in range(0, len(children), 1000):
        futs = [c.submit(*rq.path_version(OpCode.DELETE, f"{path}/{ch}", -1)) for ch in children[i:i + 1000]]
        await asyncio.gather(*futs)
        removed += len(futs)
    return removed


async def _cleanup(hosts: str, base: str) -> None:
    from zkpy.client.client import ZooKeeperClient

    c = ZooKeeperClient(hosts)
    await c.start()
    await _delete_children(c, f"{base}/c")
    await _delete_children(c, base)
    await c.delete(base)
    await c.close()


def run_workload(hosts: str, workload: str, conns: int, depth: int, duration: float, procs: int,
                 pids: dict[str, int] | None = None, tls_hosts: str | None = None,
                 tls: TlsClient | None = None) -> Result:
    """One load phase between setup and cleanup; with pids (name -> server process), the
    CPU counters are read around the load phase only and land in `Result.cpu`.  With
    `tls`, the load goes to `tls_hosts` over TLS (setup and cleanup stay on `hosts`)."""
    base = f"/bench-{os.getpid()}-{random.randrange(1 << 30)}"
    asyncio.run(_setup(hosts, base))
    try:
        hl = parse_hosts(tls_hosts if tls is not None and tls_hosts else hosts)
        procs = max(1, min(procs, conns))
        shares = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
        jobs, first = [], 0
        for s in shares:
            jobs.append((hl, workload, base, s, depth, duration, first, tls))
            first += s
        before = CpuSample.take(pids or {})
        if procs == 1:
            parts = [_proc_main(jobs[0])]
        else:
            with mp.get_context("spawn").Pool(procs) as pool:
                parts = pool.map(_proc_main, jobs)
        after = CpuSample.take(pids or {})
        res = Result(workload)
        for p in parts:
            res.ops += p["ops"]
            res.errors += p["errors"]
            res.seconds = max(res.seconds, p["seconds"])
            res.client_cpu += p["client_cpu"]
            res.lat_ms += p["lat_ms"]
        res.cpu = cpu_figures(before, after, res.ops, res.client_cpu)
        return res
    finally:
        asyncio.run(_cleanup(hosts, base))


async def watch_fanout(hosts: str, sessions: int, rounds: int = 5) -> Result:
    """N sessions watch one node; time from setData until every session has its event."""
    from zkpy.client.client import ZooKeeperClient
    from zkpy.jute.constants import KeeperError

    path = f"/bench-watch-{os.getpid()}"
    writer = ZooKeeperClient(hosts)
    await writer.start()
    try:
        await writer.create(path, b"")
    except KeeperError:
        pass
    clients = []
    for _ in range(sessions):
        c = ZooKeeperClient(hosts)
        await c.start()
        clients.append(c)
    res = Result("watch")
    for _ in range(rounds):
        loop = asyncio.get_running_loop()
        remaining = [sessions]
        done = loop.create_future()

        def fired(_ev, remaining=remaining, done=done):
            remaining[0] -= 1
            if remaining[0] == 0 and not done.done():
                done.set_result(time.perf_counter())

        await asyncio.gather(*(c.get(path, watch=fired) for c in clients))
        t0 = time.perf_counter()
        await writer.set(path, DATA)
        t1 = await asyncio.wait_for(done, 60)
        res.lat_ms.append((t1 - t0) * 1000.0)
        res.ops += sessions
    res.seconds = sum(res.lat_ms) / 1000.0
    await asyncio.gather(*(c.close() for c in clients))
    await writer.delete(path)
    await writer.close()
    return res


async def large_tree(hosts: str, count: int, depth: int = 256) -> Result:
    """Create `count` znodes of 100 bytes under one parent (kept, for RSS/restart figures)."""
    from zkpy.client.client import ZooKeeperClient

    c = ZooKeeperClient(hosts, timeout_ms=60000)
    await c.start()
    await c.create("/large", b"")
    res = Result("large-tree")
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(depth)
    errors = 0

    async def one(i: int) -> None:
        nonlocal errors
        async with sem:
            _z, err, _r = await c.submit(*rq.create(f"/large/n{i:07d}", DATA, with_stat=False))
            errors += err != 0

    step = 10000
    for start in range(0, count, step):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + step))))
        if start and start % 100000 == 0:
            print(f"  large-tree: {start} znodes", file=sys.stderr)
    res.seconds = time.perf_counter() - t0
    res.ops, res.errors = count, errors
    await c.close()
    return res


# ---- CPU accounting from /proc --------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of a process (all its threads, and its reaped
    children) in seconds; 0.0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; fields from #3 on
    return sum(int(f) for f in fields[11:15]) / CLK_TCK


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all cores since boot, from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0, 0
    vals = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


@dataclass
class CpuSample:
    """The CPU counters read before and after a load phase."""

    servers: dict[str, float]
    busy: int
    total: int
    wall: float

    @classmethod
    def take(cls, pids: dict[str, int]) -> CpuSample:
        busy, total = machine_jiffies()
        return cls({name: proc_cpu_seconds(pid) for name, pid in pids.items()}, busy, total,
                   time.perf_counter())


def cpu_figures(before: CpuSample, after: CpuSample, ops: int, client_cpu: float) -> dict[str, float]:
    """Server CPU per op (µs) and busy cores, per member and summed; client and other cores."""
    wall = max(after.wall - before.wall, 1e-9)
    figs: dict[str, float] = {}
    total = 0.0
    for name, t0 in before.servers.items():
        used = max(0.0, after.servers.get(name, t0) - t0)
        total += used
        if len(before.servers) > 1:
            figs[f"{name}_us_op"] = used / ops * 1e6 if ops else 0.0
            figs[f"{name}_cores"] = used / wall
    figs["srv_us_op"] = total / ops * 1e6 if ops else 0.0
    figs["srv_cores"] = total / wall
    figs["cli_cores"] = client_cpu / wall
    dt = after.total - before.total
    machine = (after.busy - before.busy) / dt * NCPU if dt > 0 else 0.0
    figs["mach_cores"] = machine
    figs["other_cores"] = max(0.0, machine - figs["srv_cores"] - figs["cli_cores"])
    return figs


def limits(figs: dict[str, float]) -> list[str]:
    """Why this run may not show the server's own limit."""
    why = []
    if figs.get("cli_cores", 0.0) >= LIMIT_CLIENT_CORES:
        why.append(f"client-bound ({figs['cli_cores']:.2f} cores)")
    if figs.get("mach_cores", 0.0) >= LIMIT_MACHINE_SHARE * NCPU:
        why.append(f"machine saturated ({figs['mach_cores']:.2f} of {NCPU} cores busy, "
                   f"{figs.get('other_cores', 0.0):.2f} by other processes)")
    return why


# ---- servers for side-by-side runs ------------------------------------------------------------

REF_JARS = ["/usr/share/java/zookeeper.jar", "/usr/share/java/zookeeper-jute.jar",
            "/usr/share/java/slf4j-api.jar", "/usr/share/java/slf4j-log4j12.jar",
            "/usr/share/java/log4j-1.2.jar"]
# NettyServerCnxnFactory, which ZooKeeper needs for a secureClientPort (Debian's libnetty-java)
NETTY_JARS = [f"/usr/share/java/netty-{m}.jar" for m in (
    "buffer", "codec", "common", "handler", "resolver", "transport", "transport-native-epoll",
    "transport-native-unix-common")]
NETTY = "org.apache.zookeeper.server.NettyServerCnxnFactory"


class Server:
    """A benchmark target started from a fresh data dir with equivalent settings."""

    def __init__(self, kind: str, workdir: Path, extra: str = "", myid: int | None = None,
                 tls: dict[str, str] | None = None) -> None:
        self.kind, self.workdir = kind, workdir
        self.port = free_port()
        self.secure_port = free_port() if tls is not None else None
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        if myid is not None:
            (workdir / "data").mkdir(exist_ok=True)
            (workdir / "data" / "myid").write_text(f"{myid}\n")
        if tls is not None:  # ssl.* keys; ZooKeeper's TLS port needs the Netty factory
            tls = {"secureClientPort": str(self.secure_port), **tls}
            if kind == "zookeeper":
                tls["serverCnxnFactory"] = NETTY
        (workdir / "zoo.cfg").write_text(
            f"tickTime=2000\ndataDir={workdir / 'data'}\nclientPort={self.port}\n"
            "maxClientCnxns=0\n4lw.commands.whitelist=*\nadmin.enableServer=false\nforceSync=yes\n"
            + "".join(f"{k}={v}\n" for k, v in (tls or {}).items()) + extra)

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def tls_hosts(self) -> str:
        return f"127.0.0.1:{self.secure_port}"

    def launch(self) -> None:
        cfg = str(self.workdir / "zoo.cfg")
        if self.kind == "zookeeper":
            jars = REF_JARS + (NETTY_JARS if self.secure_port is not None else [])
            cmd = ["java", "-Xmx4g", "-cp", ":".join(jars), f"-Dzookeeper.log.dir={self.workdir}",
                   "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg]
        else:
            cmd = [sys.executable, "-m", "zkpy.server.main", "start", "--log-level", "WARNING", cfg]
        log = open(self.workdir / "server.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)

    def mode(self) -> str | None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"srvr")
                for line in s.recv(4096).decode(errors="replace").splitlines():
                    if line.startswith("Mode: "):
                        return line[6:]
        except OSError:
            pass
        return None

    def wait_serving(self) -> None:
        assert self.proc is not None
        while self.mode() is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited; see {self.workdir / 'server.log'}")
            time.sleep(0.02)

    def start(self) -> float:
        t0 = time.perf_counter()
        self.launch()
        self.wait_serving()
        return time.perf_counter() - t0

    def pids(self) -> dict[str, int]:
        """The process whose CPU counts as this server's (its threads and reaped children)."""
        assert self.proc is not None
        return {"srv": self.proc.pid}

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                print(f"{self.kind} did not stop within 30 s of SIGTERM; killed", file=sys.stderr)
                self.proc.kill()
                self.proc.wait()


class Cluster:
    """A 3-server pseudo-cluster of one kind on loopback (clients spread over all members)."""

    def __init__(self, kind: str, workdir: Path, extra: str = "", n: int = 3) -> None:
        self.kind = kind
        ports = [(free_port(), free_port()) for _ in range(n)]
        lines = "".join(f"server.{i + 1}=127.0.0.1:{q}:{e}\n" for i, (q, e) in enumerate(ports))
        self.members = [Server(kind, workdir / f"s{i + 1}", "initLimit=10\nsyncLimit=5\n" + lines + extra,
                               i + 1) for i in range(n)]

    @property
    def hosts(self) -> str:
        return ",".join(m.hosts for m in self.members)

    def start(self) -> float:
        t0 = time.perf_counter()
        for m in self.members:
            if m.proc is None or m.proc.poll() is not None:
                m.launch()
        for m in self.members:
            m.wait_serving()
        return time.perf_counter() - t0

    def rss_mb(self) -> float:
        return sum(m.rss_mb() for m in self.members)

    def pids(self) -> dict[str, int]:
        """Members named by role: `leader`, then `fol1`, `fol2` in member order."""
        out: dict[str, int] = {}
        others = 0
        for m in self.members:
            assert m.proc is not None
            if m.mode() == "leader" and "leader" not in out:
                out["leader"] = m.proc.pid
            else:
                others += 1
                out[f"fol{others}"] = m.proc.pid
        return out

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def failover_seconds(self) -> float:
        """SIGKILL the leader; time until a write through a surviving member succeeds."""
        from zkpy.client.client import ZooKeeperClient

        leader = next(m for m in self.members if m.mode() == "leader")
        others = ",".join(m.hosts for m in self.members if m is not leader)
        t0 = time.perf_counter()
        leader.stop(kill=True)

        async def first_write() -> None:
            while True:
                c = ZooKeeperClient(others, timeout_ms=10000)
                try:
                    await c.start(timeout=2)
                    await c.create(f"/failover-{time.time_ns()}", b"")
                    await c.close()
                    return
                except Exception:
                    await asyncio.sleep(0.05)

        asyncio.run(asyncio.wait_for(first_write(), 60))
        took = time.perf_counter() - t0
        leader.launch()
        leader.wait_serving()
        return took


def _du_mb(path: Path) -> float:
    """Disk blocks actually used (preallocated log files are sparse)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 2**20


def _print_table(rows: list[dict]) -> None:
    cols = ["workload", "ops_per_s", "p50_ms", "p99_ms", "p999_ms", "errors", "client_cpu_s"]
    cols += sorted({k for r in rows for k in r} - set(cols))
    print("  ".join(f"{c:>12}" for c in cols))
    for r in rows:
        print("  ".join(f"{r.get(c, ''):>12}" for c in cols))


def cmd_run(a: argparse.Namespace) -> int:
    tls = None
    if a.tls_hosts:
        if not (a.ca and a.cert and a.key):
            print("--tls-hosts needs --ca, --cert and --key", file=sys.stderr)
            return 2
        tls = TlsClient(a.ca, a.cert, a.key)
    rows = []
    for w in a.workload.split(","):
        if w == "watch":
            res = asyncio.run(watch_fanout(a.hosts, a.sessions))
        elif w == "large-tree":
            res = asyncio.run(large_tree(a.hosts, a.count))
        else:
            pids = {name: int(pid) for name, pid in (kv.split("=", 1) for kv in a.pid)}
            res = run_workload(a.hosts, w, a.conns, a.depth, a.duration, a.procs, pids,
                               a.tls_hosts, tls)
            for why in limits(res.cpu):
                print(f"LIMITED: {w}: {why}", file=sys.stderr)
        rows.append(res.summary())
    _print_table(rows)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 1 if any(r["errors"] for r in rows) else 0


def _bench_pki(root: Path) -> tuple[dict[str, str], TlsClient]:
    """A fresh CA, server and client certificate (tests/tlscerts.py): the servers' ssl.*
    keys (PEM stores, which both read; client certificates required) and the client's."""
    from tests.tlscerts import make_pki

    pki = make_pki(root / "pki", java_stores=False)
    return (pki.server_cfg("need", "pem"),
            TlsClient(str(pki.ca_pem), str(pki.client.cert_pem), str(pki.client.key_pem)))


# compare's targets: (label, server, over TLS?), and the ratios it reports (label, a, b)
TARGETS = [("zkpy", "zkpy", False), ("zookeeper", "zookeeper", False)]
RATIOS = [("zkpy/zk", "zkpy", "zookeeper")]
TLS_TARGETS = [("zkpy-tls", "zkpy", True), ("zkpy", "zkpy", False),
               ("zk-tls", "zookeeper", True), ("zk", "zookeeper", False)]
TLS_RATIOS = [("zkpy-tls/zk-tls", "zkpy-tls", "zk-tls"), ("zkpy-tls/zkpy", "zkpy-tls", "zkpy"),
              ("zk-tls/zk", "zk-tls", "zk")]


def cmd_compare(a: argparse.Namespace) -> int:
    jars = REF_JARS + (NETTY_JARS if a.tls else [])
    if not all(os.path.exists(j) for j in jars) or not shutil.which("java"):
        print("Apache ZooKeeper (Debian packages zookeeper and, for --tls, libnetty-java) is "
              "not installed", file=sys.stderr)
        return 2
    if a.tls and a.ensemble:
        print("--tls measures standalone servers only", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="zkbench-"))
    extra = "".join(f"{kv}\n" for kv in a.config)  # after the defaults: the last value wins
    tls_client: TlsClient | None = None
    if a.tls:
        server_tls, tls_client = _bench_pki(root)
        servers: dict[str, Server | Cluster] = {
            k: Server(k, root / k, extra, tls=server_tls) for k in ("zkpy", "zookeeper")}
        targets, ratios = TLS_TARGETS, TLS_RATIOS
    else:
        make = Cluster if a.ensemble else Server
        servers = {k: make(k, root / k, extra) for k in ("zkpy", "zookeeper")}
        targets, ratios = TARGETS, RATIOS
    for s in servers.values():
        s.start()
    table: dict[tuple[str, str, str], list[float]] = {}
    flagged: list[str] = []
    load_start = os.getloadavg()
    try:
        if a.warmup > 0:  # not recorded: the JVM compiles its hot paths, both start warm
            for w in a.workload.split(","):
                for _label, kind, tls in targets:
                    if w != "watch":
                        s = servers[kind]
                        run_workload(s.hosts, w, a.conns, a.depth, a.warmup, a.procs, None,
                                     s.tls_hosts if tls else None, tls_client if tls else None)
        for rnd in range(a.rounds):
            for w in a.workload.split(","):
                for label, kind, tls in (targets if rnd % 2 == 0 else targets[::-1]):
                    s = servers[kind]
                    if w == "watch":
                        if tls:
                            continue
                        res = asyncio.run(watch_fanout(s.hosts, a.sessions))
                        figs = {"ms": statistics.median(res.lat_ms)}
                    else:
                        res = run_workload(s.hosts, w, a.conns, a.depth, a.duration, a.procs, s.pids(),
                                           s.tls_hosts if tls else None, tls_client if tls else None)
                        if res.errors:
                            print(f"{label} {w}: {res.errors} errors", file=sys.stderr)
                        figs = {"ops_per_s": res.ops_per_s, "p50_ms": res.pct(0.5), "p99_ms": res.pct(0.99),
                                **res.cpu}
                        why = limits(res.cpu)
                        if why:
                            flagged.append(f"round {rnd + 1} {w} {label}: " + "; ".join(why))
                    for f, v in figs.items():
                        table.setdefault((w, f, label), []).append(v)
                    print(f"round {rnd + 1} {w:>7} {label:>9}: " +
                          " ".join(f"{f}={v:.3f}" for f, v in figs.items()), file=sys.stderr)
        if a.ensemble:
            for _ in range(a.rounds):
                for kind, s in servers.items():
                    try:
                        took = s.failover_seconds()
                    except (TimeoutError, RuntimeError, StopIteration) as e:
                        print(f"{kind}: failover not measured: {e!r}", file=sys.stderr)
                        continue
                    table.setdefault(("failover", "seconds", kind), []).append(took)
        if a.large:
            for kind, s in servers.items():
                res = asyncio.run(large_tree(s.hosts, a.count))
                table[("large-tree", "create_s", kind)] = [res.seconds]
                table[("large-tree", "rss_mb", kind)] = [s.rss_mb()]
                table[("large-tree", "datadir_mb", kind)] = [_du_mb(root / kind)]
                t0 = time.perf_counter()
                s.stop()  # SIGTERM; zkpy writes its shutdown snapshot here
                table[("large-tree", "stop_s", kind)] = [time.perf_counter() - t0]
                table[("large-tree", "restart_s", kind)] = [s.start()]
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(root, ignore_errors=True)
    rows = []
    mode = "3-server ensembles" if a.ensemble else "standalone"
    load_end = os.getloadavg()
    print(f"\n{mode}: conns={a.conns} depth={a.depth} procs={a.procs} duration={a.duration}s "
          f"warmup={a.warmup}s rounds={a.rounds} (medians); {NCPU} cores, load average "
          f"{load_start[0]:.2f}/{load_start[1]:.2f} at the start, {load_end[0]:.2f}/{load_end[1]:.2f} "
          f"at the end (1/5 min)")
    print("  srv_us_op: server CPU per op (all members), srv_cores: its busy cores, "
          "cli_cores: the load generator's, other_cores: the rest of the machine's")
    if a.tls:
        print("  TLS: secureClientPort, ssl.clientAuth=need, EC P-256 certificates; ZooKeeper with "
              "NettyServerCnxnFactory on both of its ports")
    labels = [t[0] for t in targets]
    print(f"{'workload':>10} {'figure':>12} " + " ".join(f"{lb:>12}" for lb in labels) + " " +
          " ".join(f"{r[0]:>{max(8, len(r[0]))}}" for r in ratios))
    order = ["ops_per_s", "p50_ms", "p99_ms", "srv_us_op", "srv_cores"]
    for w, f in sorted({(w, f) for (w, f, _k) in table},
                       key=lambda wf: (wf[0], order.index(wf[1]) if wf[1] in order else len(order), wf[1])):
        med = {lb: statistics.median(table[(w, f, lb)]) for lb in labels if (w, f, lb) in table}
        quotients = {name: med[x] / med[y] if med[y] else float("nan")
                     for name, x, y in ratios if x in med and y in med}
        if not quotients:
            continue
        row: dict[str, str | float] = {"workload": w, "figure": f, **med}
        if a.tls:
            row.update(quotients)
        else:
            row["ratio"] = quotients[ratios[0][0]]
        rows.append(row)
        print(f"{w:>10} {f:>12} " + " ".join(f"{med[lb]:>12.3f}" if lb in med else f"{'-':>12}"
                                              for lb in labels) + " " +
              " ".join(f"{quotients[r[0]]:>{max(8, len(r[0]))}.2f}" if r[0] in quotients
                       else f"{'-':>{max(8, len(r[0]))}}" for r in ratios))
    for line in flagged:
        print(f"LIMITED: {line}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


def cmd_smoke(a: argparse.Namespace) -> int:
    """Start a fresh zkpy, run every workload briefly (and get over TLS), fail on any
    error reply."""
    root = Path(tempfile.mkdtemp(prefix="zkbench-smoke-"))
    server_tls, tls = _bench_pki(root)
    s = Server("zkpy", root, tls=server_tls)
    s.start()
    bad = 0
    try:
        for w in WORKLOADS:
            res = run_workload(s.hosts, w, 2, 4, a.duration, 1)
            print(json.dumps(res.summary()))
            bad += res.errors + (res.ops == 0)
        res = run_workload(s.hosts, "get", 2, 4, a.duration, 1, None, s.tls_hosts, tls)
        print(json.dumps({**res.summary(), "tls": True}))
        bad += res.errors + (res.ops == 0)
        res = asyncio.run(watch_fanout(s.hosts, 20, rounds=2))
        print(json.dumps(res.summary()))
        bad += res.ops != 40
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("run", "compare"):
        sp = sub.add_parser(name)
        sp.add_argument("--workload", default=",".join(WORKLOADS + ["watch"]))
        sp.add_argument("--conns", type=int, default=8)
        sp.add_argument("--depth", type=int, default=16)
        sp.add_argument("--duration", type=float, default=5.0)
        sp.add_argument("--procs", type=int, default=1)
        sp.add_argument("--sessions", type=int, default=1000, help="watch fan-out sessions")
        sp.add_argument("--count", type=int, default=1_000_000, help="large-tree znodes")
        sp.add_argument("--json", help="also write the results to this file")
        if name == "run":
            sp.add_argument("--hosts", default="127.0.0.1:2181")
            sp.add_argument("--pid", action="append", default=[], metavar="NAME=PID",
                            help="a server process whose CPU per op to report (repeatable)")
            sp.add_argument("--tls-hosts", help="the load over TLS to these host:port pairs "
                            "(setup and cleanup through --hosts); needs --ca, --cert, --key")
            sp.add_argument("--ca", help="PEM file of the CA that signed the server certificate")
            sp.add_argument("--cert", help="PEM client certificate")
            sp.add_argument("--key", help="PEM key of the client certificate")
        else:
            sp.add_argument("--rounds", type=int, default=3)
            sp.add_argument("--warmup", type=float, default=3.0, metavar="SECONDS",
                            help="an unrecorded run of each workload on each server first")
            sp.add_argument("--large", action="store_true", help="also large-tree, RSS, stop and restart")
            sp.add_argument("--ensemble", action="store_true",
                            help="3-server pseudo-clusters instead of standalone servers (adds failover)")
            sp.add_argument("--tls", action="store_true",
                            help="zkpy over TLS and plain, ZooKeeper over TLS (Netty) and plain")
            sp.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                            help="a zoo.cfg line for both servers, e.g. forceSync=no to take the "
                                 "disk out of the comparison (repeatable)")
    sm = sub.add_parser("smoke")
    sm.add_argument("--duration", type=float, default=0.5)
    a = p.parse_args(argv)
    return {"run": cmd_run, "compare": cmd_compare, "smoke": cmd_smoke}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
