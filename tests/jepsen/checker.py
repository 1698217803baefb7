"""Checkers for Jepsen-style histories (tests/jepsen/history.py).

`check_register` decides whether a history of a compare-and-set register -- `read`
(value = what was read), `write` (value = what was written) and `cas` (value = (expected,
new)) -- is linearizable.  It is the Wing & Gong search as Lowe improved it (the form
porcupine and knossos' "wgl" use): keep the history's call and return events in a linked
list; walking from the front, linearize an operation whose call comes before the first
pending return if the model allows it (lift it out of the list and start again from the
front), and backtrack when a return is reached whose operation is not linearized yet.
A cache of (set of linearized operations, model state) pairs already explored keeps the
search from repeating itself.  Keys are independent objects (P-compositionality), so
each key's sub-history is checked on its own.

Outcomes: `ok` operations must take effect between their invoke and completion; `fail`
operations did not happen and are dropped; `info` operations (timeouts, ConnectionLoss)
may have happened at any point after their invoke or not at all -- they have no return
event and the search succeeds once every `ok` operation is linearized.  An `info` read
constrains nothing and is dropped.

The search is exponential in the worst case, so it has a step budget; when it runs out
the verdict is "unknown" rather than a hang.

`check_set` and `check_unique_ids` are the simpler workloads' checks.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.jepsen.history import Op, pairs

LINEARIZABLE = "linearizable"
NOT_LINEARIZABLE = "not-linearizable"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class RegOp:
    """One register operation for the search: `ret` is None for an info operation."""

    id: int
    f: str
    value: Any
    call: int
    ret: int | None


def step(state: Any, op: RegOp) -> tuple[bool, Any]:
    """The sequential compare-and-set register: (allowed, next state)."""
    if op.f == "read":
        return state == op.value, state
    if op.f == "write":
        return True, op.value
    if op.f == "cas":
        expected, new = op.value
        return (True, new) if state == expected else (False, state)
    raise ValueError(f"unknown register function {op.f!r}")


@dataclass
class KeyResult:
    key: str | None
    verdict: str
    ops: int
    steps: int
    # on failure, at the deepest point the search reached: the ok operation whose return
    # came before it could be linearized, the register's value there, how many operations
    # were linearized and the last few of them
    stuck: list[RegOp] = field(default_factory=list)
    linearized_prefix: list[RegOp] = field(default_factory=list)
    depth: int = 0
    state: Any = None


@dataclass
class RegisterResult:
    verdict: str
    keys: dict[str | None, KeyResult]

    @property
    def valid(self) -> bool:
        return self.verdict == LINEARIZABLE


def register_ops(history: Iterable[Op]) -> dict[str | None, list[RegOp]]:
    """The history's register operations by key (fail and info-read dropped)."""
    out: dict[str | None, list[RegOp]] = {}
    for p in pairs(history):
        inv, done = p.invoke, p.complete
        if p.type == "fail" or inv.f not in ("read", "write", "cas"):
            continue
        if p.type == "info":
            if inv.f == "read":
                continue
            op = RegOp(inv.index, inv.f, inv.value, inv.index, None)
        else:
            assert done is not None
            op = RegOp(inv.index, inv.f, done.value if inv.f == "read" else inv.value,
                       inv.index, done.index)
        out.setdefault(inv.key, []).append(op)
    return {key: _drop_unobservable(ops) for key, ops in out.items()}


def _drop_unobservable(ops: list[RegOp]) -> list[RegOp]:
    """Info writes and cas whose new value no ok read returned and no ok cas expected:
    a linearization that includes one stays valid without it (the ops after it, up to the
    next write, would have to read or expect that value), so they only slow the search."""
    seen = {op.value for op in ops if op.ret is not None and op.f == "read"}
    seen |= {op.value[0] for op in ops if op.ret is not None and op.f == "cas"}
    info = [op for op in ops if op.ret is None]
    while True:  # a kept info cas needs its expected value written by someone: a fixpoint
        more = {op.value[0] for op in info if op.f == "cas" and _new_value(op) in seen} - seen
        if not more:
            break
        seen |= more
    return [op for op in ops if op.ret is not None or _new_value(op) in seen]


def _new_value(op: RegOp) -> Any:
    return op.value[1] if op.f == "cas" else op.value


@dataclass
class _Deepest:
    depth: int = -1
    tail: list[int] = field(default_factory=list)
    blocked: int | None = None
    state: Any = None


def _search(ops: Sequence[RegOp], init: Any, budget: int) -> tuple[str, int, _Deepest]:
    """WGL over one key.  Returns (verdict, steps, where the search got deepest)."""
    # events: (time, op position, is_call); linked list over event positions 1..n, 0 = head
    events: list[tuple[int, int, bool]] = []
    for i, op in enumerate(ops):
        events.append((op.call, i, True))
        if op.ret is not None:
            events.append((op.ret, i, False))
    events.sort()
    n = len(events)
    deepest = _Deepest()
    if n == 0:
        return LINEARIZABLE, 0, deepest
    nxt = [pos + 1 for pos in range(n + 1)]
    nxt[n] = -1
    prv = [pos - 1 for pos in range(n + 1)]
    call_pos = [0] * len(ops)
    ret_pos: list[int | None] = [None] * len(ops)
    for pos, (_, i, is_call) in enumerate(events, start=1):
        if is_call:
            call_pos[i] = pos
        else:
            ret_pos[i] = pos
    # the set of linearized ops is cached as a Zobrist hash (a random 64-bit word per op,
    # XORed): a full bitset per cache entry costs n/8 bytes, too much for 10k-op keys.
    # Info ops that are both linearized or both pending with the same (f, value) are
    # interchangeable (both were invoked before the current frontier, and neither has a
    # deadline), so they are hashed as a multiset: class -> how many are linearized.
    rng = random.Random(len(ops))
    zob = [rng.getrandbits(64) for _ in ops]
    klass: list[tuple[str, Any] | None] = [None if op.ret is not None else (op.f, op.value) for op in ops]
    class_count: dict[tuple[str, Any], int] = {}
    class_word: dict[tuple[tuple[str, Any], int], int] = {}

    def word(c: tuple[str, Any], k: int) -> int:
        if k == 0:
            return 0
        w = class_word.get((c, k))
        if w is None:
            w = class_word[(c, k)] = rng.getrandbits(64)
        return w

    def toggle(i: int, add: bool) -> int:
        c = klass[i]
        if c is None:
            return zob[i]
        k = class_count.get(c, 0)
        k2 = k + 1 if add else k - 1
        class_count[c] = k2
        return word(c, k) ^ word(c, k2)

    def peek(i: int) -> int:
        c = klass[i]
        if c is None:
            return zob[i]
        k = class_count.get(c, 0)
        return word(c, k) ^ word(c, k + 1)

    def unlink(pos: int) -> None:
        nxt[prv[pos]] = nxt[pos]
        if nxt[pos] != -1:
            prv[nxt[pos]] = prv[pos]

    def relink(pos: int) -> None:
        nxt[prv[pos]] = pos
        if nxt[pos] != -1:
            prv[nxt[pos]] = pos

    remaining = sum(1 for op in ops if op.ret is not None)
    state = init
    linearized = 0  # Zobrist hash of the linearized set
    cache: set[tuple[int, Any]] = set()
    stack: list[tuple[int, Any]] = []  # (op position, state before it)
    entry = nxt[0]
    steps = 0
    while remaining > 0:
        steps += 1
        if steps > budget:
            return UNKNOWN, steps, deepest
        if entry != -1 and events[entry - 1][2]:
            i = events[entry - 1][1]
            allowed, new_state = step(state, ops[i])
            if allowed:
                key = (linearized ^ peek(i), new_state)
                if key not in cache:
                    cache.add(key)
                    stack.append((i, state))
                    state = new_state
                    linearized ^= toggle(i, True)
                    unlink(call_pos[i])
                    r = ret_pos[i]
                    if r is not None:
                        unlink(r)
                        remaining -= 1
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:  # a pending return (or the end of the list): backtrack
            if len(stack) > deepest.depth:
                deepest.depth = len(stack)
                deepest.tail = [e[0] for e in stack[-5:]]
                deepest.blocked = events[entry - 1][1] if entry != -1 else None
                deepest.state = state
            if not stack:
                return NOT_LINEARIZABLE, steps, deepest
            i, state = stack.pop()
            linearized ^= toggle(i, False)
            r = ret_pos[i]
            if r is not None:
                relink(r)
                remaining += 1
            relink(call_pos[i])
            entry = nxt[call_pos[i]]
    return LINEARIZABLE, steps, deepest


def check_register(history: Iterable[Op], init: Any = None, budget: int = 20_000_000) -> RegisterResult:
    """Linearizability of a compare-and-set register history, key by key.  `init` is every
    register's value before the history; `budget` bounds the search steps per key."""
    results: dict[str | None, KeyResult] = {}
    for key, ops in register_ops(history).items():
        verdict, steps, d = _search(ops, init, budget)
        stuck = [ops[d.blocked]] if d.blocked is not None else []
        results[key] = KeyResult(key, verdict, len(ops), steps, stuck, [ops[i] for i in d.tail],
                                 max(d.depth, 0), d.state)
    verdicts = {r.verdict for r in results.values()}
    overall = (NOT_LINEARIZABLE if NOT_LINEARIZABLE in verdicts
               else UNKNOWN if UNKNOWN in verdicts else LINEARIZABLE)
    return RegisterResult(overall, results)


def explain(result: RegisterResult, history: Sequence[Op], context: int = 12) -> str:
    """A few lines around the first operation that could not be linearized."""
    lines = []
    for key, r in result.keys.items():
        if r.verdict != NOT_LINEARIZABLE:
            continue
        lines.append(f"key {key}: {r.ops} ops, not linearizable after {r.steps} steps")
        lines.append(f"  deepest: {r.depth} ops linearized, the register then holds {r.state!r}; "
                     "the last of them: " + ", ".join(f"{o.f} {o.value!r} (#{o.call})"
                                                    for o in r.linearized_prefix))
        for o in r.stuck:
            lines.append(f"  cannot linearize before it returns: {o.f} {o.value!r} invoked #{o.call} "
                         f"returned #{o.ret}")
        if r.stuck:
            at = r.stuck[0].call
            lines.append("  history around it (this key):")
            near = [op for op in history if op.key == key and at - context * 6 <= op.index]
            for op in near[: context * 2]:
                lines.append(f"    #{op.index} p{op.process} {op.type} {op.f} {op.value!r}"
                             f"{' ' + op.error if op.error else ''}")
    return "\n".join(lines)


# ---- set and unique ids ------------------------------------------------------------


@dataclass
class SetResult:
    valid: bool
    attempted: int
    acknowledged: int
    final: int
    lost: list[Any]  # acknowledged adds missing from the final read
    unexpected: list[Any]  # read elements that were never added
    recovered: int  # info adds that turned out to be present
    duplicated: list[Any] = field(default_factory=list)  # elements read more than once

    def summary(self) -> str:
        return (f"{'valid' if self.valid else 'INVALID'}: {self.acknowledged} acked of {self.attempted} "
                f"attempted, final read {self.final}, lost {len(self.lost)} {self.lost[:10]}, "
                f"unexpected {len(self.unexpected)} {self.unexpected[:10]}, "
                f"duplicated {len(self.duplicated)} {self.duplicated[:10]}, recovered info {self.recovered}")


def check_set(history: Iterable[Op]) -> SetResult:
    """`add` ops (value = element) and one or more ok `read` ops (value = all elements);
    the last ok read is the final one.  Valid when every ok add is in it and every element
    in it was attempted (and, the read being a list, no element is in it twice)."""
    attempted: set[Any] = set()
    acked: set[Any] = set()
    info: set[Any] = set()
    final: set[Any] | None = None
    duplicated: list[Any] = []
    for p in pairs(history):
        if p.invoke.f == "add":
            attempted.add(p.invoke.value)
            if p.type == "ok":
                acked.add(p.invoke.value)
            elif p.type == "info":
                info.add(p.invoke.value)
        elif p.invoke.f == "read" and p.type == "ok" and p.complete is not None:
            final = set(p.complete.value)
            seen: dict[Any, int] = {}
            for e in p.complete.value:
                seen[e] = seen.get(e, 0) + 1
            duplicated = sorted(e for e, k in seen.items() if k > 1)
    if final is None:
        return SetResult(False, len(attempted), len(acked), 0, sorted(acked), [], 0)
    lost = sorted(acked - final)
    unexpected = sorted(final - attempted)
    return SetResult(not lost and not unexpected and not duplicated, len(attempted), len(acked),
                     len(final), lost, unexpected, len(info & final), duplicated)


@dataclass
class UniqueIdsResult:
    valid: bool
    generated: int
    duplicates: dict[Any, int]

    def summary(self) -> str:
        return (f"{'valid' if self.valid else 'INVALID'}: {self.generated} ids, "
                f"{len(self.duplicates)} duplicated {dict(list(self.duplicates.items())[:10])}")


def check_unique_ids(history: Iterable[Op]) -> UniqueIdsResult:
    """Every ok `generate` returned an id no other ok `generate` returned."""
    seen: dict[Any, int] = {}
    for op in history:
        if op.type == "ok" and op.f == "generate":
            seen[op.value] = seen.get(op.value, 0) + 1
    dups = {k: v for k, v in seen.items() if v > 1}
    return UniqueIdsResult(not dups, sum(seen.values()), dups)


# ---- counter ----------------------------------------------------------------------------


@dataclass
class CounterResult:
    valid: bool
    acknowledged: int  # ok increments
    info: int  # increments with an unknown outcome
    reads: int  # ok reads checked
    final: int | None  # the last ok read
    bad_reads: list[str]  # reads outside their bounds

    def summary(self) -> str:
        return (f"{'valid' if self.valid else 'INVALID'}: {self.acknowledged} acked + {self.info} info "
                f"increments, {self.reads} reads in bounds but {len(self.bad_reads)}, final {self.final} "
                f"{self.bad_reads[:5]}")


def check_counter(history: Sequence[Op]) -> CounterResult:
    """`add` ops (an increment by 1; fail = certainly not applied) and ok `read` ops
    (value = the counter).  A read is within bounds when it is at least the number of
    increments acknowledged before it was invoked and at most the number invoked (ok or
    info: not fail) before it completed.  The last ok read is the final one: it must lie
    between the acknowledged increments and acknowledged + info ones."""
    ps = list(pairs(history))
    acked_at: list[int] = sorted(p.complete.index for p in ps
                                 if p.invoke.f == "add" and p.type == "ok" and p.complete is not None)
    maybe_at: list[int] = sorted(p.invoke.index for p in ps if p.invoke.f == "add" and p.type != "fail")
    acked = len(acked_at)
    info = sum(1 for p in ps if p.invoke.f == "add" and p.type == "info")
    bad: list[str] = []
    reads = 0
    final: int | None = None
    for p in ps:
        if p.invoke.f != "read" or p.type != "ok" or p.complete is None:
            continue
        reads += 1
        v = p.complete.value
        lo = bisect.bisect_left(acked_at, p.invoke.index)
        hi = bisect.bisect_left(maybe_at, p.complete.index)
        if not lo <= v <= hi:
            bad.append(f"read #{p.invoke.index}..#{p.complete.index} = {v} not in [{lo}, {hi}]")
        final = v
    if final is None:
        bad.append("no ok read")
    elif not acked <= final <= acked + info:
        bad.append(f"final {final} not in [{acked}, {acked + info}]")
    return CounterResult(not bad, acked, info, reads, final, bad)


# ---- queue ------------------------------------------------------------------------------


@dataclass
class QueueResult:
    valid: bool
    enqueued: int  # ok enqueues
    attempted: int
    dequeued: int  # ok dequeues
    drained: int  # elements left for the final drain
    duplicated: list[Any]  # dequeued twice (or dequeued and still there)
    unexpected: list[Any]  # dequeued or drained but never enqueued
    lost: list[Any]  # acknowledged enqueues that went nowhere
    recovered: int  # info enqueues that turned up

    def summary(self) -> str:
        return (f"{'valid' if self.valid else 'INVALID'}: {self.enqueued} acked of {self.attempted} "
                f"enqueues, {self.dequeued} dequeued, {self.drained} drained, recovered info "
                f"{self.recovered}, duplicated {len(self.duplicated)} {self.duplicated[:10]}, unexpected "
                f"{len(self.unexpected)} {self.unexpected[:10]}, lost {len(self.lost)} {self.lost[:10]}")


def check_queue(history: Iterable[Op]) -> QueueResult:
    """`enqueue` ops (value = element), `dequeue` ops (ok: value = the element taken;
    info: value = the element whose delete went unanswered, or None) and `drain` ops (ok:
    value = what was left at the end; the last one counts).  No element is dequeued (ok)
    twice or dequeued and also drained, every dequeued or drained element was enqueued, and
    every acknowledged enqueue was dequeued (ok or info) or drained."""
    attempted: set[Any] = set()
    acked: set[Any] = set()
    info_enq: set[Any] = set()
    taken: dict[Any, int] = {}
    maybe_taken: set[Any] = set()
    drained: list[Any] = []
    for p in pairs(history):
        f = p.invoke.f
        if f == "enqueue":
            attempted.add(p.invoke.value)
            if p.type == "ok":
                acked.add(p.invoke.value)
            elif p.type == "info":
                info_enq.add(p.invoke.value)
        elif f == "dequeue" and p.complete is not None:
            if p.type == "ok":
                taken[p.complete.value] = taken.get(p.complete.value, 0) + 1
            elif p.type == "info" and p.complete.value is not None:
                maybe_taken.add(p.complete.value)
        elif f == "drain" and p.type == "ok" and p.complete is not None:
            drained = list(p.complete.value)
    counts_: dict[Any, int] = dict(taken)
    for e in drained:
        counts_[e] = counts_.get(e, 0) + 1
    duplicated = sorted(e for e, k in counts_.items() if k > 1)
    seen = set(counts_)
    unexpected = sorted(seen - attempted)
    lost = sorted(acked - seen - maybe_taken)
    return QueueResult(not duplicated and not unexpected and not lost, len(acked), len(attempted),
                       sum(taken.values()), len(drained), duplicated, unexpected, lost,
                       len(info_enq & (seen | maybe_taken)))


# ---- sessions: ephemerals and watches ----------------------------------------------------


@dataclass
class WatchRecord:
    """One data-watch registration: getData(path, watch) returned version `v0`; `events`
    are the (time, type) the watch delivered; `v_after` is the version a getData issued
    after the first event returned (None when none was issued)."""

    process: int
    path: str
    v0: int
    t_reg: float
    events: list[tuple[float, str]] = field(default_factory=list)
    t_read: float | None = None
    v_after: int | None = None


@dataclass
class WatchResult:
    valid: bool
    registrations: int
    fired: int  # registrations whose watch reported a change
    ended: int  # registrations ended by a connection loss (kazoo's NONE event)
    problems: list[str]

    def summary(self) -> str:
        return (f"{'valid' if self.valid else 'INVALID'}: {self.registrations} registrations, "
                f"{self.fired} fired on a change, {self.ended} ended by a disconnect, "
                f"{len(self.problems)} problems {self.problems[:5]}")


def check_watches(records: Iterable[WatchRecord]) -> WatchResult:
    """Each registration delivers at most one event, and a getData issued after a change
    event returns a version > v0 (the change that fired it is visible: ZooKeeper sends the
    event before any read that could see the change and after the change is applied)."""
    regs = fired = ended = 0
    problems: list[str] = []
    for r in records:
        regs += 1
        if len(r.events) > 1:
            problems.append(f"p{r.process} {r.path} v{r.v0}: {len(r.events)} events {r.events}")
        if not r.events:
            continue
        kind = r.events[0][1]
        if kind == "NONE":
            ended += 1
            continue
        fired += 1
        if r.v_after is not None and r.v_after <= r.v0:
            problems.append(f"p{r.process} {r.path}: {kind} event for v{r.v0} at {r.events[0][0]:.3f}, "
                            f"then a read returned v{r.v_after}")
    return WatchResult(not problems, regs, fired, ended, problems)


@dataclass
class EphemeralResult:
    valid: bool
    sessions: int  # sessions that made an ephemeral
    expired: int  # of them, told expired
    leftovers: dict[int, list[str]]  # member -> ephemerals of expired sessions still there
    lingering: int  # ephemerals of sessions not told expired, still there after close

    def summary(self) -> str:
        return (f"{'valid' if self.valid else 'INVALID'}: {self.sessions} sessions with an ephemeral, "
                f"{self.expired} told expired, leftovers of expired ones "
                f"{ {k: v[:5] for k, v in self.leftovers.items() if v} }, lingering others {self.lingering}")


def check_ephemerals(owners: dict[str, int], expired: set[int],
                     seen: dict[int, list[str]]) -> EphemeralResult:
    """`owners`: ephemeral name -> session id that made it; `expired`: sessions whose
    client was told they expired; `seen`: member -> ephemeral names it still holds after
    the run (healed, converged, clients closed).  No member may hold an ephemeral of an
    expired session."""
    leftovers = {m: sorted(n for n in names if owners.get(n) in expired) for m, names in seen.items()}
    lingering = max((sum(1 for n in names if owners.get(n) not in expired) for names in seen.values()),
                    default=0)
    bad = any(leftovers.values())
    return EphemeralResult(not bad, len(set(owners.values())), len(expired & set(owners.values())),
                           leftovers, lingering)
