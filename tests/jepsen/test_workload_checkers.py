"""Unit tests of the counter and queue checkers (tests/jepsen/checker.py) on hand-made
histories: fast, no ensemble."""

from __future__ import annotations

from typing import Any

from tests.jepsen import checker
from tests.jepsen.history import Op, Recorder


def run_script(steps: list[tuple[str, int, str, Any]], key: str) -> list[Op]:
    """steps: (type, process, f, value); an invoke opens the process' op, a completion
    closes it."""
    rec = Recorder()
    open_: dict[int, Op] = {}
    for type_, p, f, v in steps:
        if type_ == "invoke":
            open_[p] = rec.invoke(p, f, key, v)
        elif type_ == "ok":
            rec.ok(open_.pop(p), v)
        elif type_ == "fail":
            rec.fail(open_.pop(p), "x", v)
        else:
            rec.info(open_.pop(p), "x", v)
    return rec.snapshot()


def test_counter_valid_with_info_and_concurrency() -> None:
    h = run_script([("invoke", 0, "add", 1), ("ok", 0, "add", None),
                    ("invoke", 1, "add", 1),
                    ("invoke", 2, "read", None), ("ok", 2, "read", 2),  # 1 acked, 2 invoked
                    ("info", 1, "add", None),
                    ("invoke", 3, "add", 1), ("fail", 3, "add", None),
                    ("invoke", 4, "read", None), ("ok", 4, "read", 1)], "counter")
    r = checker.check_counter(h)
    assert r.valid, r.summary()
    assert (r.acknowledged, r.info, r.final) == (1, 1, 1)


def test_counter_read_above_invoked_increments_is_invalid() -> None:
    h = run_script([("invoke", 0, "add", 1), ("ok", 0, "add", None),
                    ("invoke", 2, "read", None), ("ok", 2, "read", 2),
                    ("invoke", 1, "add", 1), ("ok", 1, "add", None),
                    ("invoke", 2, "read", None), ("ok", 2, "read", 2)], "counter")
    r = checker.check_counter(h)
    assert not r.valid and "not in [1, 1]" in r.bad_reads[0], r.summary()


def test_counter_lost_increment_is_invalid() -> None:
    h = run_script([("invoke", 0, "add", 1), ("ok", 0, "add", None),
                    ("invoke", 1, "add", 1), ("ok", 1, "add", None),
                    ("invoke", 2, "read", None), ("ok", 2, "read", 1)], "counter")
    r = checker.check_counter(h)
    assert not r.valid, r.summary()
    assert any("final 1 not in [2, 2]" in b for b in r.bad_reads)


def test_counter_failed_increment_cannot_be_read() -> None:
    h = run_script([("invoke", 0, "add", 1), ("fail", 0, "add", None),
                    ("invoke", 2, "read", None), ("ok", 2, "read", 1)], "counter")
    assert not checker.check_counter(h).valid


def test_queue_valid() -> None:
    h = run_script([("invoke", 0, "enqueue", 1), ("ok", 0, "enqueue", None),
                    ("invoke", 0, "enqueue", 2), ("ok", 0, "enqueue", None),
                    ("invoke", 0, "enqueue", 3), ("info", 0, "enqueue", None),
                    ("invoke", 1, "enqueue", 4), ("ok", 1, "enqueue", None),
                    ("invoke", 2, "dequeue", None), ("ok", 2, "dequeue", 1),
                    ("invoke", 2, "dequeue", None), ("info", 2, "dequeue", 2),  # lost answer
                    ("invoke", 2, "dequeue", None), ("fail", 2, "dequeue", None),
                    ("invoke", 9, "drain", None), ("ok", 9, "drain", [3, 4])], "queue")
    r = checker.check_queue(h)
    assert r.valid, r.summary()
    assert (r.enqueued, r.dequeued, r.drained, r.recovered) == (3, 1, 2, 1)


def test_queue_double_dequeue_and_dequeued_but_drained() -> None:
    h = run_script([("invoke", 0, "enqueue", 1), ("ok", 0, "enqueue", None),
                    ("invoke", 0, "enqueue", 2), ("ok", 0, "enqueue", None),
                    ("invoke", 1, "dequeue", None), ("ok", 1, "dequeue", 1),
                    ("invoke", 2, "dequeue", None), ("ok", 2, "dequeue", 1),
                    ("invoke", 1, "dequeue", None), ("ok", 1, "dequeue", 2),
                    ("invoke", 9, "drain", None), ("ok", 9, "drain", [2])], "queue")
    r = checker.check_queue(h)
    assert not r.valid and r.duplicated == [1, 2], r.summary()


def test_queue_lost_and_unexpected() -> None:
    h = run_script([("invoke", 0, "enqueue", 1), ("ok", 0, "enqueue", None),
                    ("invoke", 0, "enqueue", 2), ("ok", 0, "enqueue", None),
                    ("invoke", 1, "dequeue", None), ("ok", 1, "dequeue", 7),
                    ("invoke", 9, "drain", None), ("ok", 9, "drain", [2])], "queue")
    r = checker.check_queue(h)
    assert not r.valid and r.lost == [1] and r.unexpected == [7], r.summary()


def test_watches() -> None:
    W = checker.WatchRecord
    ok = [W(1, "/w", 3, 0.0, [(0.1, "CHANGED")], 0.2, 4), W(1, "/w", 4, 0.3, [(0.4, "NONE")]),
          W(2, "/w", 4, 0.3, [])]
    r = checker.check_watches(ok)
    assert r.valid and (r.registrations, r.fired, r.ended) == (3, 1, 1), r.summary()
    stale = checker.check_watches([W(1, "/w", 3, 0.0, [(0.1, "CHANGED")], 0.2, 3)])
    assert not stale.valid and "returned v3" in stale.problems[0]
    twice = checker.check_watches([W(1, "/w", 3, 0.0, [(0.1, "CHANGED"), (0.2, "CHANGED")], 0.3, 5)])
    assert not twice.valid


def test_ephemerals() -> None:
    owners = {"w0-a": 0xA, "w0-b": 0xB, "w1-c": 0xC}
    r = checker.check_ephemerals(owners, {0xA}, {1: ["w0-b"], 2: ["w0-b"]})
    assert r.valid and (r.sessions, r.expired, r.lingering) == (3, 1, 1), r.summary()
    r = checker.check_ephemerals(owners, {0xA, 0xC}, {1: ["w0-b"], 2: ["w0-a", "w0-b"]})
    assert not r.valid and r.leftovers == {1: [], 2: ["w0-a"]}, r.summary()
