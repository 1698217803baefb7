"""Deterministic simulation of whole zkpy ensembles: FLE + ZAB cores over a fake disk, network and clock.

Every member runs the real pure cores -- `FastLeaderElection`, then a `Leader` or `Learner` --
and the real action executors (`zkpy.zab.executors`: LeaderExecutor, LearnerExecutor,
load_tree) that zkpy.zab.peer runs, plugged into fakes instead of files and sockets:
tests/sim_zab_peer.py plays QuorumPeer (elections, roles, connections) over
tests/sim_zab_fakes.py (the executors' Disk, Link and Pipeline) and
tests/sim_zab_world.py (disk, network, clock, checker); this module holds the scenarios
and the command line.  One process and one seeded RNG, so a seed replays a run exactly:

* disk: txn log files of (zxid, payload) records, each durable once an fsync covering it
  has completed (a crash keeps only durable records), snapshots, acceptedEpoch and
  currentEpoch.  As in peer.py: at start-up the tree is recovered from disk (newest
  snapshot + the logged txns after it); after a role it is the tree that role left plus
  the txns it logged and did not apply (load_tree), unless the role ended between a
  SNAP's LoadSnapshot and its TakeSnapshot; the leader's history is the tail of the logged
  txns after the newest snapshot; the executors truncate, load snapshots, log, sync and
  snapshot through the fake disk;
* server core: the applied txns, the queue of logged txns a Commit applies, group commit
  (one fsync in flight, completing after a random delay, then `persisted(upto)`); client
  writes proposed at serving leaders (`next_zxid` + `propose`) and forwarded by serving
  learners (REQUEST: setData, createSession, sync), session revalidation (REVALIDATE) and
  session touches carried by pings;
* network: election notifications as datagrams (loss, delay, reordering);
  quorum connections with TCP semantics (in order per connection, stalled by a partition,
  FIN when a side closes, RST when a crashed host comes back, optionally cut at once by a
  partition); independent delays reorder traffic across connections;
* clock: simulated milliseconds; roles tick every tickTime/2 as peer.py's ticker does.

Faults: election message loss, delays, symmetric and one-way partitions,
crash and restart of any member at any time, also inside an action batch right after a
durable write (so the ordering duty of zkpy.zab.actions is tested), slow fsync,
crashes of the leader while its proposals are in flight, and roles ended without a
crash (the tree is kept), also in the middle of a learner's sync.

Invariants, checked as they happen (a failure names the seed and prints a short trace):

* at most one leader establishes per epoch;
* one committed history G, only ever extended, by what a serving leader applies (its
  history when it establishes, then each Commit): every serving member's applied txns are
  a prefix of G, byte for byte, and the leader that establishes the newest epoch holds
  all of G -- no acknowledged (committed on a leader) txn is lost;
* primary order: G's zxids increase, within an epoch from counter 1 without gaps, and
  every txn in G is the one its epoch's leader proposed;
* a SYNC forwarded by a learner is answered only once it applied what the leader had
  applied when the SYNC arrived;
* a revalidation is answered valid only for a session some leader created;
* after healing and restarting: a leader establishes and every live member serves with it
  within LIVENESS_MS, new writes commit, and every live member applies exactly G.
* with reconfigEnabled (scenario `reconfig`: every member keeps its committed config on
  disk and elects and leads by it, as peer.py; two spare servers may join): at most one
  config per version; a leader activates a config only once a quorum of the config it
  ran with and a quorum of the new one acked it (the reconfig txn's ACKs, or those of
  the NEWLEADER that carried a reconfig nobody committed); every other member activates
  (on COMMITANDACTIVATE, UPTODATE or from a notification) only a config some leader
  activated; after healing every live member runs its leader's config.

    python tests/sim_zab.py --seeds 5000 [--voters 5] [--observers 1] [--scenario chaos]
    python tests/sim_zab.py --scenario chaos --seed 17 --voters 3 --observers 0 --trace
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sim_zab_peer import (  # noqa: E402
    HISTORY_LIMIT,
    SYNC_LIMIT,
    TICK,
    Simulator,
    member_line,
)
from tests.sim_zab_world import (  # noqa: E402
    LEADING,
    TO_LEADER,
    TO_LEARNER,
    Conn,
    Crashed,
    InvariantViolation,
    Node,
    Stats,
)
from zkpy.zab.packets import PacketType, QuorumPacket  # noqa: E402

__all__ = ["SCENARIOS", "SHAPES", "InvariantViolation", "Simulator", "Stats", "run"]

LIVENESS_MS = 120_000  # after healing, an established ensemble within this much simulated time


# ---- scenarios -----------------------------------------------------------------------------


def stabilise(sim: Simulator, keep_down: set[int]) -> Stats:
    """Heal, restart (all but keep_down), then demand a leader, fresh commits, and convergence."""
    sim.fle_loss = sim.crash_mid = 0.0
    sim.fle_delay, sim.tcp_delay, sim.fsync_delay = (1, 20), (1, 10), (1, 10)
    sim.heal()
    for sid, n in sim.nodes.items():
        if not n.alive and sid not in keep_down:
            sim.call(sim.start, sid)
    healed = sim.now
    # A leader the partition cut off may still count as established when it heals, and
    # step down a moment later once it sees how long its followers were silent: the
    # ensemble has settled when a leader has kept its role for syncLimit.
    while True:
        if not sim.run_until(healed + LIVENESS_MS, stop=lambda: sim.leader() is not None) \
                or sim.now > healed + LIVENESS_MS:
            sim.fail(f"no established ensemble within {LIVENESS_MS} ms of healing: {sim.describe()}")
        L = sim.leader()
        assert L is not None
        found = sim.now
        sim.run_until(sim.now + SYNC_LIMIT * TICK, stop=lambda L=L: sim.leader() is not L)
        if sim.leader() is L:
            break
    sim.stats.settle_ms = found - healed
    epoch = L.role.new_epoch
    sim.writes = True
    sim.run_until(sim.now + 2000)
    sim.writes = False
    if not any(z >> 32 == epoch for z, _ in sim.G[-5:]):
        sim.fail(f"writes did not commit in epoch {epoch} after healing: {sim.describe()}")
    sim.run_until(sim.now + 2000)
    if sim.leader() is not L:
        sim.fail(f"the ensemble did not stay with leader {L.sid}: {sim.describe()}")
    for n in sim.nodes.values():
        if n.alive:
            assert n.core is not None
            if n.core.tree.applied != sim.G:
                sim.fail(f"server {n.sid} applied {len(n.core.tree.applied)} txns after stabilising, "
                         f"the committed history has {len(sim.G)}: {sim.describe()}")
    return sim.stats


def scenario_chaos(sim: Simulator) -> Stats:
    """Staggered starts, a noisy network and slow disks, random faults; then stabilise."""
    rng = sim.rng
    ids = sorted(sim.nodes)
    for sid in ids:
        sim.push(sim.rand(0, 2000), sim.start, sid)
    sim.writes = True
    sim.fle_loss = rng.choice([0.0, 0.05, 0.3])
    sim.fle_delay = (1, rng.choice([20, 300, 1500]))
    sim.tcp_delay = (1, rng.choice([5, 50, 400]))
    sim.fsync_delay = (1, rng.choice([5, 40, 400]))
    sim.crash_mid = rng.choice([0.0, 0.0, 0.05, 0.2])
    t, end = 0, sim.rand(4000, 25000)
    while t < end:
        t += sim.rand(100, 3000)
        sim.run_until(t)
        fault = rng.random()
        alive = [s for s in ids if sim.nodes[s].alive]
        leaders = [s for s in alive if sim.nodes[s].kind == LEADING]
        if fault < 0.2 and alive:
            sim.call(sim.crash, rng.choice(alive))
        elif fault < 0.3 and leaders:
            sim.call(sim.crash, rng.choice(leaders))
        elif fault < 0.5:
            down = [s for s in ids if not sim.nodes[s].alive]
            if down:
                sim.call(sim.start, rng.choice(down))
        elif fault < 0.65:
            sim.call(sim.partition, {s: sim.rand(0, 1) for s in ids}, None, rng.random() < 0.5)
        elif fault < 0.75:
            blocked = {(a, b) for a in ids for b in ids if a != b and rng.random() < 0.15}
            sim.call(sim.partition, {}, blocked, rng.random() < 0.3)
        elif fault < 0.82 and leaders:
            isolated = rng.choice(leaders)
            sim.call(sim.partition, {isolated: 1}, None, rng.random() < 0.5)
        else:
            sim.call(sim.heal)
    quorum = len(sim.voters) // 2 + 1
    keep_down = set(rng.sample(sorted(sim.voters), sim.rand(0, len(sim.voters) - quorum))) \
        if rng.random() < 0.3 else set()
    return stabilise(sim, keep_down)


def scenario_leader_crash(sim: Simulator) -> Stats:
    """Settle, then crash the leader while it has proposals in flight (a follower too, sometimes)."""
    rng = sim.rng
    ids = sorted(sim.nodes)
    for sid in ids:
        sim.call(sim.start, sid)
    sim.writes = True
    sim.tcp_delay = (1, rng.choice([5, 30, 200]))
    sim.fsync_delay = (1, rng.choice([5, 30, 200]))
    sim.crash_mid = rng.choice([0.0, 0.05])
    sim.auto_restart = (0, 4000)
    for _ in range(sim.rand(1, 4)):
        if not sim.run_until(sim.now + LIVENESS_MS, stop=lambda: sim.leader() is not None):
            sim.fail(f"no established ensemble: {sim.describe()}")
        L = sim.leader()
        assert L is not None
        sim.run_until(sim.now + sim.rand(0, 1500))
        # crash it with proposals in flight, if it still leads by then (it may have stepped
        # down meanwhile and follow someone else: then it is crashed as a follower)
        sim.run_until(sim.now + 3000, stop=lambda L=L: L.role_id != 0 and L.kind == LEADING
                      and bool(L.role.outstanding))
        sim.call(sim.crash, L.sid)
        if rng.random() < 0.4:
            sim.call(sim.crash, rng.choice([s for s in ids if s != L.sid]))
    return stabilise(sim, set())


def scenario_isolated_leader(sim: Simulator) -> Stats:
    """Cut the leader off (both ways or only its sending side) while it takes writes: the
    majority elects anew and moves on; when it comes back its unshared tail is truncated."""
    rng = sim.rng
    ids = sorted(sim.nodes)
    for sid in ids:
        sim.call(sim.start, sid)
    sim.writes = True
    sim.tcp_delay = (1, rng.choice([5, 30, 150]))
    sim.fsync_delay = (1, rng.choice([2, 20]))
    sim.crash_mid = rng.choice([0.0, 0.0, 0.05])
    sim.auto_restart = (0, 3000)
    for _ in range(sim.rand(1, 3)):
        if not sim.run_until(sim.now + LIVENESS_MS, stop=lambda: sim.leader() is not None):
            sim.fail(f"no established ensemble: {sim.describe()}")
        L = sim.leader()
        assert L is not None
        sim.run_until(sim.now + sim.rand(0, 1000))
        side = {L.sid}
        if len(sim.voters) == 5 and rng.random() < 0.5:
            side.add(rng.choice([s for s in sorted(sim.voters) if s != L.sid]))
        if rng.random() < 0.3:  # only what the minority sends is lost
            sim.call(sim.partition, {}, {(a, b) for a in side for b in ids if b not in side})
        else:
            sim.call(sim.partition, {s: 1 for s in side}, None, rng.random() < 0.3)
        sim.run_until(sim.now + sim.rand(300, 6000))
        if rng.random() < 0.3:
            sim.call(sim.crash, L.sid)
        sim.call(sim.heal)
    return stabilise(sim, set())

def scenario_role_churn(sim: Simulator) -> Stats:
    """Roles end without a crash, so the next election runs on the kept tree plus the
    replayed logged tail (load_tree): at random, and in the middle of a learner's sync --
    after DIFF, after TRUNC, after a SNAP was loaded but not snapshotted (that tree must
    not be kept) -- ended by the learner or by its leader.  A member that was down while
    hundreds of txns committed comes back to a SNAP."""
    rng = sim.rng
    ids = sorted(sim.nodes)
    for sid in ids:
        sim.call(sim.start, sid)
    sim.writes = True
    sim.tcp_delay = (1, rng.choice([5, 30, 150]))
    sim.fsync_delay = (1, rng.choice([2, 20, 100]))
    sim.crash_mid = rng.choice([0.0, 0.0, 0.05])
    sim.auto_restart = (0, 3000)
    for _ in range(sim.rand(2, 5)):
        sim.run_until(sim.now + LIVENESS_MS, stop=lambda: sim.leader() is not None)
        sim.run_until(sim.now + sim.rand(0, 1500))
        if rng.random() < 0.3:
            live = [n for n in sim.nodes.values() if n.role is not None and n.ending is None]
            if live:
                sim.call(sim.request_end, rng.choice(live), "role ended by the scenario")
            continue
        victim = rng.choice(ids)
        sim.auto_restart = None
        sim.call(sim.crash, victim)
        # a short history: the leader's no longer reaches back to the victim's last txn (SNAP)
        sim.history_limit = rng.choice([HISTORY_LIMIT, 5, 20])
        sim.run_until(sim.now + sim.rand(500, 5000))
        L = sim.leader()
        if L is not None and rng.random() < 0.6:  # the next leader starts from the short history
            sim.call(sim.request_end, L, "leader steps down")
            sim.run_until(sim.now + LIVENESS_MS, stop=lambda: sim.leader() is not None)
            sim.run_until(sim.now + sim.rand(0, 1000))
        sim.end_in_sync = (victim, rng.random() < 0.3)
        sim.call(sim.start, victim)
        sim.run_until(sim.now + 3000, stop=lambda: sim.end_in_sync is None)
        sim.end_in_sync = None
        sim.history_limit = HISTORY_LIMIT
        sim.auto_restart = (0, 3000)
    return stabilise(sim, set())


def scenario_write_bursts(sim: Simulator) -> Stats:
    """Bursts of writes against a slow leader disk and quick followers: acks for several
    proposals arrive together, so one action batch holds consecutive Commits, which the
    leader's executor applies with one commit() (grouped Commits), between crashes and
    role ends."""
    rng = sim.rng
    ids = sorted(sim.nodes)
    for sid in ids:
        sim.call(sim.start, sid)
    sim.writes = True
    sim.tcp_delay = (1, rng.choice([2, 10, 40]))
    sim.crash_mid = rng.choice([0.0, 0.0, 0.03])
    sim.auto_restart = (0, 3000)
    for _ in range(sim.rand(2, 5)):
        sim.run_until(sim.now + LIVENESS_MS, stop=lambda: sim.leader() is not None)
        sim.fsync_delay = (rng.choice([1, 20]), rng.choice([40, 200]))
        sim.burst = sim.rand(2, 12)
        sim.run_until(sim.now + sim.rand(500, 3000))
        sim.burst = 1
        sim.fsync_delay = (1, 10)
        fault = rng.random()
        L = sim.leader()
        if fault < 0.3 and L is not None:
            sim.call(sim.request_end, L, "leader steps down")
        elif fault < 0.5:
            sim.call(sim.crash, rng.choice(ids))
    return stabilise(sim, set())


def scenario_reconfig(sim: Simulator) -> Stats:
    """Reconfiguration (reconfigEnabled) under faults: spares join as participants or
    observers, members leave (the leader too), participants become observers and back, a
    spare replaces a voter (a non-incremental member list), one reconfig at a time through
    the serving leader, while election messages are lost, connections are slow, members
    crash (the leader sometimes right after proposing the reconfig; a removed leader
    sometimes as its first COMMITANDACTIVATE arrives) and roles end; then heal and
    stabilise: every live member ends up serving with the config of the leader, and
    writes commit under it."""
    rng = sim.rng
    for sid in range(1, sum(sim.shape) + 1):  # the initial members; the spares wait
        sim.call(sim.start, sid)
    sim.writes = True
    sim.fle_loss = rng.choice([0.0, 0.05, 0.2])
    sim.tcp_delay = (1, rng.choice([5, 30, 150]))
    sim.fsync_delay = (1, rng.choice([2, 20, 100]))
    sim.crash_mid = rng.choice([0.0, 0.0, 0.03])
    sim.auto_restart = (0, 3000)
    for _ in range(sim.rand(2, 6)):
        sim.run_until(sim.now + LIVENESS_MS, stop=lambda: sim.leader() is not None)
        sim.run_until(sim.now + sim.rand(0, 1000))
        L = sim.leader()
        if L is None:
            continue
        cfg = L.disk.config
        assert cfg is not None
        voters, observers = sorted(cfg.voters), sorted(cfg.observers)
        outside = sorted(s for s in sim.nodes if s not in cfg.members)
        joining = leaving = members = None
        r = rng.random()
        if r < 0.1 and outside:  # non-incremental: a spare replaces a voter (a joiner first)
            sid = rng.choice(outside)
            sim.call(sim.start, sid)
            sim.run_until(sim.now + sim.rand(0, 2000))
            gone = rng.choice(voters)
            members = "\n".join(member_line(s, s in cfg.observers) for s in sorted(cfg.members) if s != gone)
            members += "\n" + member_line(sid)
        elif r < 0.4 and outside:  # a joiner: started first, it syncs as a non-voting follower
            sid = rng.choice(outside)
            sim.call(sim.start, sid)
            sim.run_until(sim.now + sim.rand(0, 2000))
            joining = member_line(sid, rng.random() < 0.3)
        elif r < 0.7 and len(voters) > 2:
            leaving = str(rng.choice(voters + observers))
            if leaving == str(L.sid) and rng.random() < 0.5:
                crash_mid_commit(sim, L)
        elif r < 0.85 and (observers or len(voters) > 2):
            sid = rng.choice(voters + observers if len(voters) > 2 else observers)
            joining = member_line(sid, sid in cfg.voters)  # participant <-> observer
        elif observers:
            leaving = str(rng.choice(observers))
        else:
            continue
        try:
            proposed = sim.client_reconfig(joining, leaving, members)
        except Crashed:
            proposed = True
        fault = rng.random()
        if proposed and fault < 0.25:  # the reconfig in flight
            sim.call(sim.crash, L.sid)
        elif fault < 0.4:
            sim.call(sim.crash, rng.choice(sorted(sim.nodes)))
        elif fault < 0.5:
            sim.call(sim.partition, {L.sid: 1}, None, rng.random() < 0.5)
        elif fault < 0.6:
            sim.call(sim.request_end, L, "leader steps down")
        sim.run_until(sim.now + sim.rand(300, 3000))
        sim.on_deliver = None
        sim.call(sim.heal)
    stats = stabilise(sim, {s for s, n in sim.nodes.items() if not n.alive and n.disk.accepted is None})
    L = sim.leader()
    assert L is not None and L.disk.config is not None
    if L.sid not in L.disk.config.voters:
        sim.fail(f"server {L.sid} leads, but is no voter of its config {L.disk.config.version:x}")
    for n in sim.nodes.values():
        if n.alive and n.disk.config is not None and n.disk.config.version != L.disk.config.version:
            sim.fail(f"server {n.sid} runs config {n.disk.config.version:x}, its leader "
                     f"{L.sid} runs {L.disk.config.version:x}: {sim.describe()}")
    return stats


def crash_mid_commit(sim: Simulator, L: Node) -> None:
    """The leader that a reconfig removes crashes as the first COMMITANDACTIVATE reaches
    a learner, before it hands over to the others (ZOOKEEPER-2202's moment)."""
    def hook(conn: Conn, dest: int, packets: list[QuorumPacket]) -> None:
        if dest == TO_LEARNER and conn.ends[TO_LEADER] == L.sid and \
                any(p.type == PacketType.COMMITANDACTIVATE for p in packets):
            sim.on_deliver = None
            sim.stats.crashed_mid_commit += 1
            sim.crash(L.sid)
    sim.on_deliver = hook


SCENARIOS: dict[str, Callable[[Simulator], Stats]] = {
    "chaos": scenario_chaos,
    "leader_crash": scenario_leader_crash,
    "isolated_leader": scenario_isolated_leader,
    "role_churn": scenario_role_churn,
    "write_bursts": scenario_write_bursts,
    "reconfig": scenario_reconfig,
}
# Simulator options a scenario needs: reconfig runs two spare servers to join
OPTIONS: dict[str, dict[str, Any]] = {"reconfig": {"spares": 2, "reconfig": True}}
SHAPES = [(3, 0), (3, 1), (5, 0), (5, 1)]


def run(scenario: str, seed: int, voters: int, observers: int, trace: bool = False) -> Stats:
    sim = Simulator(seed, voters, observers, **OPTIONS.get(scenario, {}))
    if trace:
        sim.full_trace = []
    try:
        return SCENARIOS[scenario](sim)
    finally:
        if trace and sim.full_trace is not None:
            for t, m in sim.full_trace:
                print(f"{t:>8} {m}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=500)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--seed", type=int, help="run just this seed")
    p.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    p.add_argument("--voters", type=int, choices=[3, 5])
    p.add_argument("--observers", type=int, choices=[0, 1])
    p.add_argument("--trace", action="store_true", help="print every logged event (with --seed)")
    args = p.parse_args(argv)
    shapes = [(args.voters or v, args.observers if args.observers is not None else o) for v, o in SHAPES]
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    seeds = [args.seed] if args.seed is not None else list(range(args.first, args.first + args.seeds))
    failures = 0
    for name in scenarios:
        started, worst, totals = time.monotonic(), 0, Counter[str]()
        for seed in seeds:
            voters, observers = shapes[seed % len(shapes)]
            try:
                stats = run(name, seed, voters, observers, args.trace)
            except InvariantViolation as e:
                failures += 1
                print(f"FAIL {name}: {e}\n  reproduce: python tests/sim_zab.py --scenario {name} "
                      f"--seed {seed} --voters {voters} --observers {observers} --trace")
                continue
            worst = max(worst, stats.settle_ms)
            totals.update({k: v for k, v in asdict(stats).items() if k != "settle_ms"})
        print(f"{name}: {len(seeds)} seeds in {time.monotonic() - started:.1f}s, slowest settling "
              f"after healing {worst} ms (simulated)\n  " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
