"""One Jepsen-style run: a zkpy ensemble behind fault proxies, client workers recording a
history, a nemesis on a schedule, then heal, final reads and the checkers.

Workloads (each worker runs one, round-robin over the chosen ones):

- `register`: znodes /jepsen/r0..r4 hold an integer.  read = sync + getData (a plain
  getData may be served by a lagging follower: ZooKeeper promises sequential consistency,
  not linearizable reads); write = setData with version -1; cas(a, b) = getData, then
  fail if the value is not a, else setData(b, version) -- BadVersion is a fail.
- `set`: add(e) = a sequential create /jepsen/set/e<e>-; final read = getChildren.
- `ids`: generate = a sequential create /jepsen/ids/id-; the id is the name it got.
- `counter`: /jepsen/counter holds an integer.  add = getData (value, version), then a
  multi of check(version) + setData(value + 1); a multi that fails (the check or the
  set: someone else got there first) is a fail.  read = sync + getData.
- `queue`: enqueue(e) = a sequential create /jepsen/q/e- holding e; dequeue =
  getChildren, then for the smallest name: getData and delete (NoNode: someone else took
  it, try the next); empty = fail.  A dequeue whose delete went unanswered is info with
  the element it was deleting.  The final drain reads every element left.
- `session`: every worker of every workload keeps an ephemeral /jepsen/eph/p<n>-<session>
  (one per session it gets); a worker's client told its session EXPIRED (kazoo LOST with
  KeeperState EXPIRED_SESSION) marks that session expired, and after the run (healed,
  converged, clients closed) no member may still hold an ephemeral of an expired session.
  The `session` workers themselves alternate between writing /jepsen/watch (setData -1)
  and watching it: getData with a data watch (version v0), and after the watch fires a
  getData on the same session, which must return a version > v0; each registration must
  deliver at most one event.  kazoo fires a NONE event at every registered watch when a
  connection is lost (it does not re-register watches); such a registration ends there.
  The nemeses rarely expire a session (a cut client reaches another member, so it
  reconnects in time), so a session worker now and then expires its own: a twin client
  attaches to the session with its id and password and closes it (`expire` ops in the
  history).

A request without an answer within `op_timeout`, or ended by ConnectionLoss or session
expiry, is `info` for writes (it may have been applied) and `fail` for reads.  After an
info the worker continues as a new process (the old request may still be in flight).

The nemesis schedule is a function of the seed; the interleaving of clients is not.
"""

from __future__ import annotations

import logging
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.ensemble import Ensemble, wait_converged
from tests.jepsen import checker
from tests.jepsen.history import Op, Recorder, counts, dump
from tests.jepsen.nemesis import Event, Nemesis, ProxiedEnsemble, mount_tmpfs, umount

REGISTERS = [f"r{i}" for i in range(5)]
DEFINITE = ("BadVersionError", "NoNodeError", "NodeExistsError")


@dataclass
class RunConfig:
    time_limit: float = 60.0
    nemesis: list[str] = field(default_factory=lambda: ["kill", "pause", "partition"])
    workloads: list[str] = field(default_factory=lambda: ["register", "set"])
    seed: int = 0
    servers: int = 3
    clients: int = 6
    session_timeout: float = 5.0
    op_timeout: float = 3.0
    nemesis_interval: float = 10.0
    nemesis_hold: float = 4.0
    nemesis_plan: list[str] | None = None  # exact faults (nemesis.FAULTS values) in order
    rate_delay: float = 0.01  # seconds between a worker's operations
    sync_reads: bool = True  # False: a register read is a plain getData (not linearizable in ZK)
    out_dir: Path | None = None


@dataclass
class RunResult:
    config: RunConfig
    history: list[Op]
    events: list[str]
    verdicts: dict[str, str]
    details: dict[str, str]
    converged: str
    out_dir: Path
    t0: float = 0.0  # monotonic time the workload started (history and timeline are relative to it)
    timeline: list[Event] = field(default_factory=list)
    lost: int = 0  # acknowledged set adds and queue enqueues missing at the end

    @property
    def valid(self) -> bool:
        ok = {checker.LINEARIZABLE, "valid"}
        return all(v in ok for v in self.verdicts.values()) and self.converged == "ok"

    def summary(self) -> str:
        lines = [f"seed {self.config.seed}: {len(self.history)} records, history in {self.out_dir}"]
        for f, by_type in sorted(counts(self.history).items()):
            lines.append(f"  {f:<9} " + " ".join(f"{t}={n}" for t, n in sorted(by_type.items())))
        lines.append(f"  nemesis events ({len(self.events)}):")
        lines += [f"    {e}" for e in self.events]
        for name, v in self.verdicts.items():
            lines.append(f"  {name:<9} {v}  {self.details.get(name, '')}")
        lines.append(f"  replicas  {self.converged}")
        lines.append(f"  VERDICT   {'valid' if self.valid else 'INVALID'}")
        return "\n".join(lines)


@dataclass
class SessionLog:
    """What the session checks collect, shared by the workers."""

    owners: dict[str, int] = field(default_factory=dict)  # ephemeral name -> session id
    expired: set[int] = field(default_factory=set)
    watches: list[checker.WatchRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Worker(threading.Thread):
    """One client session running one workload until `deadline`."""

    def __init__(self, n: int, stride: int, workload: str, client: Any, rec: Recorder,
                 cfg: RunConfig, deadline: float, halt: threading.Event,
                 sessions: SessionLog | None = None) -> None:
        super().__init__(daemon=True, name=f"worker-{n}")
        self.process = n
        self.n = n
        self.stride = stride
        self.workload = workload
        self.client = client
        self.rec = rec
        self.cfg = cfg
        self.deadline = deadline
        self.halt = halt
        self.rng = random.Random(cfg.seed * 1000 + n)
        self.counter = 0
        self.sessions = sessions
        self.eph_session: int | None = None  # the session whose ephemeral exists
        self.seen_session: int | None = None  # the last session an ephemeral was tried in
        self.watch: checker.WatchRecord | None = None
        self.fired = threading.Event()
        if sessions is not None:
            client.add_listener(self._state)

    def _state(self, state: Any) -> None:
        """kazoo listener (its event thread): note a session the server expired."""
        from kazoo.protocol.states import KazooState, KeeperState

        if (state == KazooState.LOST and self.sessions is not None and self.seen_session is not None
                and self.client.client_state == KeeperState.EXPIRED_SESSION):
            with self.sessions.lock:
                self.sessions.expired.add(self.seen_session)

    def _ephemeral(self) -> None:
        """One ephemeral per session: made once the worker sees a session without one."""
        assert self.sessions is not None
        cid = self.client.client_id
        if not cid or cid[0] == self.eph_session:
            return
        name = f"w{self.n}-{cid[0]:x}"
        self.seen_session = cid[0]
        with self.sessions.lock:
            self.sessions.owners[name] = cid[0]
        try:
            self._wait(self.client.create_async(f"/jepsen/eph/{name}", b"", ephemeral=True))
        except Exception as e:
            if type(e).__name__ != "NodeExistsError":
                return
        self.eph_session = cid[0]

    def run(self) -> None:
        op: Callable[[], None] = {"register": self.register_op, "set": self.set_op,
                                  "ids": self.ids_op, "counter": self.counter_op,
                                  "queue": self.queue_op, "session": self.session_op}[self.workload]
        while not self.halt.is_set() and time.monotonic() < self.deadline:
            if not self.client.connected:
                time.sleep(0.05)
                continue
            if self.sessions is not None:
                self._ephemeral()
            op()
            time.sleep(self.cfg.rate_delay)

    def _wait(self, async_result: Any) -> Any:
        return async_result.get(timeout=self.cfg.op_timeout)

    def _unknown(self, inv: Op, e: BaseException) -> None:
        """A write with no definite answer: info, and a new process from now on."""
        if inv.f == "read":
            self.rec.fail(inv, type(e).__name__)
        else:
            self.rec.info(inv, type(e).__name__)
            self.process += self.stride

    def register_op(self) -> None:
        key = self.rng.choice(REGISTERS)
        path = f"/jepsen/{key}"
        f = self.rng.choice(["read", "write", "cas"])
        value: Any = None if f == "read" else self.rng.randrange(5)
        if f == "cas":
            value = (self.rng.randrange(5), self.rng.randrange(5))
        inv = self.rec.invoke(self.process, f, key, value)
        try:
            if f == "read":
                if self.cfg.sync_reads:
                    self._wait(self.client.sync_async(path))
                data, _ = self._wait(self.client.get_async(path))
                self.rec.ok(inv, int(data))
            elif f == "write":
                self._wait(self.client.set_async(path, str(value).encode()))
                self.rec.ok(inv)
            else:
                data, stat = self._wait(self.client.get_async(path))
                if int(data) != value[0]:
                    self.rec.fail(inv, f"value is {int(data)}")
                    return
                self._wait(self.client.set_async(path, str(value[1]).encode(), stat.version))
                self.rec.ok(inv)
        except Exception as e:
            if type(e).__name__ in DEFINITE:
                self.rec.fail(inv, type(e).__name__)
            else:
                self._unknown(inv, e)

    def set_op(self) -> None:
        self.counter += 1
        elem = self.process * 1_000_000 + self.counter
        inv = self.rec.invoke(self.process, "add", "set", elem)
        try:
            self._wait(self.client.create_async(f"/jepsen/set/e{elem}-", b"", sequence=True))
            self.rec.ok(inv)
        except Exception as e:
            self._unknown(inv, e)

    def ids_op(self) -> None:
        inv = self.rec.invoke(self.process, "generate", "ids")
        try:
            path = self._wait(self.client.create_async("/jepsen/ids/id-", b"", sequence=True))
            self.rec.ok(inv, path.rsplit("/", 1)[1])
        except Exception as e:
            self._unknown(inv, e)


    def counter_op(self) -> None:
        path = "/jepsen/counter"
        if self.rng.random() < 0.3:
            inv = self.rec.invoke(self.process, "read", "counter")
            try:
                self._wait(self.client.sync_async(path))
                data, _ = self._wait(self.client.get_async(path))
                self.rec.ok(inv, int(data))
            except Exception as e:
                self.rec.fail(inv, type(e).__name__)
            return
        inv = self.rec.invoke(self.process, "add", "counter", 1)
        try:
            data, stat = self._wait(self.client.get_async(path))
        except Exception as e:  # nothing written yet
            self.rec.fail(inv, type(e).__name__)
            return
        try:
            t = self.client.transaction()
            t.check(path, stat.version)
            t.set_data(path, str(int(data) + 1).encode())
            results = self._wait(t.commit_async())
        except Exception as e:
            self._unknown(inv, e)
            return
        errors = [type(r).__name__ for r in results if isinstance(r, Exception)]
        if errors:
            self.rec.fail(inv, ",".join(errors))
        else:
            self.rec.ok(inv)

    def queue_op(self) -> None:
        if self.rng.random() < 0.55:
            self.counter += 1
            elem = self.process * 1_000_000 + self.counter
            inv = self.rec.invoke(self.process, "enqueue", "queue", elem)
            try:
                self._wait(self.client.create_async("/jepsen/q/e-", str(elem).encode(), sequence=True))
                self.rec.ok(inv)
            except Exception as e:
                self._unknown(inv, e)
            return
        inv = self.rec.invoke(self.process, "dequeue", "queue")
        try:
            names = sorted(self._wait(self.client.get_children_async("/jepsen/q")))
        except Exception as e:
            self.rec.fail(inv, type(e).__name__)
            return
        for name in names:
            try:
                data, _ = self._wait(self.client.get_async(f"/jepsen/q/{name}"))
            except Exception as e:
                if type(e).__name__ == "NoNodeError":
                    continue
                self.rec.fail(inv, type(e).__name__)  # nothing deleted yet
                return
            elem = int(data)
            try:
                self._wait(self.client.delete_async(f"/jepsen/q/{name}"))
            except Exception as e:
                if type(e).__name__ == "NoNodeError":
                    continue
                self.rec.info(inv, type(e).__name__, value=elem)
                self.process += self.stride
                return
            self.rec.ok(inv, elem)
            return
        self.rec.fail(inv, "empty")


    def expire_own_session(self) -> None:
        """Expire this worker's session the way ZooKeeper's tests do: a second client
        attaches to it (same id and password) and closes it."""
        from kazoo.client import KazooClient

        cid = self.client.client_id
        inv = self.rec.invoke(self.process, "expire", "session", f"{cid[0]:x}" if cid else None)
        twin = KazooClient(hosts=",".join(f"{h}:{p}" for h, p in self.client.hosts), client_id=cid,
                           timeout=self.cfg.session_timeout)
        try:
            twin.start(timeout=self.cfg.op_timeout)
            twin.stop()
            self.rec.ok(inv)
        except Exception as e:
            self.rec.info(inv, type(e).__name__)
            self.process += self.stride
        finally:
            twin.close()

    def session_op(self) -> None:
        path = "/jepsen/watch"
        if self.rng.random() < 0.004:
            self.expire_own_session()
            return
        if self.rng.random() < 0.5:
            inv = self.rec.invoke(self.process, "write", "watch", self.counter)
            self.counter += 1
            try:
                self._wait(self.client.set_async(path, str(self.counter).encode()))
                self.rec.ok(inv)
            except Exception as e:
                self._unknown(inv, e)
            return
        w = self.watch
        if w is not None and not self.fired.wait(0.2):
            return  # still waiting for a change
        if w is not None and w.events and w.events[0][1] == "NONE":
            w = None  # the connection was lost: kazoo dropped the watch
        fired = threading.Event()
        t_reg = time.monotonic()
        rec = checker.WatchRecord(self.process, path, -1, t_reg)

        def watch(event: Any) -> None:
            rec.events.append((time.monotonic(), str(event.type)))
            fired.set()

        try:
            _, stat = self._wait(self.client.get_async(path, watch=watch))
        except Exception:
            return
        if w is not None:
            w.t_read = time.monotonic()
            w.v_after = stat.version
        rec.v0 = stat.version
        self.watch = rec
        self.fired = fired
        assert self.sessions is not None
        with self.sessions.lock:
            self.sessions.watches.append(rec)


def start_every_member(ens: Ensemble, timeout: float) -> None:
    """Start the members and wait until every one of them serves.  Ensemble.start waits
    for the members still running, so one that died at start (its port taken by another
    process between free_port and its bind) would leave a quietly smaller ensemble; this
    raises with that member's log instead."""
    ens.start(wait=False)
    ens.wait_ready(sids=list(ens.members), timeout=timeout)


def _setup(ens: ProxiedEnsemble) -> None:
    c = ens.client(timeout=10.0)
    c.ensure_path("/jepsen/set")
    c.ensure_path("/jepsen/ids")
    c.ensure_path("/jepsen/q")
    c.ensure_path("/jepsen/eph")
    c.create("/jepsen/watch", b"0")
    c.create("/jepsen/counter", b"0")
    for r in REGISTERS:
        c.create(f"/jepsen/{r}", b"0")
    c.stop()
    c.close()


def _final_reads(ens: ProxiedEnsemble, rec: Recorder, workloads: list[str]) -> None:
    """Reads after the heal by a fresh session (process -1), retried until answered."""
    c = ens.client(timeout=10.0)
    try:
        for attempt in range(20):
            try:
                if "register" in workloads:
                    for r in REGISTERS:
                        inv = rec.invoke(-1, "read", r)
                        c.sync(f"/jepsen/{r}")
                        rec.ok(inv, int(c.get(f"/jepsen/{r}")[0]))
                if "set" in workloads:
                    inv = rec.invoke(-1, "read", "set")
                    c.sync("/jepsen/set")
                    names = c.get_children("/jepsen/set")
                    rec.ok(inv, [int(n[1:].split("-")[0]) for n in names])
                if "counter" in workloads:
                    inv = rec.invoke(-1, "read", "counter")
                    c.sync("/jepsen/counter")
                    rec.ok(inv, int(c.get("/jepsen/counter")[0]))
                if "queue" in workloads:
                    inv = rec.invoke(-1, "drain", "queue")
                    c.sync("/jepsen/q")
                    rec.ok(inv, [int(c.get(f"/jepsen/q/{n}")[0]) for n in c.get_children("/jepsen/q")])
                return
            except Exception as e:
                rec.fail(inv, type(e).__name__)
                time.sleep(0.5 * (attempt + 1))
        raise RuntimeError("final reads failed 20 times")
    finally:
        c.stop()
        c.close()


def _replicas_agree(ens: ProxiedEnsemble) -> str:
    """Every member, read directly after convergence, holds the same registers and set."""
    try:
        wait_converged(ens, timeout=30)
    except AssertionError as e:
        return f"DIVERGED: {str(e)[:300]}"
    seen: dict[int, tuple[Any, ...]] = {}
    for m in ens.members.values():
        try:
            c = ens.client(m.sid, timeout=10.0)
        except Exception as e:  # a member that serves srvr but takes no session: a finding
            return f"UNREADABLE: server.{m.sid} took no session: {e!r}"
        try:
            regs = tuple(c.get(f"/jepsen/{r}")[0] for r in REGISTERS)
            seen[m.sid] = (regs, tuple(sorted(c.get_children("/jepsen/set"))),
                           len(c.get_children("/jepsen/ids")), c.get("/jepsen/counter")[0],
                           tuple(sorted(c.get_children("/jepsen/q"))))
        finally:
            c.stop()
            c.close()
    if len(set(seen.values())) != 1:
        return "DIVERGED: " + "; ".join(f"server.{s}: regs={v[0]} set={len(v[1])} ids={v[2]} "
                                        f"counter={v[3]!r} queue={len(v[4])}"
                                        for s, v in seen.items())
    return "ok"


def _ephemerals_left(ens: ProxiedEnsemble) -> dict[int, list[str]]:
    """member -> the ephemerals it holds, each member read directly (after convergence)."""
    seen: dict[int, list[str]] = {}
    for m in ens.members.values():
        c = ens.client(m.sid, timeout=10.0)
        try:
            seen[m.sid] = c.get_children("/jepsen/eph")
        finally:
            c.stop()
            c.close()
    return seen


def _progress(rec: Recorder, nem: Nemesis, t0: float) -> str:
    """One line while a run goes: completions so far by type, the last nemesis event."""
    by_type: dict[str, int] = {}
    for op in rec.snapshot():
        by_type[op.type] = by_type.get(op.type, 0) + 1
    last = nem.events[-1].line(t0).strip() if nem.events else "none yet"
    return (f"  {time.monotonic() - t0:5.0f}s: ok={by_type.get('ok', 0)} fail={by_type.get('fail', 0)} "
            f"info={by_type.get('info', 0)}; last fault {last}")


def run(cfg: RunConfig, log: Callable[[str], None] = print, progress: float = 10.0) -> RunResult:
    """One run; `log` gets a progress line every `progress` s of workload."""
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    out = cfg.out_dir or Path(tempfile.mkdtemp(prefix=f"jepsen-{cfg.seed}-"))
    out.mkdir(parents=True, exist_ok=True)
    tick = 500
    extra = {"snapCount": "100", "maxSessionTimeout": str(int(cfg.session_timeout * 2000))}
    rec = Recorder()
    wants_disk = "disk" in cfg.nemesis or "disk-full" in (cfg.nemesis_plan or [])
    disk_dir: Path | None = None
    disk_skip = "no member on a tmpfs"
    try:
        with ProxiedEnsemble(["zkpy"] * cfg.servers, tick_time=tick, extra=extra) as ens:
            disk_sid: int | None = sorted(ens.members)[cfg.seed % cfg.servers] if wants_disk else None
            if disk_sid is not None:
                why = mount_tmpfs(ens[disk_sid].data_dir)
                if why is None:
                    disk_dir = ens[disk_sid].data_dir
                else:
                    disk_sid, disk_skip = None, why
                    log(f"disk nemesis skipped: {why}")
            start_every_member(ens, timeout=60)
            _setup(ens)
            nem = Nemesis(ens, cfg.nemesis, cfg.seed, cfg.session_timeout,
                          interval=cfg.nemesis_interval, hold=cfg.nemesis_hold, plan=cfg.nemesis_plan,
                          disk_sid=disk_sid, disk_skip=disk_skip)
            halt = threading.Event()
            t0 = time.monotonic()
            deadline = t0 + cfg.time_limit
            workers = []
            sessions = SessionLog() if "session" in cfg.workloads else None
            for n in range(cfg.clients):
                client = ens.client(timeout=cfg.session_timeout, start_timeout=30)
                workload = cfg.workloads[n % len(cfg.workloads)]
                workers.append(Worker(n, cfg.clients, workload, client, rec, cfg, deadline, halt,
                                      sessions))
            for w in workers:
                w.start()
            nem.start()
            try:
                next_note = t0 + progress
                while time.monotonic() < deadline and any(w.is_alive() for w in workers):
                    time.sleep(0.2)
                    if time.monotonic() >= next_note:
                        next_note += progress
                        log(_progress(rec, nem, t0))
            finally:
                halt.set()
                nem.stop()
                for w in workers:
                    w.join(cfg.op_timeout * 3 + 5)
            log(f"workload done after {time.monotonic() - t0:.1f}s; healing")
            ens.wait_ready(sids=list(ens.members), timeout=90)
            ens.close_clients()
            _final_reads(ens, rec, cfg.workloads)
            converged = _replicas_agree(ens)
            left = _ephemerals_left(ens) if sessions is not None and converged == "ok" else {}
            if nem.error is not None:
                converged += f" (nemesis error: {nem.error!r})"
            history = rec.snapshot()
            events = [e.line(t0) for e in nem.events]
            timeline = list(nem.events)
            dump(history, out / "history.jsonl")
            (out / "nemesis.txt").write_text("\n".join(events) + "\n")
            if any(w.is_alive() for w in workers):
                converged += " (a worker did not stop)"
            for m in ens.members.values():  # kept for post-mortems: the ensemble's root is removed
                (out / f"server.{m.sid}.log").write_text(m.log_text())
            for m in ens.members.values():
                m.kill()
            if disk_dir is not None:
                umount(disk_dir)
    finally:  # also when the run raised: a leftover mount outlives the ensemble
        if disk_dir is not None:
            umount(disk_dir)
    verdicts: dict[str, str] = {}
    details: dict[str, str] = {}
    lost = 0
    if "register" in cfg.workloads:
        t = time.monotonic()
        r = checker.check_register([op for op in history if op.key in REGISTERS], init=0)
        verdicts["register"] = r.verdict
        details["register"] = (f"{sum(k.ops for k in r.keys.values())} ops on {len(r.keys)} keys, "
                               f"{time.monotonic() - t:.1f}s: "
                               + ", ".join(f"{k}={v.verdict}" for k, v in sorted(r.keys.items())))
        if not r.valid:
            details["register"] += "\n" + checker.explain(r, history)
    if "set" in cfg.workloads:
        s = checker.check_set([op for op in history if op.key == "set"])
        verdicts["set"] = "valid" if s.valid else "invalid"
        details["set"] = s.summary()
        lost += len(s.lost)
    if "ids" in cfg.workloads:
        u = checker.check_unique_ids(history)
        verdicts["ids"] = "valid" if u.valid else "invalid"
        details["ids"] = u.summary()
    if "counter" in cfg.workloads:
        k = checker.check_counter([op for op in history if op.key == "counter"])
        verdicts["counter"] = "valid" if k.valid else "invalid"
        details["counter"] = k.summary()
    if "queue" in cfg.workloads:
        q = checker.check_queue([op for op in history if op.key == "queue"])
        verdicts["queue"] = "valid" if q.valid else "invalid"
        details["queue"] = q.summary()
        lost += len(q.lost)
    if sessions is not None:
        with sessions.lock:
            e = checker.check_ephemerals(dict(sessions.owners), set(sessions.expired), left)
            wr = checker.check_watches(list(sessions.watches))
        verdicts["ephemeral"] = "valid" if e.valid and left else "invalid"
        details["ephemeral"] = e.summary() + ("" if left else " (replicas not read)")
        verdicts["watch"] = "valid" if wr.valid else "invalid"
        details["watch"] = wr.summary()
    result = RunResult(cfg, history, events, verdicts, details, converged, out, t0, timeline, lost)
    (out / "summary.txt").write_text(result.summary() + "\n")
    return result
