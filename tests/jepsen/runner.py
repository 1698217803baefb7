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

from tests.ensemble import wait_converged
from tests.jepsen import checker
from tests.jepsen.history import Op, Recorder, counts, dump
from tests.jepsen.nemesis import Nemesis, ProxiedEnsemble

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


class Worker(threading.Thread):
    """One client session running one workload until `deadline`."""

    def __init__(self, n: int, stride: int, workload: str, client: Any, rec: Recorder,
                 cfg: RunConfig, deadline: float, halt: threading.Event) -> None:
        super().__init__(daemon=True, name=f"worker-{n}")
        self.process = n
        self.stride = stride
        self.workload = workload
        self.client = client
        self.rec = rec
        self.cfg = cfg
        self.deadline = deadline
        self.halt = halt
        self.rng = random.Random(cfg.seed * 1000 + n)
        self.counter = 0

    def run(self) -> None:
        op: Callable[[], None] = {"register": self.register_op, "set": self.set_op,
                                  "ids": self.ids_op, "counter": self.counter_op,
                                  "queue": self.queue_op}[self.workload]
        while not self.halt.is_set() and time.monotonic() < self.deadline:
            if not self.client.connected:
                time.sleep(0.05)
                continue
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


def _setup(ens: ProxiedEnsemble) -> None:
    c = ens.client(timeout=10.0)
    c.ensure_path("/jepsen/set")
    c.ensure_path("/jepsen/ids")
    c.ensure_path("/jepsen/q")
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
        c = ens.client(m.sid, timeout=10.0)
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


def run(cfg: RunConfig, log: Callable[[str], None] = print) -> RunResult:
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    out = cfg.out_dir or Path(tempfile.mkdtemp(prefix=f"jepsen-{cfg.seed}-"))
    out.mkdir(parents=True, exist_ok=True)
    tick = 500
    extra = {"snapCount": "100", "maxSessionTimeout": str(int(cfg.session_timeout * 2000))}
    rec = Recorder()
    with ProxiedEnsemble(["zkpy"] * cfg.servers, tick_time=tick, extra=extra) as ens:
        ens.start(timeout=60)
        _setup(ens)
        nem = Nemesis(ens, cfg.nemesis, cfg.seed, cfg.session_timeout,
                      interval=cfg.nemesis_interval, hold=cfg.nemesis_hold, plan=cfg.nemesis_plan)
        halt = threading.Event()
        t0 = time.monotonic()
        deadline = t0 + cfg.time_limit
        workers = []
        for n in range(cfg.clients):
            client = ens.client(timeout=cfg.session_timeout, start_timeout=30)
            workload = cfg.workloads[n % len(cfg.workloads)]
            workers.append(Worker(n, cfg.clients, workload, client, rec, cfg, deadline, halt))
        for w in workers:
            w.start()
        nem.start()
        try:
            while time.monotonic() < deadline and any(w.is_alive() for w in workers):
                time.sleep(0.2)
        finally:
            halt.set()
            nem.stop()
            for w in workers:
                w.join(cfg.op_timeout * 3 + 5)
        log(f"workload done after {time.monotonic() - t0:.1f}s; healing")
        ens.wait_ready(timeout=90)
        ens.close_clients()
        _final_reads(ens, rec, cfg.workloads)
        converged = _replicas_agree(ens)
        if nem.error is not None:
            converged += f" (nemesis error: {nem.error!r})"
        history = rec.snapshot()
        events = [e.line(t0) for e in nem.events]
        dump(history, out / "history.jsonl")
        (out / "nemesis.txt").write_text("\n".join(events) + "\n")
        if any(w.is_alive() for w in workers):
            converged += " (a worker did not stop)"
        for m in ens.members.values():  # kept for post-mortems: the ensemble's root is removed
            (out / f"server.{m.sid}.log").write_text(m.log_text())
    verdicts: dict[str, str] = {}
    details: dict[str, str] = {}
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
    result = RunResult(cfg, history, events, verdicts, details, converged, out)
    (out / "summary.txt").write_text(result.summary() + "\n")
    return result
