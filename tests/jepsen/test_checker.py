"""Unit and property tests of the Jepsen checkers (fast; no servers)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jepsen import checker
from tests.jepsen.history import Op, Recorder, counts, dump, load


class Script:
    """Builds histories by hand: inv/ok/fail/info by process, indices in call order."""

    def __init__(self) -> None:
        self.rec = Recorder()
        self.open: dict[int, Op] = {}

    def inv(self, p: int, f: str, value: Any = None, key: str | None = "r") -> Script:
        self.open[p] = self.rec.invoke(p, f, key, value)
        return self

    def ok(self, p: int, value: Any = None) -> Script:
        self.rec.ok(self.open.pop(p), value)
        return self

    def fail(self, p: int) -> Script:
        self.rec.fail(self.open.pop(p), "bad")
        return self

    def info(self, p: int) -> Script:
        self.rec.info(self.open.pop(p), "timeout")
        return self

    @property
    def ops(self) -> list[Op]:
        return self.rec.snapshot()


def verdict(s: Script, init: Any = 0) -> str:
    return checker.check_register(s.ops, init=init).verdict


def test_sequential_history_is_linearizable() -> None:
    s = Script().inv(0, "write", 1).ok(0).inv(1, "read").ok(1, 1).inv(0, "cas", (1, 2)).ok(0)
    s.inv(1, "read").ok(1, 2)
    assert verdict(s) == checker.LINEARIZABLE


def test_stale_read_after_completed_write_is_caught() -> None:
    s = Script().inv(0, "write", 1).ok(0).inv(1, "read").ok(1, 0)
    r = checker.check_register(s.ops, init=0)
    assert r.verdict == checker.NOT_LINEARIZABLE
    assert "cannot linearize" in checker.explain(r, s.ops)


def test_concurrent_read_may_see_either_value() -> None:
    for seen in (0, 1):
        s = Script().inv(0, "write", 1).inv(1, "read").ok(1, seen).ok(0)
        assert verdict(s) == checker.LINEARIZABLE


def test_read_cannot_flip_back() -> None:
    # w1 concurrent with two sequential reads: 1 then 0 is impossible
    s = Script().inv(0, "write", 1).inv(1, "read").ok(1, 1).inv(1, "read").ok(1, 0).ok(0)
    assert verdict(s) == checker.NOT_LINEARIZABLE


def test_info_write_may_or_may_not_have_happened() -> None:
    happened = Script().inv(0, "write", 5).info(0).inv(1, "read").ok(1, 5)
    assert verdict(happened) == checker.LINEARIZABLE
    not_happened = Script().inv(0, "write", 5).info(0).inv(1, "read").ok(1, 0)
    assert verdict(not_happened) == checker.LINEARIZABLE
    # but once seen it cannot disappear again (a write happens at most once)
    flip = Script().inv(0, "write", 5).info(0).inv(1, "read").ok(1, 5).inv(1, "read").ok(1, 0)
    assert verdict(flip) == checker.NOT_LINEARIZABLE


def test_chain_of_info_cas_is_kept() -> None:
    # 0 -> 1 -> 2 only through two info ops; 1 is never read, yet the first is needed
    s = Script().inv(0, "cas", (0, 1)).info(0).inv(1, "cas", (1, 2)).info(1).inv(2, "read").ok(2, 2)
    assert verdict(s) == checker.LINEARIZABLE


def test_info_write_takes_effect_only_after_its_invoke() -> None:
    s = Script().inv(1, "read").ok(1, 5).inv(0, "write", 5).info(0)
    assert verdict(s) == checker.NOT_LINEARIZABLE


def test_failed_ops_are_ignored_and_cas_is_checked() -> None:
    s = Script().inv(0, "write", 9).fail(0).inv(1, "read").ok(1, 0)
    assert verdict(s) == checker.LINEARIZABLE
    bad_cas = Script().inv(0, "cas", (3, 4)).ok(0)  # the register holds 0, not 3
    assert verdict(bad_cas) == checker.NOT_LINEARIZABLE


def test_keys_are_checked_independently() -> None:
    s = Script().inv(0, "write", 1, key="a").ok(0).inv(1, "read", key="b").ok(1, 0)
    s.inv(1, "read", key="a").ok(1, 0)
    r = checker.check_register(s.ops, init=0)
    assert r.keys["b"].verdict == checker.LINEARIZABLE
    assert r.keys["a"].verdict == checker.NOT_LINEARIZABLE
    assert r.verdict == checker.NOT_LINEARIZABLE


def test_budget_exhaustion_says_unknown() -> None:
    s = Script()
    for p in range(1, 13):
        s.inv(p, "write", p)
    for p in range(1, 13):
        s.info(p)
    for v in range(12, 0, -1):
        s.inv(99, "read").ok(99, v)
    s.inv(99, "read").ok(99, 12)  # 12 was overwritten and cannot come back: a full search
    assert checker.check_register(s.ops, init=0, budget=50).verdict == checker.UNKNOWN
    assert checker.check_register(s.ops, init=0).verdict == checker.NOT_LINEARIZABLE


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    s = Script().inv(0, "cas", (1, 2)).ok(0).inv(1, "read").info(1).inv(2, "add", 7, key="set").ok(2)
    dump(s.ops, tmp_path / "h.jsonl")
    assert load(tmp_path / "h.jsonl") == s.ops
    assert counts(s.ops) == {"cas": {"ok": 1}, "read": {"info": 1}, "add": {"ok": 1}}


# ---- generated histories -------------------------------------------------------------


def simulate(seed: int, n_ops: int, procs: int, values: int = 4, info_p: float = 0.05,
             fail_p: float = 0.05) -> list[Op]:
    """A history of a real (sequential) register under random concurrency: each process's
    op takes effect at one instant between its invoke and its completion; some completions
    are lost (info; the effect may or may not have happened) or fail (no effect)."""
    rng = random.Random(seed)
    rec = Recorder()
    state = 0
    # per process: None (idle) or [invoke op, stage]; stage 0 = not applied yet
    pending: dict[int, tuple[Op, bool, Any, str]] = {}
    started = 0
    while started < n_ops or pending:
        p = rng.randrange(procs)
        if p not in pending:
            if started >= n_ops:
                continue
            f = rng.choice(["read", "write", "cas"])
            v: Any = None if f == "read" else rng.randrange(values)
            if f == "cas":
                v = (rng.randrange(values), rng.randrange(values))
            pending[p] = (rec.invoke(p, f, "k", v), False, None, "")
            started += 1
            continue
        inv, applied, result, outcome = pending[p]
        if not applied:
            outcome = rng.choices(["ok", "info", "fail"], [1 - info_p - fail_p, info_p, fail_p])[0]
            if outcome == "fail" or (outcome == "info" and rng.random() < 0.5):
                pending[p] = (inv, True, None, outcome)  # never takes effect
                continue
            if inv.f == "read":
                result = state
            elif inv.f == "write":
                state = inv.value
            else:
                if state == inv.value[0]:
                    state = inv.value[1]
                else:
                    outcome = "fail"
            pending[p] = (inv, True, result, outcome)
            continue
        del pending[p]
        if outcome == "ok":
            rec.ok(inv, result)
        elif outcome == "fail":
            rec.fail(inv, "cas mismatch")
        else:
            rec.info(inv, "timeout")
    return rec.snapshot()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 80), procs=st.integers(1, 6))
def test_generated_histories_are_linearizable(seed: int, n: int, procs: int) -> None:
    h = simulate(seed, n, procs)
    r = checker.check_register(h, init=0)
    assert r.verdict == checker.LINEARIZABLE, checker.explain(r, h)


def corrupt_read(h: list[Op], rng: random.Random) -> list[Op] | None:
    """Make one ok read return a value the register never held before it completed,
    nor could have held: a value nobody ever wrote."""
    reads = [op for op in h if op.type == "ok" and op.f == "read"]
    if not reads:
        return None
    victim = rng.choice(reads)
    return [Op(op.index, op.process, op.type, op.f, op.key, 99, op.time) if op is victim else op
            for op in h]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(2, 60), procs=st.integers(1, 5))
def test_injected_impossible_read_is_caught(seed: int, n: int, procs: int) -> None:
    h = corrupt_read(simulate(seed, n, procs), random.Random(seed))
    if h is not None:
        assert checker.check_register(h, init=0).verdict == checker.NOT_LINEARIZABLE


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), procs=st.integers(1, 5), before=st.integers(0, 30))
def test_stale_read_after_acknowledged_write_is_caught(seed: int, procs: int, before: int) -> None:
    """A sequential tail appended to a random history: write a fresh value, ok; then a
    read (after the write completed) returns the previous value -- a stale read."""
    h = simulate(seed, before, procs, info_p=0.0)
    rec = Recorder(list(h))
    w = rec.invoke(100, "write", "k", 7)
    rec.ok(w)
    r = rec.invoke(101, "read", "k")
    rec.ok(r, 8)  # 8 is never written: the register holds 7
    assert checker.check_register(rec.snapshot(), init=0).verdict == checker.NOT_LINEARIZABLE
    rec2 = Recorder(list(h))
    w1 = rec2.invoke(100, "write", "k", 7)
    rec2.ok(w1)
    w2 = rec2.invoke(100, "write", "k", 8)
    rec2.ok(w2)
    r2 = rec2.invoke(101, "read", "k")
    rec2.ok(r2, 7)  # stale: 8 was acknowledged before the read began
    assert checker.check_register(rec2.snapshot(), init=0).verdict == checker.NOT_LINEARIZABLE


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), procs=st.integers(2, 5), n=st.integers(5, 40))
def test_lost_write_is_caught(seed: int, procs: int, n: int) -> None:
    """An acknowledged write that later reads never reflect: after write(9) ok, every
    process reads the old value sequentially -- the write was lost."""
    h = simulate(seed, n, procs, info_p=0.0)
    rec = Recorder(list(h))
    w = rec.invoke(100, "write", "k", 9)
    rec.ok(w)
    w2 = rec.invoke(100, "write", "k", 10)
    rec.ok(w2)
    for p in range(101, 101 + procs):
        r = rec.invoke(p, "read", "k")
        rec.ok(r, 9)  # the last write (10) was lost
    assert checker.check_register(rec.snapshot(), init=0).verdict == checker.NOT_LINEARIZABLE


def test_ten_thousand_ops_per_key_are_fast() -> None:
    h = simulate(1, 10_000, 10, values=5, info_p=0.01)
    t0 = time.monotonic()
    r = checker.check_register(h, init=0)
    elapsed = time.monotonic() - t0
    assert r.verdict == checker.LINEARIZABLE, checker.explain(r, h)
    assert elapsed < 20, elapsed


# ---- set and unique ids ----------------------------------------------------------------


def test_set_check() -> None:
    s = Script()
    for i in range(5):
        s.inv(0, "add", i, key="s").ok(0)
    s.inv(1, "add", 5, key="s").info(1)
    s.inv(1, "add", 6, key="s").fail(1)
    s.inv(2, "read", key="s").ok(2, [0, 1, 2, 3, 4, 5])
    r = checker.check_set(s.ops)
    assert r.valid and r.recovered == 1 and r.acknowledged == 5, r.summary()
    lost = Script().inv(0, "add", 1).ok(0).inv(0, "add", 2).ok(0).inv(1, "read").ok(1, [2, 3])
    r = checker.check_set(lost.ops)
    assert not r.valid and r.lost == [1] and r.unexpected == [3]


def test_unique_ids_check() -> None:
    s = Script().inv(0, "generate").ok(0, 1).inv(1, "generate").ok(1, 2)
    assert checker.check_unique_ids(s.ops).valid
    s.inv(2, "generate").ok(2, 2)
    r = checker.check_unique_ids(s.ops)
    assert not r.valid and r.duplicates == {2: 2}


# ---- the search against brute force ------------------------------------------------------


def brute_force(h: list[Op], init: Any = 0) -> bool:
    """Is there an order of the ok ops and some of the info ops that respects real time
    and the register model?  Tries every subset and permutation (tiny histories only)."""
    from itertools import combinations, permutations

    ops = checker.register_ops(h).get("k", [])
    must = [o for o in ops if o.ret is not None]
    maybe = [o for o in ops if o.ret is None]
    for k in range(len(maybe) + 1):
        for extra in combinations(maybe, k):
            chosen = must + list(extra)
            for order in permutations(chosen):
                pos = {o.id: i for i, o in enumerate(order)}
                if any(a.ret is not None and a.ret < b.call and pos[a.id] > pos[b.id]
                       for a in chosen for b in chosen):
                    continue
                state: Any = init
                for o in order:
                    allowed, state = checker.step(state, o)
                    if not allowed:
                        break
                else:
                    return True
    return False


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 6), procs=st.integers(1, 4),
       corrupt=st.booleans())
def test_search_agrees_with_brute_force(seed: int, n: int, procs: int, corrupt: bool) -> None:
    rng = random.Random(seed)
    h = simulate(seed, n, procs, values=3, info_p=0.3, fail_p=0.1)
    if corrupt:  # a read of a random value: sometimes still linearizable, often not
        h = [Op(o.index, o.process, o.type, o.f, o.key, rng.randrange(3), o.time)
             if o.type == "ok" and o.f == "read" and rng.random() < 0.5 else o for o in h]
    expected = brute_force(h)
    got = checker.check_register(h, init=0).verdict
    assert got == (checker.LINEARIZABLE if expected else checker.NOT_LINEARIZABLE), h
