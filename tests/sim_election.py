"""Deterministic simulation of FastLeaderElection: one process, a seeded fake network and clock.

Members are real `FastLeaderElection`s exchanging encoded notifications over a model of
QuorumCnxManager: one connection per pair, broken by crashes and partitions and re-dialed
on the next send; a capacity-1 send slot; the last message re-sent when a connection comes
up.  A stand-in for ZAB turns decisions into roles: a leader establishes once a quorum
follows it (new epoch = max acceptedEpoch + 1, then `established()`); a role that cannot
establish within INIT_LIMIT, or loses its quorum/leader for SYNC_LIMIT, goes back to
`look()`.  Scenarios: `clean`, `chaos` (then a stable phase), `late`; see
tests/test_election_sim.py for what each checks.  A seed replays a run exactly:

    python tests/sim_election.py --seeds 5000 [--first N] [--scenario chaos] [--voters 5]
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

from zkpy.election import Decided, FastLeaderElection, Notification, Send, ServerState

INIT_LIMIT = 5000  # ms for a fresh role to establish (initLimit * tickTime, scaled down)
SYNC_LIMIT = 2000  # ms an established role survives without its quorum / leader
ZAB_TICK = 200
LOOKING, FOLLOWING, LEADING, OBSERVING = list(ServerState)
Pair = tuple[int, int]


class InvariantViolation(AssertionError):
    pass


@dataclass
class Member:
    sid: int
    voter: bool
    zxid: int
    epoch: int  # currentEpoch
    accepted: int  # acceptedEpoch
    fle: FastLeaderElection | None = None
    alive: bool = False
    incarnation: int = 0
    armed: int | None = None  # the FLE deadline a timer event is queued for
    init_key: tuple[int, int, int] = (0, 0, 0)  # (epoch, zxid, sid) when it last looked
    role: ServerState = LOOKING
    leader: int | None = None
    established: bool = False
    term: int = 0  # bumped each time it starts leading
    synced_term: int = -1  # the leader's term it synced with
    deadline: int = 0
    lost_since: int | None = None


@dataclass
class Stats:
    split_rounds: int = 0  # decisions contradicting another of the same round
    elections: int = 0  # look() calls
    messages: int = 0
    converged_at: int | None = None  # ms from the start (clean) or from healing (chaos)
    leader: int | None = None
    leaders: list[int] = field(default_factory=list)  # every establishment, in order


class Simulator:
    def __init__(self, seed: int, voters: int, observers: int) -> None:
        self.rng = rng = random.Random(seed)
        self.now = self.seq = 0
        self.events: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self.voter_ids = frozenset(range(1, voters + 1))
        self.observer_ids = frozenset(range(voters + 1, voters + observers + 1))
        self.quorum = voters // 2 + 1
        self.members: dict[int, Member] = {}
        for sid in range(1, voters + observers + 1):
            epoch = rng.randint(0, 2)
            # Observers get the newest history of all: it must never make them lead.
            zxid = (9 << 32 | 99) if sid in self.observer_ids else epoch << 32 | rng.choice([0, 0, 1, 2, 5])
            self.members[sid] = Member(sid, sid in self.voter_ids, zxid, epoch, epoch)
        self.loss, self.delay, self.fifo = 0.0, (1, 40), True
        self.group: dict[int, int] = defaultdict(int)
        self.conn: dict[Pair, int | None] = {}  # connection generation per pair
        self.gen = 0
        self.connecting: set[Pair] = set()
        self.pending: dict[Pair, bytes] = {}  # (from, to) -> the capacity-1 send slot
        self.last_sent: dict[Pair, bytes] = {}
        self.arrival: dict[Pair, int] = {}
        self.looking_votes: dict[tuple[int, int, int, int], set[int]] = defaultdict(set)
        self.following: dict[int, set[int]] = defaultdict(set)
        self.round_leaders: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self.stats = Stats()

    def push(self, at: int, fn: Callable[..., None], *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, fn, args))

    def run_until(self, t_end: int, stop: Callable[[], bool] | None = None) -> bool:
        """Advance to t_end (ZAB ticks interleaved); True as soon as `stop()` holds."""
        next_zab = (self.now // ZAB_TICK + 1) * ZAB_TICK
        while True:
            at = self.events[0][0] if self.events else t_end + 1
            if next_zab <= min(at, t_end):
                self.now, next_zab = next_zab, next_zab + ZAB_TICK
                self.zab_tick()
                if stop is not None and stop():
                    return True
            elif at > t_end:
                self.now = t_end
                return False
            else:
                self.now, _, fn, args = heapq.heappop(self.events)
                fn(*args)

    def fail(self, msg: str) -> NoReturn:
        raise InvariantViolation(f"t={self.now}: {msg}")

    # -- members -----------------------------------------------------------------------------

    def start(self, sid: int) -> None:
        """Boot (or reboot: same sid, zxid and epochs, a fresh FastLeaderElection)."""
        m = self.members[sid]
        if not m.alive:
            m.alive, m.incarnation, m.armed = True, m.incarnation + 1, None
            m.fle = FastLeaderElection(sid, self.voter_ids, self.observer_ids)
            self.go_looking(m)

    def crash(self, sid: int) -> None:
        m = self.members[sid]
        m.alive, m.fle, m.role, m.established, m.leader = False, None, LOOKING, False, None
        for pair in self.conn:
            if sid in pair:
                self.conn[pair] = None
        for pair in [p for p in (*self.pending, *self.last_sent) if p[0] == sid]:
            self.pending.pop(pair, None)
            self.last_sent.pop(pair, None)

    def go_looking(self, m: Member) -> None:
        assert m.fle is not None
        m.role, m.leader, m.established, m.lost_since = LOOKING, None, False, None
        m.init_key = (m.epoch, m.zxid, m.sid)
        self.stats.elections += 1
        self.apply(m, m.fle.look(self.now, m.zxid, m.epoch))

    def apply(self, m: Member, actions: list[Send | Decided]) -> None:
        for a in actions:
            if isinstance(a, Send):
                self.check_send(m, a)
                self.send(m.sid, a.to, a.message.encode())
            else:
                self.decided(m, a)
        assert m.fle is not None
        if m.voter and m.fle.state == LOOKING:  # our own vote reaches us by loopback, unseen
            p = m.fle.proposal
            self.looking_votes[(p.election_epoch, p.leader, p.zxid, p.peer_epoch)].add(m.sid)
        deadline = m.fle.next_deadline()
        if deadline is not None and deadline != m.armed:
            m.armed = deadline
            self.push(deadline, self.on_timer, m.sid, m.incarnation, deadline)

    def on_timer(self, sid: int, incarnation: int, deadline: int) -> None:
        m = self.members[sid]
        if m.alive and m.incarnation == incarnation and m.fle and m.fle.next_deadline() == deadline:
            m.armed = None
            self.apply(m, m.fle.tick(self.now))

    # -- invariants ----------------------------------------------------------------------------

    def check_send(self, m: Member, a: Send) -> None:
        n = a.message
        if not m.voter or a.to not in self.voter_ids:
            return  # observers' and non-voter replies carry no election vote
        if n.state != LOOKING:
            self.following[n.leader].add(m.sid)
        elif (n.peer_epoch, n.zxid, n.leader) < m.init_key:
            self.fail(f"{m.sid} proposes {n} below its own {m.init_key}")  # votes only rise
        else:
            self.looking_votes[(n.election_epoch, n.leader, n.zxid, n.peer_epoch)].add(m.sid)

    def decided(self, m: Member, d: Decided) -> None:
        v = d.vote
        if v.leader not in self.voter_ids:
            self.fail(f"{m.sid} decided a non-voter leader {v}")
        if d.state != (OBSERVING if not m.voter else LEADING if v.leader == m.sid else FOLLOWING):
            self.fail(f"{m.sid} decided {d}")
        support = self.looking_votes[(v.election_epoch, v.leader, v.zxid, v.peer_epoch)]
        if m.voter and len(support | self.following[v.leader]) < self.quorum:
            self.fail(f"{m.sid} decided {v} with support {sorted(support)} only")
        # A split: another leader decided in this round number moments ago (round numbers
        # restart with a member, so only nearby decisions count as the same round).
        recent = self.round_leaders[v.election_epoch]
        self.stats.split_rounds += any(self.now - t <= INIT_LIMIT and x != v.leader for t, x in recent)
        recent.append((self.now, v.leader))
        m.role, m.leader, m.established = d.state, v.leader, False
        m.deadline, m.lost_since, m.term = self.now + INIT_LIMIT, None, m.term + (d.state == LEADING)

    # -- network: one connection per pair, QuorumCnxManager style ------------------------------

    def linked(self, a: int, b: int) -> bool:
        return self.members[a].alive and self.members[b].alive and self.group[a] == self.group[b]

    def send(self, a: int, b: int, payload: bytes) -> None:
        pair = (min(a, b), max(a, b))
        if self.conn.get(pair) is not None:
            self.transmit(a, b, payload)
            return
        self.pending[(a, b)] = payload
        if pair not in self.connecting and self.linked(a, b):
            self.connecting.add(pair)
            self.push(self.now + self.rng.randint(*self.delay), self.on_connect, pair)

    def on_connect(self, pair: Pair) -> None:
        self.connecting.discard(pair)
        if self.linked(*pair):
            self.gen += 1
            self.conn[pair] = self.gen
            for x, y in (pair, pair[::-1]):
                payload = self.pending.pop((x, y), None) or self.last_sent.get((x, y))
                if payload is not None:
                    self.transmit(x, y, payload)

    def transmit(self, a: int, b: int, payload: bytes) -> None:
        self.last_sent[(a, b)] = payload
        self.stats.messages += 1
        if self.loss and self.rng.random() < self.loss:
            return
        at = self.now + self.rng.randint(*self.delay)
        if self.fifo:
            at = self.arrival[(a, b)] = max(at, self.arrival.get((a, b), 0))
        self.push(at, self.on_deliver, a, b, self.conn[(min(a, b), max(a, b))], payload)

    def on_deliver(self, a: int, b: int, gen: int, payload: bytes) -> None:
        m = self.members[b]
        if self.conn.get((min(a, b), max(a, b))) == gen and m.alive and m.fle is not None:
            n = Notification.decode(payload)
            assert n is not None and n.encode() == payload
            self.apply(m, m.fle.receive(self.now, a, n))

    def set_groups(self, groups: dict[int, int], reset: bool = False) -> None:
        self.group = defaultdict(int, groups)
        for pair, gen in self.conn.items():
            if gen is not None and (reset or self.group[pair[0]] != self.group[pair[1]]):
                self.conn[pair] = None

    # -- a stand-in for ZAB: roles establish with a quorum, fail without one -------------------

    def zab_tick(self) -> None:
        for L in [m for m in self.members.values() if m.alive and m.role == LEADING]:
            self.lead(L)
        for f in [m for m in self.members.values() if m.alive and m.role in (FOLLOWING, OBSERVING)]:
            assert f.leader is not None
            L = self.members[f.leader]
            reachable, leading = self.linked(L.sid, f.sid), L.role == LEADING and L.established
            if f.established:
                if not L.alive or (reachable and (not leading or L.term != f.synced_term)):
                    self.go_looking(f)  # the leader's socket closed: LOOKING at once
                elif not reachable:
                    f.lost_since = self.now if f.lost_since is None else f.lost_since
                    if self.now - f.lost_since >= SYNC_LIMIT:
                        self.go_looking(f)
                else:
                    f.lost_since = None
            elif reachable and leading:
                self.sync(L, f)
            elif self.now >= f.deadline:
                self.go_looking(f)

    def lead(self, L: Member) -> None:
        mine = [f for f in self.members.values() if f.alive and f.sid != L.sid and f.leader == L.sid
                and f.role in (FOLLOWING, OBSERVING) and self.linked(L.sid, f.sid)]
        voters = [L] + [f for f in mine if f.voter and (not L.established or f.synced_term == L.term)]
        if not L.established:
            if len(voters) >= self.quorum:
                L.accepted = L.epoch = max(m.accepted for m in voters) + 1
                L.zxid, L.established = L.epoch << 32, True
                assert L.fle is not None
                L.fle.established(LEADING, replace(L.fle.current_vote, peer_epoch=L.epoch))
                self.stats.leaders.append(L.sid)
                for f in mine:
                    self.sync(L, f)
            elif self.now >= L.deadline:
                self.go_looking(L)
        elif len(voters) < self.quorum:
            L.lost_since = self.now if L.lost_since is None else L.lost_since
            if self.now - L.lost_since >= SYNC_LIMIT:
                self.go_looking(L)
        else:
            L.lost_since = None
            acks = [f for f in voters[1:] if self.rng.random() < 0.7]
            if self.rng.random() < 0.3 and len(acks) + 1 >= self.quorum:  # a write; some lag
                L.zxid += 1
                for f in acks:
                    f.zxid = L.zxid

    def sync(self, L: Member, f: Member) -> None:
        f.zxid, f.epoch, f.accepted, f.synced_term = L.zxid, L.epoch, L.epoch, L.term
        f.established, f.lost_since = True, None
        assert f.fle is not None
        f.fle.established(f.role, replace(f.fle.current_vote, peer_epoch=L.epoch))

    def settled(self) -> int | None:
        """The leader every live member has established with, if there is one."""
        alive = [m for m in self.members.values() if m.alive]
        leaders = {m.leader for m in alive}
        if len(leaders) != 1 or not all(m.established for m in alive):
            return None
        leader = leaders.pop()
        return leader if leader is not None and self.members[leader].role == LEADING else None


# -- scenarios: each returns Stats or raises InvariantViolation ---------------------------------


def scenario_clean(seed: int, voters: int, observers: int) -> Stats:
    """Everyone starts at once, FIFO links, connect + transmit < finalizeWait, no faults."""
    sim = Simulator(seed, voters, observers)
    sim.delay = (1, sim.rng.choice([10, 40, 90]))
    best = max(sim.voter_ids, key=lambda s: (sim.members[s].epoch, sim.members[s].zxid, s))
    for sid in sim.members:
        sim.start(sid)
    sim.run_until(60_000, stop=lambda: sim.settled() is not None)
    if sim.now > 2000 or sim.settled() != best:
        sim.fail(f"a clean start settled on {sim.settled()}, expected the best voter {best} in 2 s")
    if sim.stats.split_rounds:
        sim.fail(f"members of one round decided different leaders: {dict(sim.round_leaders)}")
    sim.stats.leader, sim.stats.converged_at = best, sim.now
    return sim.stats


def scenario_chaos(seed: int, voters: int, observers: int) -> Stats:
    """Late starts, loss, delays beyond finalizeWait, reordering, partitions, crashes; then
    heal (a minority of voters may stay down) and require one stable established leader."""
    sim = Simulator(seed, voters, observers)
    rng = sim.rng
    for sid in sim.members:
        sim.push(rng.randint(0, 3000), sim.start, sid)
    sim.loss, sim.delay, sim.fifo = rng.choice([0.0, 0.05, 0.2]), (1, rng.choice([50, 400, 1500])), False
    t, end, ids = 0, rng.randint(5_000, 60_000), sorted(sim.members)
    while t < end:
        t += rng.randint(50, 2500)
        sim.run_until(t)
        fault = rng.random()
        if fault < 0.3:
            sim.crash(rng.choice(ids))
        elif fault < 0.55:
            down = [s for s in ids if not sim.members[s].alive]
            if down:
                sim.start(rng.choice(down))
        else:
            sim.set_groups({s: rng.randint(0, 1) for s in ids} if fault < 0.8 else {})
    keep_down = set(rng.sample(sorted(sim.voter_ids), rng.randint(0, (voters - 1) // 2)))
    sim.loss, sim.delay, sim.fifo = 0.0, (1, 40), True
    sim.set_groups({}, reset=True)
    for sid in ids:
        if sid in keep_down:
            sim.crash(sid)
        else:
            sim.start(sid)
    healed = sim.now
    if not sim.run_until(healed + 600_000, stop=lambda: sim.settled() is not None):
        states = {s: (m.alive, m.role.name, m.leader, m.established) for s, m in sim.members.items()}
        sim.fail(f"no convergence within 600 s of healing: {states}")
    leader, sim.stats.converged_at = sim.settled(), sim.now - healed
    sim.run_until(sim.now + 3 * SYNC_LIMIT)
    if sim.settled() != leader:
        sim.fail(f"converged on {leader} but did not stay there")
    sim.stats.leader = leader
    return sim.stats


def scenario_late(seed: int, voters: int, observers: int) -> Stats:
    """A bare quorum (lowest sids) elects; the rest join late with the highest sids and old
    epochs; then two members crash and restart one at a time.  Nobody may disturb the
    established leader: all learn it from FOLLOWING/LEADING replies."""
    sim = Simulator(seed, voters, observers)
    rng, settled = sim.rng, (lambda: sim.settled() is not None)
    early = set(range(1, sim.quorum + 1))
    for sid in early:
        sim.start(sid)
    sim.run_until(120_000, stop=settled)
    leader = sim.settled()
    if leader is None or leader not in early:
        sim.fail(f"the first quorum did not elect among itself: {leader}")
    for sid in sorted(set(sim.members) - early):
        m = sim.members[sid]
        m.epoch = m.accepted = rng.randint(0, sim.members[leader].epoch - 1)
        m.zxid = m.epoch << 32 | rng.randint(0, 1000)
        sim.push(sim.now + rng.randint(0, 1000), sim.start, sid)
    sim.run_until(sim.now + 1000)
    # Victims one at a time, never costing the quorum (so with 2 voters, observers only).
    spare = len(sim.voter_ids) > sim.quorum
    others = sorted(s for s in sim.members if s != leader and (spare or s in sim.observer_ids))
    for victim in rng.sample(others, min(2, len(others))):
        if not sim.run_until(sim.now + 300_000, stop=settled):
            sim.fail(f"did not settle before restarting {victim}")
        sim.crash(victim)
        sim.run_until(sim.now + rng.randint(0, 3000))
        sim.start(victim)
    if not sim.run_until(sim.now + 300_000, stop=settled):
        sim.fail("late joiners or restarted members did not learn the leader")
    if sim.settled() != leader or sim.stats.leaders != [leader]:
        sim.fail(f"the ensemble was disturbed: leaders {sim.stats.leaders}, now {sim.settled()}")
    sim.stats.leader = leader
    return sim.stats


SCENARIOS = {"clean": scenario_clean, "chaos": scenario_chaos, "late": scenario_late}
SHAPES = [(3, 0), (3, 1), (5, 0), (5, 1)]  # (voters, observers), cycled by seed


def run(scenario: str, seed: int, voters: int, observers: int) -> Stats:
    return SCENARIOS[scenario](seed, voters, observers)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run FastLeaderElection simulations.")
    p.add_argument("--seeds", type=int, default=500)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    p.add_argument("--voters", type=int, help="instead of cycling through 3 and 5")
    p.add_argument("--observers", type=int, help="instead of cycling through 0 and 1")
    args = p.parse_args(argv)
    failures = 0
    for name in list(SCENARIOS) if args.scenario == "all" else [args.scenario]:
        started, splits, worst = time.monotonic(), 0, 0
        for seed in range(args.first, args.first + args.seeds):
            voters, observers = SHAPES[seed % len(SHAPES)]
            voters = args.voters or voters
            observers = observers if args.observers is None else args.observers
            try:
                stats = run(name, seed, voters, observers)
            except InvariantViolation as e:
                failures += 1
                print(f"FAIL {name} --first {seed} --seeds 1 --voters {voters} --observers {observers}: {e}")
                continue
            splits += stats.split_rounds > 0
            worst = max(worst, stats.converged_at or 0)
        print(f"{name}: {args.seeds} seeds in {time.monotonic() - started:.1f}s; runs with a split "
              f"round: {splits}; slowest convergence: {worst} ms simulated")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
