#!/usr/bin/env python3
"""kill -9 at scale: crash zkpy again and again under write load and check that no
acknowledged write is ever lost.

    python scripts/kill9.py standalone --cycles 1000 --clients 4 --out /tmp/kill9-standalone
    python scripts/kill9.py ensemble --cycles 200 --clients 4 --out /tmp/kill9-ensemble

Each writer (a kazoo session) keeps `--window` sequential creates in flight under its own
parent /kill9/w<n> and, between batches, sets its own register /kill9/reg<n> with the
version it last saw (a conditional write).  An answered create is an acknowledged write
(its name is remembered); an unanswered one (ConnectionLoss, timeout) is `info`: it may
or may not exist.  A cycle lets the load run a random moment, then kill -9s a victim --
the standalone server, or in an ensemble a random member, the leader (three cycles
in ten) or every member at once (one in ten) -- restarts it and, once it serves again,
checks through a fresh session (after a sync) that every create acknowledged so far is
there and that each register holds at least its acknowledged version (the same value
when the version is equal).  The last check also reads every member directly.  The
servers run with snapCount=100, so recovery reads snapshots as well as logs.

Exit status 1 on a lost write or a failed check; the server logs of the run stay in
--out for a post-mortem.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import ServerProcess  # noqa: E402
from tests.ensemble import Ensemble, wait_converged  # noqa: E402
from tests.jepsen.runner import start_every_member  # noqa: E402

SNAP_COUNT = "100"


class Writer(threading.Thread):
    """One session's write load; every acknowledged write is remembered."""

    def __init__(self, n: int, client: Any, window: int, op_timeout: float, pause: float) -> None:
        super().__init__(daemon=True, name=f"kill9-writer-{n}")
        self.n = n
        self.client = client
        self.window = window
        self.op_timeout = op_timeout
        self.pause = pause
        self.parent = f"/kill9/w{n}"
        self.register = f"/kill9/reg{n}"
        self.acked: set[str] = set()  # names of acknowledged creates
        self.reg_acked = (0, b"0")  # (version, data) of the last acknowledged set
        self.reg_unacked = 0  # sets sent since the last acknowledged one (in flight or info)
        self.reg_acks = 0  # acknowledged sets
        self.reg_version: int | None = 0  # the version the next set expects (None: read it)
        self.attempted = 0
        self.info = 0
        self.failed = 0  # definite failures (BadVersion): not applied
        self.lock = threading.Lock()
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            if not self.client.connected:
                time.sleep(0.02)
                continue
            batch = []
            for _ in range(self.window):
                i += 1
                batch.append(self.client.create_async(f"{self.parent}/c-", f"{self.n}/{i}".encode(),
                                                      sequence=True))
            self.attempted += len(batch)
            for r in batch:
                try:
                    name = r.get(timeout=self.op_timeout)
                except Exception:
                    self.info += 1
                    continue
                with self.lock:
                    self.acked.add(name.rsplit("/", 1)[1])
            self._set_register(i)
            self.halt.wait(self.pause)

    def _set_register(self, i: int) -> None:
        try:
            if self.reg_version is None:
                _, stat = self.client.get_async(self.register).get(timeout=self.op_timeout)
                self.reg_version = stat.version
            data = str(i).encode()
            self.attempted += 1
            with self.lock:
                self.reg_unacked += 1
            stat = self.client.set_async(self.register, data, self.reg_version).get(timeout=self.op_timeout)
        except Exception as e:
            if type(e).__name__ == "BadVersionError":
                self.failed += 1
                with self.lock:
                    self.reg_unacked -= 1
            elif self.reg_version is not None:  # the set was sent: its outcome is unknown
                self.info += 1
            self.reg_version = None
            return
        with self.lock:
            self.reg_acked = (stat.version, data)
            self.reg_unacked = 0
            self.reg_acks += 1
        self.reg_version = stat.version

    def expected(self) -> tuple[set[str], tuple[int, bytes], int]:
        with self.lock:
            return set(self.acked), self.reg_acked, self.reg_unacked


@dataclass
class Report:
    mode: str
    cycles: int = 0
    kills: dict[str, int] = field(default_factory=dict)  # what was killed -> times
    attempted: int = 0
    acked_writes: int = 0  # acknowledged creates and register sets
    info_ops: int = 0
    failed_ops: int = 0
    lost_writes: int = 0  # the most acknowledged writes found missing by one check
    failed_checks: int = 0
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def line(self) -> str:
        return (f"{self.mode}: {self.cycles} cycles, {self.acked_writes} acked writes, "
                f"{self.lost_writes} lost, {self.info_ops} info, {self.failed_ops} failed, "
                f"{self.failed_checks} failed checks, {self.wall_s:.0f}s")


def check(client: Any, writers: list[Writer], where: str) -> tuple[int, list[str]]:
    """Every acknowledged write visible through `client` (after a sync): how many are
    lost, and every problem (a lost write, or a register ahead of what was sent)."""
    problems: list[str] = []
    lost_writes = 0
    # What must be there is what was acknowledged before the sync: a write acknowledged
    # after it (on another member) may not have reached the member this session reads yet.
    before = [w.expected() for w in writers]
    client.sync("/kill9")
    for w, (acked, (version, data), _) in zip(writers, before, strict=True):
        present = set(client.get_children(w.parent))
        lost = sorted(acked - present)
        lost_writes += len(lost)
        if lost:
            problems.append(f"{where}: {len(lost)} acknowledged creates of writer {w.n} missing: {lost[:10]}")
        got, stat = client.get(w.register)
        _, (version_after, _), unacked = w.expected()  # what may be there: taken after
        if stat.version < version or (stat.version == version and got != data):
            lost_writes += 1
            problems.append(f"{where}: register {w.n} is v{stat.version}={got!r}, acknowledged "
                            f"v{version}={data!r}")
        elif stat.version > version_after + unacked:
            problems.append(f"{where}: register {w.n} is v{stat.version}, more than acknowledged "
                            f"v{version_after} + {unacked} unacknowledged sets")
    return lost_writes, problems


class Target:
    """What gets killed: a standalone server or an ensemble (the same small interface)."""

    def __init__(self, mode: str, root: Path, servers: int, tick: int) -> None:
        self.mode = mode
        extra = {"snapCount": SNAP_COUNT, "tickTime": str(tick)}
        self.standalone: ServerProcess | None = None
        self.ensemble: Ensemble | None = None
        if mode == "standalone":
            self.standalone = ServerProcess("zkpy", root / "standalone", extra)
        else:
            self.ensemble = Ensemble(["zkpy"] * servers, tick_time=tick,
                                     extra={"snapCount": SNAP_COUNT})

    def start(self) -> None:
        if self.standalone is not None:
            self.standalone.start()
        else:
            assert self.ensemble is not None
            start_every_member(self.ensemble, timeout=120)

    @property
    def hosts(self) -> str:
        if self.standalone is not None:
            return self.standalone.hosts
        assert self.ensemble is not None
        return self.ensemble.hosts()

    def member_hosts(self) -> list[str]:
        if self.standalone is not None:
            return [self.standalone.hosts]
        assert self.ensemble is not None
        return [m.hosts for m in self.ensemble.members.values()]

    def kill_and_restart(self, rng: random.Random, down: float) -> str:
        """kill -9 a victim, wait `down` s, restart it and wait until all serve; the victim."""
        if self.standalone is not None:
            self.standalone.stop(kill=True)
            time.sleep(down)
            self.standalone.start()
            return "server"
        ens = self.ensemble
        assert ens is not None
        r = rng.random()
        if r < 0.1:
            victims, what = list(ens.members.values()), "all"
        elif r < 0.4:
            victims, what = [ens.leader(timeout=120)], "leader"
        else:
            victims = [ens[rng.choice(sorted(ens.members))]]
            mode = victims[0].mode()
            what = mode if mode in ("leader", "follower") else "member"
        for m in victims:
            m.kill()
        time.sleep(down)
        for m in victims:
            m.start()
        ens.wait_ready(sids=list(ens.members), timeout=120)  # a victim that died on restart fails
        return what

    def logs(self) -> dict[str, str]:
        if self.standalone is not None:
            return {"server.log": self.standalone.log_text()}
        assert self.ensemble is not None
        return {f"server.{m.sid}.log": m.log_text() for m in self.ensemble.members.values()}

    def save_data(self, out: Path) -> None:
        """List the data directories' files (name, size) in `out`: the directories
        themselves grow to gigabytes over a long run (no purge), too much to copy."""
        if self.standalone is not None:
            dirs = {"data": self.standalone.data_dir}
        else:
            assert self.ensemble is not None
            dirs = {f"data-{m.sid}": m.data_dir for m in self.ensemble.members.values()}
        for name, d in dirs.items():
            files = sorted(p for p in d.rglob("*") if p.is_file())
            (out / f"{name}.txt").write_text("".join(f"{p.stat().st_size:>12} {p.relative_to(d)}\n"
                                                     for p in files))

    def converge(self) -> None:
        if self.ensemble is not None:
            wait_converged(self.ensemble, timeout=60)

    def close(self) -> None:
        if self.standalone is not None:
            self.standalone.stop(kill=True)
            shutil.rmtree(self.standalone.workdir, ignore_errors=True)
        if self.ensemble is not None:
            self.ensemble.close()


def client(hosts: str, timeout: float) -> Any:
    from kazoo.client import KazooClient

    c = KazooClient(hosts=hosts, timeout=timeout,
                    connection_retry={"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.5},
                    command_retry={"max_tries": 0})
    c.start(timeout=60)
    return c


def checked(hosts: str, writers: list[Writer], where: str) -> tuple[int, list[str]]:
    """`check` through a fresh session, retried while the service settles (not a loss)."""
    last: Exception | None = None
    for _ in range(10):
        c = None
        try:
            c = client(hosts, 10.0)
            return check(c, writers, where)
        except Exception as e:
            last = e
            time.sleep(0.5)
        finally:
            if c is not None:
                c.stop()
                c.close()
    return 0, [f"{where}: could not read ({last!r})"]


def run(a: argparse.Namespace) -> Report:
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    rng = random.Random(a.seed)
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="kill9-"))
    target = Target(a.mode, root, a.servers, a.tick)
    report = Report(a.mode)
    t0 = time.monotonic()
    writers: list[Writer] = []
    try:
        target.start()
        setup = client(target.hosts, 10.0)
        for n in range(a.clients):
            setup.ensure_path(f"/kill9/w{n}")
            setup.create(f"/kill9/reg{n}", b"0")
        setup.stop()
        setup.close()
        writers = [Writer(n, client(target.hosts, a.session_timeout), a.window, a.op_timeout, a.pause)
                   for n in range(a.clients)]
        for w in writers:
            w.start()
        last_print = 0.0
        for cycle in range(1, a.cycles + 1):
            if a.max_seconds and time.monotonic() - t0 > a.max_seconds:
                print(f"stopping after {cycle - 1} cycles: --max-seconds reached", flush=True)
                break
            time.sleep(rng.uniform(a.min_load, a.max_load))
            try:
                what = target.kill_and_restart(rng, rng.uniform(0.0, a.max_down))
            except (AssertionError, RuntimeError) as e:  # a victim that does not come back
                report.cycles = cycle
                report.failed_checks += 1
                report.problems.append(f"cycle {cycle}: a server did not come back: {str(e)[:1500]}")
                print("PROBLEM", report.problems[-1], flush=True)
                break
            report.kills[what] = report.kills.get(what, 0) + 1
            lost, problems = checked(target.hosts, writers, f"cycle {cycle} ({what} killed)")
            report.cycles = cycle
            if problems:
                report.problems += problems
                report.failed_checks += 1
                report.lost_writes = max(report.lost_writes, lost)
                for p in problems:
                    print("PROBLEM", p, flush=True)
                if a.stop_on_loss:
                    break
            now = time.monotonic()
            if now - last_print > a.progress or cycle == a.cycles:
                last_print = now
                acked = sum(len(w.expected()[0]) for w in writers)
                rate = cycle / (now - t0)
                print(f"[{now - t0:7.0f}s] cycle {cycle}/{a.cycles} ({rate:.2f}/s, eta "
                      f"{(a.cycles - cycle) / rate:.0f}s) kills {report.kills} acked creates {acked} "
                      f"info {sum(w.info for w in writers)} lost {report.lost_writes}", flush=True)
    finally:
        for w in writers:
            w.halt.set()
        for w in writers:
            w.join(a.op_timeout * (a.window + 2))
            w.client.stop()
            w.client.close()
    try:
        target.converge()
        final: list[str] = []
        for hosts in target.member_hosts():  # every member read directly
            lost, problems = checked(hosts, writers, f"final read of {hosts}")
            final += problems
            report.lost_writes = max(report.lost_writes, lost)
        if final:
            report.problems += final
            report.failed_checks += 1
            for p in final:
                print("PROBLEM", p, flush=True)
        report.acked_writes = sum(len(w.acked) + w.reg_acks for w in writers)
        report.attempted = sum(w.attempted for w in writers)
        report.info_ops = sum(w.info for w in writers)
        report.failed_ops = sum(w.failed for w in writers)
        report.wall_s = time.monotonic() - t0
        (out / "report.json").write_text(json.dumps(asdict(report), indent=1) + "\n")
        if report.problems:
            for name, text in target.logs().items():
                (out / name).write_text(text)
            target.save_data(out)  # file listings; the directories go with the ensemble
    finally:
        target.close()
        shutil.rmtree(root, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["standalone", "ensemble"])
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4, help="writer sessions")
    p.add_argument("--servers", type=int, default=3, help="ensemble size")
    p.add_argument("--window", type=int, default=4, help="creates each writer keeps in flight")
    p.add_argument("--pause", type=float, default=0.3,
                   help="seconds a writer waits between batches (bounds the tree: every acked node stays)")
    p.add_argument("--min-load", type=float, default=0.1, help="least seconds of load before a kill")
    p.add_argument("--max-load", type=float, default=0.8, help="most seconds of load before a kill")
    p.add_argument("--max-down", type=float, default=0.3, help="most seconds a victim stays down")
    p.add_argument("--tick", type=int, default=500, help="tickTime (ms)")
    p.add_argument("--session-timeout", type=float, default=10.0)
    p.add_argument("--op-timeout", type=float, default=5.0)
    p.add_argument("--progress", type=float, default=15.0, help="seconds between progress lines")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=0.0,
                   help="stop cycling after this long (then the final check); 0: no limit")
    p.add_argument("--stop-on-loss", action="store_true")
    p.add_argument("--out", type=Path, default=Path("kill9-out"))
    a = p.parse_args(argv)
    report = run(a)
    print(report.line())
    print(f"report in {a.out / 'report.json'}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
