"""Multi-process ensembles of zkpy and/or the reference Apache ZooKeeper for tests.

`Ensemble(["zkpy", "reference", "zkpy"])` describes servers 1..N (the list index + 1 is
the server id) on free 127.0.0.1 ports, each with its own workdir/data directory and
`myid`.  Every member's zoo.cfg carries the same `server.N=` lines; observers get
`:observer` there and `peerType=observer` in their own config.  Members are started and
stopped individually (`start`, `kill` = SIGKILL, `stop` = SIGTERM, `pause`/`resume` =
SIGSTOP/SIGCONT, `wipe` = empty the data dir but keep myid), and `wait_ready` polls `srvr`
until every running member (or the ones named) reports a mode with exactly one leader.
With `keep_config` a member's zoo.cfg is written on its first start only (a server with
reconfigEnabled rewrites it), and a member's `config_sids` limits the `server.N` lines its
first zoo.cfg lists (e.g. a joiner that knows the current members and itself);
`client_in_server_lines` writes each client address in the `server.N` lines instead of
clientPort/clientPortAddress.

Every process and kazoo client an Ensemble creates is tracked and torn down by `close()`
(use the ensemble as a context manager or from a fixture).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import REFERENCE_AVAILABLE, REFERENCE_JARS, REQUIRE_REFERENCE, four_letter, free_port

T = TypeVar("T")

ROLES = ("leader", "follower", "observer")

# Reference JVM settings: a small heap, notifications re-sent at most every second during
# elections (the default backs off to 60 s), and no txn-log based sync so that a learner
# whose last zxid predates the leader's in-memory committed log gets a SNAP, not a DIFF.
REFERENCE_JVM_FLAGS = [
    "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
    "-Dzookeeper.fastleader.maxNotificationInterval=1000",
    "-Dzookeeper.snapshotSizeFactor=-1",
    "-Dzookeeper.admin.enableServer=false",
]

LOG4J = """\
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n
"""


def module_ensemble(kinds: Sequence[str], **kw: Any) -> Iterator[Ensemble]:
    """For a module-scoped fixture: an ensemble of `kinds` started (generous timeout for
    the reference's JVMs), closed at the end of the module."""
    e = Ensemble(kinds, **kw)
    try:
        e.start(timeout=90)
        yield e
    finally:
        e.close()


def require_reference() -> None:
    """Skip (or, with ZKPY_REQUIRE_REFERENCE=1, fail) when the reference server is missing."""
    import pytest

    if not REFERENCE_AVAILABLE:
        if REQUIRE_REFERENCE:
            pytest.fail("the reference Apache ZooKeeper is not installed (apt-get install zookeeper)")
        pytest.skip("reference Apache ZooKeeper (Debian package zookeeper) is not installed")


def wait_until(cond: Callable[[], T], timeout: float, what: str = "condition",
               interval: float = 0.05, on_timeout: Callable[[], str] | None = None) -> T:
    """Poll `cond` until it returns something truthy; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            extra = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}\n{extra}")
        time.sleep(interval)


def attempt(fn: Callable[[], T]) -> T | None:
    """fn(), or None if it raised (for wait_until conditions over a flapping connection)."""
    try:
        return fn()
    except Exception:
        return None


def parse_srvr(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def parse_mntr(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("\t")
        if sep:
            out[k.strip()] = v.strip()
    return out


class Member:
    """One server of an ensemble (a process that may be started and killed many times)."""

    def __init__(self, ensemble: Ensemble, sid: int, kind: str, observer: bool, root: Path) -> None:
        self.ensemble = ensemble
        self.sid = sid
        self.kind = kind
        self.observer = observer
        self.workdir = root / f"s{sid}-{kind}"
        self.client_port = free_port()
        self.quorum_port = free_port()
        self.election_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.extra: dict[str, str] = {}
        # the servers its first zoo.cfg lists (None: every member), e.g. a joiner's view
        self.config_sids: set[int] | None = None

    def __repr__(self) -> str:
        return f"<server.{self.sid} {self.kind}{' observer' if self.observer else ''} :{self.client_port}>"

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def server_line(self) -> str:
        s = f"127.0.0.1:{self.quorum_port}:{self.election_port}"
        return s + (":observer" if self.observer else "")

    def write_config(self) -> Path:
        e = self.ensemble
        cfg = self.workdir / "zoo.cfg"
        if e.keep_config and cfg.exists():
            return cfg  # rewritten by the server (reconfigEnabled): a restart keeps its reconfigs
        lines = {
            "tickTime": str(e.tick_time),
            "initLimit": str(e.init_limit),
            "syncLimit": str(e.sync_limit),
            "dataDir": str(self.data_dir),
            "clientPort": str(self.client_port),
            "clientPortAddress": "127.0.0.1",
            "4lw.commands.whitelist": "*",
            "admin.enableServer": "false",
            "maxClientCnxns": "0",
            "electionAlg": "3",
        }
        if self.observer:
            lines["peerType"] = "observer"
        if e.client_in_server_lines:  # the 3.5+ form: server.N=...;clientHost:clientPort
            del lines["clientPort"], lines["clientPortAddress"]
        lines.update(e.extra)
        lines.update(self.extra)
        for m in e.members.values():
            if self.config_sids is None or m.sid in self.config_sids:
                client = f";127.0.0.1:{m.client_port}" if e.client_in_server_lines else ""
                lines[f"server.{m.sid}"] = e.server_line_for(self, m) + client
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return cfg

    def start(self) -> Member:
        """Spawn the server (not waiting for it to serve; see Ensemble.wait_ready)."""
        assert not self.running, f"{self} is already running"
        cfg = self.write_config()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "myid").write_text(f"{self.sid}\n")
        with open(self.log_path, "ab") as out:
            out.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n".encode())
            out.flush()
            if self.kind == "reference":
                (self.workdir / "log4j.properties").write_text(LOG4J)
                cmd = ["java", *REFERENCE_JVM_FLAGS, *self.ensemble.jvm_flags,
                       "-cp", ":".join(REFERENCE_JARS + self.ensemble.extra_jars),
                       f"-Dzookeeper.log.dir={self.workdir}",
                       f"-Dlog4j.configuration=file:{self.workdir / 'log4j.properties'}",
                       "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg)]
            env = dict(os.environ)
            if self.kind == "zkpy":
                cmd = [sys.executable, "-m", "zkpy.server.main", "start", str(cfg)]
                # the -D switches reach zkpy the way zkServer.sh passes them to Java
                env["SERVER_JVMFLAGS"] = " ".join(self.ensemble.jvm_flags)
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.workdir, env=env)
        self.paused = False
        return self

    def kill(self) -> None:
        """kill -9."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), SIGKILL if it takes more than 10 s."""
        self._end(signal.SIGTERM)

    def _end(self, sig: int) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                p.send_signal(sig)
                if self.paused:
                    p.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        self.proc = None
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets open but reads and answers nothing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.paused:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def wipe(self) -> None:
        """Empty the data directory (the server must be down); myid is written again on start."""
        assert not self.running
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # ---- four-letter words ------------------------------------------------------
    def srvr(self, timeout: float = 1.0) -> dict[str, str]:
        """Parsed srvr answer; {} when down or not serving."""
        if not self.running or self.paused:
            return {}
        try:
            return parse_srvr(four_letter(self.client_port, "srvr", timeout))
        except OSError:
            return {}

    def mode(self, timeout: float = 1.0) -> str | None:
        return self.srvr(timeout).get("Mode")

    def zxid(self) -> int | None:
        z = self.srvr().get("Zxid")
        return int(z, 16) if z else None

    def mntr(self, timeout: float = 2.0) -> dict[str, str]:
        return parse_mntr(four_letter(self.client_port, "mntr", timeout))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_since_start(self) -> str:
        """The log of the current (most recent) run only."""
        return self.log_text().rsplit("===== start ", 1)[-1]


class Ensemble:
    """N servers of chosen kinds; sids are 1..N in the order of `kinds`."""

    def __init__(self, kinds: Sequence[str], observers: Iterable[int] = (), tick_time: int = 500,
                 init_limit: int = 10, sync_limit: int = 5, extra: dict[str, str] | None = None,
                 jvm_flags: Sequence[str] = (), keep_config: bool = False,
                 client_in_server_lines: bool = False) -> None:
        if "reference" in kinds:
            require_reference()
        self.root = Path(tempfile.mkdtemp(prefix="zk-ensemble-"))
        self.tick_time = tick_time
        self.init_limit = init_limit
        self.sync_limit = sync_limit
        self.extra = dict(extra or {})
        self.jvm_flags = list(jvm_flags)
        self.keep_config = keep_config
        self.extra_jars: list[str] = []  # on the reference's class path (Netty for quorum TLS)
        self.client_in_server_lines = client_in_server_lines
        obs = set(observers)
        self.members: dict[int, Member] = {}
        for i, kind in enumerate(kinds, start=1):
            assert kind in ("zkpy", "reference"), kind
            self.members[i] = Member(self, i, kind, i in obs, self.root)
        self.clients: list[Any] = []
        self.raw: list[Any] = []

    def __getitem__(self, sid: int) -> Member:
        return self.members[sid]

    def __enter__(self) -> Ensemble:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def voters(self) -> list[Member]:
        return [m for m in self.members.values() if not m.observer]

    def running(self) -> list[Member]:
        return [m for m in self.members.values() if m.running and not m.paused]

    def server_line_for(self, writer: Member, m: Member) -> str:
        """The `server.N` value for member `m` in `writer`'s zoo.cfg (a hook: the Jepsen
        harness points members at fault-injecting proxies instead of each other)."""
        return m.server_line()

    def start(self, sids: Iterable[int] | None = None, wait: bool = True, timeout: float = 60.0) -> None:
        chosen = list(sids) if sids is not None else list(self.members)
        for sid in chosen:
            if not self.members[sid].running:
                self.members[sid].start()
        if wait:
            self.wait_ready(timeout=timeout)

    def modes(self) -> dict[int, str | None]:
        return {m.sid: m.mode() for m in self.running()}

    def wait_ready(self, sids: Iterable[int] | None = None, timeout: float = 60.0) -> dict[int, str]:
        """Until each running member (or each of `sids`) is serving as leader/follower/observer,
        with exactly one leader among them and observers observing; returns sid -> mode."""
        def check() -> dict[int, str] | None:
            chosen = [self.members[s] for s in sids] if sids is not None else self.running()
            out: dict[int, str] = {}
            for m in chosen:
                if not m.running:
                    raise AssertionError(f"{m} exited with {m.proc and m.proc.returncode}:\n"
                                         f"{m.log_text()[-4000:]}")
                mode = m.mode()
                if mode not in ROLES or (mode == "observer") != m.observer:
                    return None
                out[m.sid] = mode
            return out if list(out.values()).count("leader") == 1 else None

        return wait_until(check, timeout, "the ensemble to serve", 0.1, self.describe)

    def leader(self, timeout: float = 60.0) -> Member:
        modes = self.wait_ready(timeout=timeout)
        return next(self.members[s] for s, m in modes.items() if m == "leader")

    def followers(self) -> list[Member]:
        return [m for m in self.running() if m.mode() == "follower"]

    def observer_members(self) -> list[Member]:
        return [m for m in self.members.values() if m.observer]

    def hosts(self, sids: Iterable[int] | None = None) -> str:
        chosen = list(sids) if sids is not None else list(self.members)
        return ",".join(self.members[s].hosts for s in chosen)

    def client_hosts(self, sids: Iterable[int] | None = None) -> str:
        """The connect string of a new client (a hook: the Jepsen harness gives each client
        its own fault proxies in front of the members' client ports)."""
        return self.hosts(sids)

    def client(self, *sids: int, timeout: float = 10.0, start_timeout: float = 20.0, **kw: Any) -> Any:
        """A started kazoo client on the given members (all members when none are given)."""
        from kazoo.client import KazooClient

        kw.setdefault("connection_retry", {"max_tries": -1, "delay": 0.05, "backoff": 1.5,
                                           "max_delay": 0.5})
        kw.setdefault("command_retry", {"max_tries": 0})
        c = KazooClient(hosts=self.client_hosts(sids or None), timeout=timeout, **kw)
        self.clients.append(c)
        c.start(timeout=start_timeout)
        return c

    def describe(self) -> str:
        lines = []
        for m in self.members.values():
            state = "paused" if m.paused else ("running" if m.running else "down")
            lines.append(f"--- {m} {state} srvr={m.srvr() if m.running else {}}")
            lines.append(m.log_text()[-2500:])
        return "\n".join(lines)

    def close_clients(self) -> None:
        """Close the kazoo clients and the raw connections a test made."""
        for c in self.clients:
            try:
                c.stop()
                c.close()
            except Exception:
                pass
        self.clients.clear()
        for r in self.raw:
            r.close()
        self.raw.clear()

    def each_test(self) -> Iterator[None]:
        """For an autouse fixture: every member serving before the test (restarting what
        the previous test left down), its clients closed after it."""
        self.start(timeout=60)
        yield
        self.close_clients()

    def close(self) -> None:
        self.close_clients()
        for r in self.raw:
            try:
                r.close()
            except Exception:
                pass
        for m in self.members.values():
            try:
                m.kill()
            except Exception:
                pass
        if os.environ.get("ZKPY_KEEP_ENSEMBLE") != "1":
            shutil.rmtree(self.root, ignore_errors=True)


# ---- data checks ----------------------------------------------------------------------


def read_tree(client: Any, path: str, with_data: bool = True) -> dict[str, bytes | None]:
    """child name -> data of every child of `path`, after a sync (pipelined reads)."""
    client.sync(path)
    names = client.get_children(path)
    if not with_data:
        return dict.fromkeys(names)
    out: dict[str, bytes | None] = {}
    for i in range(0, len(names), 200):
        batch = names[i:i + 200]
        results = [client.get_async(f"{path}/{n}") for n in batch]
        for n, r in zip(batch, results, strict=True):
            out[n] = r.get(timeout=20)[0]
    return out


def assert_contents(ens: Ensemble, members: Iterable[Member], path: str,
                    expected: dict[str, bytes], exact: bool = True) -> None:
    """Every member, read through its own client after a sync, has `expected` under `path`
    (exactly these children when `exact`, else at least these)."""
    for m in members:
        c = ens.client(m.sid)
        try:
            got = read_tree(c, path)
        finally:
            c.stop()
            c.close()
        missing = sorted(set(expected) - set(got))
        assert not missing, f"{m} lacks {len(missing)} nodes under {path}: {missing[:10]}"
        wrong = sorted(n for n in expected if got[n] != expected[n])
        assert not wrong, f"{m} has wrong data under {path}: {[(n, got[n]) for n in wrong[:5]]}"
        if exact:
            extra = sorted(set(got) - set(expected))
            assert not extra, f"{m} has unexpected nodes under {path}: {extra[:10]}"


def wait_converged(ens: Ensemble, members: Iterable[Member] | None = None, timeout: float = 20.0) -> int:
    """Until all (running) members report the same Zxid and node count; returns that zxid."""
    chosen = list(members) if members is not None else ens.running()

    def check() -> int | None:
        seen = {(s.get("Zxid"), s.get("Node count")) for s in (m.srvr() for m in chosen)}
        if len(seen) == 1:
            zxid, count = seen.pop()
            if zxid is not None and count is not None:
                return int(zxid, 16) or -1
        return None

    return wait_until(check, timeout, "the members to converge", 0.1,
                      lambda: repr({m.sid: m.srvr() for m in chosen}))


def write_many(client: Any, path: str, count: int, prefix: str = "n", window: int = 100) -> dict[str, bytes]:
    """Create `count` children of `path` with pipelined creates; returns name -> data."""
    out: dict[str, bytes] = {}
    for i in range(0, count, window):
        batch = [(f"{prefix}{j:06d}", f"{prefix}-{j}".encode()) for j in range(i, min(count, i + window))]
        results = [client.create_async(f"{path}/{n}", d) for n, d in batch]
        for (n, d), r in zip(batch, results, strict=True):
            r.get(timeout=30)
            out[n] = d
    return out


def writes_through_every_server(ens: Ensemble, base: str) -> None:
    """Create, set and delete through every running member's own client; after a sync
    every member sees every change."""
    clients = {m.sid: ens.client(m.sid) for m in ens.running()}
    first = next(iter(clients.values()))
    first.create(base)
    for sid, c in clients.items():
        assert c.create(f"{base}/from-{sid}", f"v{sid}".encode()) == f"{base}/from-{sid}"
    expected = {f"from-{sid}": f"v{sid}".encode() for sid in clients}
    sids = list(clients)
    for i, (sid, c) in enumerate(clients.items()):
        other = sids[(i + 1) % len(sids)]  # each server changes a node another one created
        c.set(f"{base}/from-{other}", f"set-by-{sid}".encode())
        expected[f"from-{other}"] = f"set-by-{sid}".encode()
    for sid, c in clients.items():
        c.sync(base)
        assert {n: c.get(f"{base}/{n}")[0] for n in c.get_children(base)} == expected, sid
    for sid, c in clients.items():
        c.delete(f"{base}/from-{sid}")
    for sid, c in clients.items():
        c.sync(base)
        assert c.get_children(base) == [], sid


class LoadWriter(threading.Thread):
    """Pipelined creates under `path`; remembers every acknowledged write and its czxid."""

    def __init__(self, client: object, path: str, tag: str, window: int = 16) -> None:
        super().__init__(daemon=True, name=f"load-{tag}")
        self.client = client
        self.path = path
        self.tag = tag
        self.window = window
        self.acked: dict[str, bytes] = {}
        self.acks: list[tuple[float, int]] = []  # (monotonic time, czxid)
        self.errors = 0
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            batch = []
            for _ in range(self.window):
                name, data = f"{self.tag}-{i:06d}", f"{self.tag}/{i}".encode()
                i += 1
                batch.append((name, data, self.client.create_async(  # type: ignore[attr-defined]
                    f"{self.path}/{name}", data, include_data=True)))
            failed = 0
            for name, data, r in batch:
                try:
                    _, stat = r.get(timeout=5)
                except Exception:  # ConnectionLoss, a timeout...: not acknowledged
                    failed += 1
                    continue
                self.acked[name] = data
                self.acks.append((time.monotonic(), stat.czxid))
            self.errors += failed
            if failed == len(batch):
                time.sleep(0.05)

    def acks_after(self, epoch: int) -> list[float]:
        return [t for t, z in self.acks if z >> 32 > epoch]


@dataclass
class Failover:
    old_leader: Member
    new_leader: Member
    elected_s: float  # kill -> a new leader and its followers report their modes in srvr
    first_write_s: float  # kill -> the first write acknowledged in the new epoch
    acked: dict[str, bytes]  # every acknowledged write: name under base -> data
    failed: int  # writes that got an error or no answer (their outcome is unknown)

    def summary(self) -> str:
        return (f"leader {self.old_leader.sid} ({self.old_leader.kind}) killed -> "
                f"server {self.new_leader.sid} ({self.new_leader.kind}) leads after {self.elected_s:.2f}s, "
                f"first write acked after {self.first_write_s:.2f}s; {len(self.acked)} writes acked, "
                f"{self.failed} failed/unknown")


def kill_leader_under_load(ens: Ensemble, base: str, pinned: Iterable[int] = (),
                           timeout: float = 30.0) -> Failover:
    """kill -9 the leader while clients write under `base` (which must exist): one client
    on all the voters plus one on each member in `pinned`.  Returns when a new leader has
    acknowledged writes from the all-voters client and every pinned voter's client."""
    leader = ens.leader()
    survivors = [m.sid for m in ens.voters if m.running and m is not leader]
    old_epoch = (leader.zxid() or 0) >> 32
    writers = [LoadWriter(ens.client(*[m.sid for m in ens.voters]), base, "all")]
    writers += [LoadWriter(ens.client(sid), base, f"s{sid}") for sid in pinned]
    must_progress = [w for w in writers if w.tag == "all" or not ens[int(w.tag[1:])].observer]
    for w in writers:
        w.start()
    try:
        wait_until(lambda: all(len(w.acked) >= 30 for w in writers), 20, "the load to get going")
        t_kill = time.monotonic()
        leader.kill()
        ens.wait_ready(sids=survivors, timeout=timeout)
        t_elected = time.monotonic()
        new_leader = next(ens[s] for s in survivors if ens[s].mode() == "leader")
        wait_until(lambda: any(w.acks_after(old_epoch) for w in writers), timeout,
                   "a write acknowledged in the new epoch", on_timeout=ens.describe)
        t_write = min(t for w in writers for t in w.acks_after(old_epoch))
        wait_until(lambda: all(len(w.acks_after(old_epoch)) >= 20 for w in must_progress), timeout,
                   "the load to continue in the new epoch", on_timeout=ens.describe)
    finally:
        for w in writers:
            w.halt.set()
        for w in writers:
            w.join(15)
    return Failover(leader, new_leader, t_elected - t_kill, t_write - t_kill,
                    {n: d for w in writers for n, d in w.acked.items()}, sum(w.errors for w in writers))
